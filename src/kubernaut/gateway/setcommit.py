"""A group commit's webhooks written set-based: per stage one statement per table and kind of write
(all new requests, all storm rows, all storm members, all resolutions), duplicate counts once for the
whole group, with every result exactly that of running the webhooks one after another
(gateway/onebyone.py, the reference).

A stage is a run of consecutive phases (webhook after webhook) whose writes commute when merged: the
set-based order (new requests, then storm joins, then resolutions) differs from one by one only when a
later phase fires or resolves again what an earlier one resolved, joins a storm after a resolution
(which may have closed it), or brings a new request of a group whose storm an earlier phase joined
(a storm opened first links only the requests before it). Such a phase starts the next stage.
New requests and resolutions go through kubernaut_fire / kubernaut_resolve (migration 070), like one by
one: a stage's firings of one fingerprint are one row only within one period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kubernaut.gateway.onebyone import FIRE, LINK_EARLIER, RESOLVE, RESOLVE_MEMBERS, Conn, json_text
from kubernaut.gateway.writes import LAST, NewRequest, Phase, StormJoin, Webhook, Written
from kubernaut.store.schema import OPEN, REQUESTS, STORM_MEMBERS, add_resources

_UPSERT_STORMS = f"""
INSERT INTO {REQUESTS} AS r (
    fingerprint, signal_name, signal_type, source, severity, namespace, resource_kind, resource_name,
    environment, priority, labels, annotations, occurrence_count, first_seen, last_seen, received_at,
    is_storm, storm_type, storm_window_start, storm_window_end)
SELECT u.f, u.n, u.st, u.src, u.sev, u.ns, u.kind, u.res, u.env, u.pri, u.l::jsonb, u.a::jsonb, u.c,
       u.fs, u.ls, u.rcv, true, u.stype, u.ws, u.we
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
            $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::text[],
            $18::timestamptz[], $19::timestamptz[])
     AS u(f, n, st, src, sev, ns, kind, res, env, pri, l, a, c, fs, ls, rcv, stype, ws, we)
ON CONFLICT (fingerprint) WHERE {OPEN}
DO UPDATE SET occurrence_count = r.occurrence_count + EXCLUDED.occurrence_count,
              last_seen = greatest(r.last_seen, EXCLUDED.last_seen),
              storm_window_end = greatest(r.storm_window_end, EXCLUDED.storm_window_end),
              updated_at = now()
RETURNING r.id, r.fingerprint, (r.xmax = 0) AS inserted
"""

# Every storm row's new members in one statement; ``o`` is the one-by-one order of the members (webhook,
# then fingerprint), which the affected resources keep. Members already taken in are skipped (one a
# Redis join wrote becomes this commit's: a void of that join no longer deletes it); resources beyond
# the cap are only counted (capping the concatenation once equals capping it webhook by webhook).
_ADD_MEMBERS = f"""
WITH m AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                         $6::int[]) AS m(id, f, res, fs, rcv, o)
), written AS (
    INSERT INTO {STORM_MEMBERS} AS sm (request_id, fingerprint, resource, first_seen, received_at)
    SELECT m.id, m.f, m.res, m.fs, m.rcv FROM m
    ON CONFLICT (request_id, fingerprint) DO UPDATE SET joined_by = NULL WHERE sm.joined_by IS NOT NULL
    RETURNING request_id, fingerprint, resource, (xmax = 0) AS inserted
), added AS (
    SELECT request_id, fingerprint, resource FROM written WHERE inserted
), per_storm AS (
    SELECT a.request_id AS id, count(*) AS n,
           coalesce(array_agg(a.resource ORDER BY m.o) FILTER (WHERE a.resource <> ''), '{{}}') AS resources
    FROM added a JOIN m ON m.id = a.request_id AND m.f = a.fingerprint
    GROUP BY a.request_id
), counted AS (
    UPDATE {REQUESTS} r
    SET storm_alert_count = r.storm_alert_count + p.n,
        {add_resources("r", "p.resources", "$7")},
        updated_at = now()
    FROM per_storm p
    WHERE r.id = p.id
)
SELECT request_id, fingerprint FROM added
"""

# Members firing again are unresolved again (their storms stay open).
_REOPEN_MEMBERS = f"""
UPDATE {STORM_MEMBERS} m SET resolved_at = NULL
FROM unnest($1::bigint[], $2::text[]) AS d(id, f)
WHERE m.request_id = d.id AND m.fingerprint = d.f AND m.resolved_at IS NOT NULL
"""

# A storm closes when the webhook that resolved its last open member did (``rcv``, its receipt time).
CLOSE_STORMS = f"""
UPDATE {REQUESTS} r
SET resolved_at = greatest(r.first_seen, (SELECT max(m.resolved_at) FROM {STORM_MEMBERS} m
                                          WHERE m.request_id = r.id)),
    resolved_received_at = c.rcv, updated_at = now()
FROM unnest($1::bigint[], $2::timestamptz[]) AS c(id, rcv)
WHERE r.id = c.id AND r.{OPEN}
  AND NOT EXISTS (SELECT 1 FROM {STORM_MEMBERS} m WHERE m.request_id = r.id AND m.resolved_at IS NULL)
"""

_COUNT_DUPLICATES = f"""
UPDATE {REQUESTS} r
SET occurrence_count = r.occurrence_count + d.n, last_seen = greatest(r.last_seen, d.t), updated_at = now()
FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS d(id, n, t)
WHERE r.id = d.id
"""


@dataclass(slots=True)
class _Step:
    """One phase of one webhook, with the results it gets."""

    order: int  # position in the group, phase after phase
    hook: Webhook
    phase: Phase
    written: Written


def plan(hooks: Sequence[Webhook]) -> tuple[list[list[_Step]], list[list[Written]]]:
    """Cut the group's phases into stages (see the module's doc) and give each phase its results."""
    results = [[Written({}, {}, {}) for _ in hook.phases] for hook in hooks]
    stages: list[list[_Step]] = []
    stage: list[_Step] = []
    resolved: set[str] = set()
    storm_groups: set[tuple[str, str]] = set()
    for hook, written in zip(hooks, results, strict=True):
        for phase, out in zip(hook.phases, written, strict=True):
            fires = set(phase.singles)
            for storm in phase.storms.values():
                fires.update(storm.members)
            groups = {(r.signal.name, r.signal.namespace) for r in phase.singles.values()}
            if stage and (
                not fires.isdisjoint(resolved)
                or (phase.storms and resolved)
                or not resolved.isdisjoint(phase.resolves)
                or not groups.isdisjoint(storm_groups)
            ):
                stages.append(stage)
                stage, resolved, storm_groups = [], set(), set()
            stage.append(_Step(sum(map(len, stages)) + len(stage), hook, phase, out))
            resolved.update(phase.resolves)
            storm_groups.update((s.first.name, s.first.namespace) for s in phase.storms.values())
    if stage:
        stages.append(stage)
    return stages, results


async def apply_group(conn: Conn, hooks: Sequence[Webhook], max_affected: int) -> list[list[Written]]:
    """Write every webhook of the group; one failing statement fails them all (the caller then finds
    the failing webhook one by one)."""
    stages, results = plan(hooks)
    for stage in stages:
        await _upsert_singles(conn, stage)
        await _join_storms(conn, stage, max_affected)
        await _resolve(conn, stage)
    await _count_duplicates(conn, hooks)
    return results


def _seen(storm: StormJoin, fingerprint: str, now: datetime) -> datetime:
    return storm.first_seen.get(fingerprint, now)


async def _upsert_singles(conn: Conn, stage: list[_Step]) -> None:
    entries: dict[str, list[tuple[_Step, NewRequest]]] = {}
    for step in stage:
        for fp, request in step.phase.singles.items():
            entries.setdefault(fp, []).append((step, request))
    if not entries:
        return
    # One row per run of a fingerprint's firings in one period: in one period they all count onto one
    # request, so their counts add up; a firing of another period (a resolution ran in Redis between
    # them, in another process) is a row of its own, after it in the array as in Redis's order.
    runs: list[list[tuple[_Step, NewRequest]]] = []
    for f in sorted(entries):  # rows touched in fingerprint order (fewer deadlocks between transactions)
        for entry in entries[f]:
            if runs and runs[-1][0][1].signal.fingerprint == f and runs[-1][0][1].period == entry[1].period:
                runs[-1].append(entry)
            else:
                runs.append([entry])
    firsts = [run[0] for run in runs]
    rows = await conn.fetch(
        FIRE,
        [r.signal.fingerprint for _, r in firsts],
        [r.signal.name for _, r in firsts],
        [s.hook.signal_type for s, _ in firsts],
        [s.hook.source for s, _ in firsts],
        [r.signal.severity for _, r in firsts],
        [r.signal.namespace for _, r in firsts],
        [r.signal.resource_kind for _, r in firsts],
        [r.signal.resource_name for _, r in firsts],
        [r.environment for _, r in firsts],
        [r.priority for _, r in firsts],
        [json_text(r.signal.labels) for _, r in firsts],
        [json_text(r.signal.annotations) for _, r in firsts],
        [sum(r.occurrences for _, r in run) for run in runs],
        [r.first_seen or s.hook.now for s, r in firsts],
        [max(max(r.first_seen or s.hook.now, s.hook.now) for s, r in run) for run in runs],
        [s.hook.now for s, _ in firsts],
        [r.period for _, r in firsts],
        [r.seq for _, r in firsts],
    )
    for run, row in zip(runs, rows, strict=True):
        for k, (step, request) in enumerate(run):
            step.written.singles[request.signal.fingerprint] = (row["id"], row["inserted"] and k == 0)


async def _join_storms(conn: Conn, stage: list[_Step], max_affected: int) -> None:
    entries: dict[str, list[tuple[_Step, StormJoin]]] = {}
    for step in stage:
        for sfp, storm in step.phase.storms.items():
            entries.setdefault(sfp, []).append((step, storm))
    if not entries:
        return
    sfps = sorted(entries)
    firsts = [entries[f][0] for f in sfps]
    rows = await conn.fetch(
        _UPSERT_STORMS,
        sfps,
        [j.first.name for _, j in firsts],
        [s.hook.signal_type for s, _ in firsts],
        [s.hook.source for s, _ in firsts],
        [j.first.severity for _, j in firsts],
        [j.first.namespace for _, j in firsts],
        [j.first.resource_kind for _, j in firsts],
        [j.first.resource_name for _, j in firsts],
        [j.environment for _, j in firsts],
        [j.priority for _, j in firsts],
        [json_text(j.first.labels) for _, j in firsts],
        [json_text(j.first.annotations) for _, j in firsts],
        [sum(j.occurrences for _, j in entries[f]) for f in sfps],
        [_seen(j, j.first.fingerprint, s.hook.now) for s, j in firsts],
        [
            max(max(_seen(j, j.first.fingerprint, s.hook.now), s.hook.now) for s, j in entries[f])
            for f in sfps
        ],
        [s.hook.now for s, _ in firsts],
        [j.storm_type for _, j in firsts],
        [j.window_start for _, j in firsts],
        [max(s.hook.now for s, _ in entries[f]) for f in sfps],
    )
    ids = {r["fingerprint"]: (r["id"], r["inserted"]) for r in rows}
    for sfp in sfps:
        rid, inserted = ids[sfp]
        for k, (step, _) in enumerate(entries[sfp]):
            step.written.storms[sfp] = (rid, inserted and k == 0, set())

    # Each (storm, member) is offered once, by the first phase that brings it; later ones are repeats.
    offered: dict[tuple[int, str], tuple[_Step, str]] = {}
    repeats: set[tuple[int, str]] = set()
    member_fps: list[str] = []
    resources: list[str] = []
    seen: list[datetime] = []
    received: list[datetime] = []
    for sfp in sfps:
        rid = ids[sfp][0]
        for step, join in entries[sfp]:
            now = step.hook.now
            for f in sorted(join.members):
                if (rid, f) in offered:
                    repeats.add((rid, f))
                    continue
                offered[rid, f] = (step, sfp)
                member_fps.append(f)
                resources.append(join.members[f].resource)
                seen.append(_seen(join, f, now))
                received.append(now)
    storm_ids = [rid for rid, _ in offered]
    order = list(range(1, len(offered) + 1))
    added = await conn.fetch(
        _ADD_MEMBERS, storm_ids, member_fps, resources, seen, received, order, max_affected
    )
    taken = {(r[0], r[1]) for r in added}  # (request_id, fingerprint)
    for (rid, f), (step, sfp) in offered.items():
        if (rid, f) in taken:
            step.written.storms[sfp][2].add(f)
        else:
            repeats.add((rid, f))
    if repeats:
        again = sorted(repeats)
        await conn.execute(_REOPEN_MEMBERS, [i for i, _ in again], [f for _, f in again])

    # A new storm row links its group's requests opened in the detection window before it, in the
    # order the storms were opened.
    opened = sorted((entries[sfp][0][0].order, sfp) for sfp in sfps if ids[sfp][1])
    for _, sfp in opened:
        join = entries[sfp][0][1]
        await conn.execute(
            LINK_EARLIER,
            ids[sfp][0],
            join.first.name,
            join.first.namespace,
            join.window_start - join.lookback,
        )


async def _resolve(conn: Conn, stage: list[_Step]) -> None:
    owner = {f: step for step in stage for f in step.phase.resolves}  # disjoint within a stage
    if not owner:
        return
    fps = sorted(owner)
    times = [owner[f].phase.resolves[f] or owner[f].hook.now for f in fps]
    seqs = [owner[f].phase.resolve_seqs.get(f, LAST) for f in fps]
    rows = await conn.fetch(RESOLVE, fps, times, [owner[f].hook.now for f in fps], seqs)
    for r in rows:
        owner[r["fingerprint"]].written.resolved[r["fingerprint"]] = r["id"]
    members = await conn.fetch(RESOLVE_MEMBERS, fps, times)
    closer: dict[int, _Step] = {}  # storm -> the last phase that resolved one of its members
    for m in members:
        step = owner[m["fingerprint"]]
        step.written.resolved.setdefault(m["fingerprint"], m["request_id"])
        if m["request_id"] not in closer or closer[m["request_id"]].order < step.order:
            closer[m["request_id"]] = step
    if closer:
        storms = sorted(closer)
        await conn.execute(CLOSE_STORMS, storms, [closer[i].hook.now for i in storms])


async def _count_duplicates(conn: Conn, hooks: Sequence[Webhook]) -> None:
    """Counts of known requests commute with every other write: added once for the whole group."""
    totals: dict[int, int] = {}
    latest: dict[int, datetime] = {}
    for hook in hooks:
        for rid, n in hook.counts.items():
            totals[rid] = totals.get(rid, 0) + n
            latest[rid] = max(latest.get(rid, hook.now), hook.now)
    if totals:
        ids = sorted(totals)
        await conn.execute(_COUNT_DUPLICATES, ids, [totals[i] for i in ids], [latest[i] for i in ids])
