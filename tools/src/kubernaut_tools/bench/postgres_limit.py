"""PostgreSQL's limit under the gateway's commit path: ``pgbench`` running the gateway's own new-alert
writes, group-committed as the gateway commits them (gateway/setcommit.py: one transaction with the
commit token, then one set-based statement per table for the whole group), against the bench's own
PostgreSQL. The gateway commits from one connection, one group at a time; the many-connection row shows
what PostgreSQL itself could take beyond that design.

The scripts mirror the gateway's statements (the token insert, the new-request upsert against the index
of open requests, the storm row upsert and its members' insert with the row's counts), with generated
fingerprints instead of arrays from a client.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernaut.store.schema import OPEN, add_resources
from kubernaut_tools.bench.errors import BenchError

TAG = "pgbench"  # signal_name and namespace of everything the scripts write (deleted afterwards)

# pgbench reads ``:name`` as a variable even inside quotes, hence the split literal.
_TOKEN = "INSERT INTO applied_count_batches (batch_id) VALUES ('commit:' || 'pgbench-' || gen_random_uuid());"

_NEW_REQUESTS = f"""
BEGIN;
{_TOKEN}
INSERT INTO remediation_requests AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, occurrence_count, first_seen, last_seen, received_at)
SELECT gen_random_uuid()::text, '{TAG}', 'prometheus', '{TAG}', 'warning', '{TAG}', 'Pod', 'pod-' || i,
       'production', 'P1', jsonb_build_object('alertname', '{TAG}', 'pod', 'pod-' || i), '{{}}'::jsonb, 1,
       now(), now(), now()
FROM generate_series(1, CAST(:alerts AS int)) AS i
ON CONFLICT (fingerprint) WHERE {OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen), updated_at = now()
RETURNING r.id;
COMMIT;
"""

_STORM_MEMBERS = f"""
BEGIN;
{_TOKEN}
INSERT INTO remediation_requests AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, occurrence_count, first_seen, last_seen, received_at,
    is_storm, storm_type, storm_window_start, storm_window_end)
VALUES ('{TAG}-storm-' || :client_id, '{TAG}', 'prometheus', '{TAG}', 'warning', '{TAG}', 'Pod', 'pod',
        'production', 'P1', '{{}}'::jsonb, '{{}}'::jsonb, CAST(:alerts AS bigint), now(), now(), now(),
        true, 'rate', now(), now())
ON CONFLICT (fingerprint) WHERE {OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen),
              storm_window_end = greatest(r.storm_window_end, EXCLUDED.storm_window_end), updated_at = now()
RETURNING r.id AS storm \\gset
WITH added AS (
    INSERT INTO storm_members (request_id, fingerprint, resource, first_seen, received_at)
    SELECT CAST(:storm AS bigint), gen_random_uuid()::text, 'Pod/pod-' || i, now(), now()
    FROM generate_series(1, CAST(:alerts AS int)) AS i
    ON CONFLICT DO NOTHING
    RETURNING resource
), per_storm AS (
    SELECT count(*) AS n, coalesce(array_agg(resource), '{{}}') AS resources FROM added
)
UPDATE remediation_requests r
SET storm_alert_count = r.storm_alert_count + p.n,
    {add_resources("r", "p.resources", "CAST(:cap AS int)")},
    updated_at = now()
FROM per_storm p
WHERE r.id = CAST(:storm AS bigint);
COMMIT;
"""

# With a synchronous standby (Patroni's synchronous_mode), the same commit without waiting for the
# standby: the pair prices synchronous replication in one run.
LOCAL_COMMIT = "storm members, local commit"
SCRIPTS = {
    "new requests": _NEW_REQUESTS,
    "storm members": _STORM_MEMBERS,
    LOCAL_COMMIT: _STORM_MEMBERS.replace("BEGIN;\n", "BEGIN;\nSET LOCAL synchronous_commit = local;\n", 1),
}

_CLEANUP = f"""
DELETE FROM remediation_requests WHERE namespace = '{TAG}';
DELETE FROM applied_count_batches WHERE batch_id LIKE 'commit:pgbench-%';
"""


@dataclass(frozen=True)
class PgbenchRow:
    script: str
    alerts_per_commit: int
    clients: int
    transactions: int
    commits_per_s: float
    alerts_per_s: float
    latency_ms: float
    failed: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(output: str) -> tuple[int, float, float, int]:
    """(transactions, commits/s, average latency ms, failed transactions) from pgbench's report."""

    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"pgbench printed no {pattern!r}: {output[-400:]!r}")
        return match.group(1)

    failed = re.search(r"^number of failed transactions: (\d+)", output, re.MULTILINE)
    return (
        int(find(r"^number of transactions actually processed: (\d+)")),
        float(find(r"^tps = ([\d.]+)")),
        float(find(r"^latency average = ([\d.]+) ms")),
        int(failed.group(1)) if failed else 0,
    )


def pgbench(
    pgbench_bin: str,
    dsn: str,
    *,
    script: str,
    alerts: int,
    clients: int,
    seconds: float,
    max_affected: int,
) -> PgbenchRow:
    """Run one script for ``seconds`` with ``clients`` connections, ``alerts`` new alerts a commit."""
    with tempfile.TemporaryDirectory(prefix="kubernaut-pgbench-") as tmp:
        path = Path(tmp) / "gateway.sql"
        path.write_text(SCRIPTS[script])
        argv = [
            pgbench_bin,
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(clients, 2)}",
            f"--time={max(1, round(seconds))}",
            f"--define=alerts={alerts}",
            f"--define=cap={max_affected}",
            f"--file={path}",
            dsn,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if done.returncode != 0:
        raise BenchError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    transactions, tps, latency, failed = parse(done.stdout)
    return PgbenchRow(script, alerts, clients, transactions, tps, tps * alerts, latency, failed)


def cleanup(dsn: str, psql_bin: str) -> None:
    """Delete what the scripts wrote."""
    done = subprocess.run(
        [psql_bin, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", "-c", _CLEANUP, dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"psql cleanup after pgbench failed: {done.stderr.strip()[-400:]}")
