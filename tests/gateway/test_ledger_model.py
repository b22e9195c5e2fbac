"""The model test: random webhooks against a live gateway process, every answer and PostgreSQL compared
with the reference model (tests/gateway/ledger_model.py) after each step (issue 12, "prove the ledger").

Each example works in a namespace of its own, so examples never share dedup entries or storm groups.
Bounded in the suite; a longer run (figures in docs/gateway.md):

    KUBERNAUT_MODEL_SECONDS=1200 KUBERNAUT_TEST_PORT_OFFSET=... .venv/bin/pytest -s --timeout 0 \\
        tests/gateway/test_ledger_model.py
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from kubernaut.gateway.signal import fingerprint
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import EVENTS, PROMETHEUS, alert, event, gateway_process, webhook
from tests.gateway.ledger_model import LedgerModel, ModelAlert, ModelRequest

pytestmark = pytest.mark.stack

EXAMPLES = int(os.environ.get("KUBERNAUT_MODEL_EXAMPLES", "50"))
STEPS = int(os.environ.get("KUBERNAUT_MODEL_STEPS", "30"))
SECONDS = float(os.environ.get("KUBERNAUT_MODEL_SECONDS", "0"))  # > 0: repeat runs for this long

PATTERN_THRESHOLD, RATE_THRESHOLD = 3, 6
NAMES = ("Cpu", "Mem", "Disk")
REASONS = ("BackOff", "OOMKilled")  # Kubernetes event reasons: signal names of their own
PODS = tuple(f"p{i}" for i in range(8))
DAY = "86400"  # storm and dedup windows far longer than an example: the model has no clock
FLUSH_WAIT_S = 20.0

Spec = tuple[str, str, str, bool]  # alert name, pod, container (not in the fingerprint), firing
specs = st.tuples(
    st.sampled_from(NAMES), st.sampled_from(PODS), st.sampled_from(("app", "sidecar")), st.booleans()
)


@pytest.fixture(scope="module")
def model_gateway(stack: LocalStack) -> Iterator[str]:
    port = stack.topology.gateway_http + 141
    with gateway_process(
        stack,
        "gateway-model",
        port,
        KEY_PREFIX=f"gwm:{uuid.uuid4().hex[:8]}:",
        RATE_LIMIT__MODE="off",
        COUNT_FLUSH_INTERVAL_S="0.05",
        DEDUP_TTL_S=DAY,
        STORM__PATTERN_THRESHOLD=str(PATTERN_THRESHOLD),
        STORM__RATE_THRESHOLD=str(RATE_THRESHOLD),
        STORM__RATE_WINDOW_S=DAY,
        STORM__PATTERN_WINDOW_S=DAY,
        STORM__INACTIVITY_S=DAY,
        STORM__MAX_WINDOW_S=DAY,
    ) as url:
        yield url


_ROWS = """
SELECT r.id, r.fingerprint, r.is_storm, r.resolved_at IS NULL AS open, r.occurrence_count,
       r.storm_alert_count, r.storm_request_id,
       (SELECT coalesce(json_object_agg(m.fingerprint, m.resolved_at IS NOT NULL), '{}')
        FROM storm_members m WHERE m.request_id = r.id)::text AS members
FROM remediation_requests r WHERE r.namespace = $1 ORDER BY r.id
"""


class _Db:
    """One PostgreSQL connection on an event loop of its own (the state machine is synchronous)."""

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(dsn))

    def rows(self, namespace: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.loop.run_until_complete(self.conn.fetch(_ROWS, namespace))]

    def joined_in_redis(self, namespaces: list[str]) -> int:
        """Storm members of these namespaces joined in Redis (scripts/ingest.lua, "Bound storms")."""
        sql = (
            "SELECT count(*) FROM storm_members m JOIN remediation_requests r ON r.id = m.request_id"
            " WHERE r.namespace = ANY($1::text[]) AND m.joined_by IS NOT NULL"
        )
        return int(self.loop.run_until_complete(self.conn.fetchval(sql, namespaces)))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


class Tally:
    examples = 0
    steps = 0
    outcomes: ClassVar[Counter[str]] = Counter()
    namespaces: ClassVar[list[str]] = []


def _machine(url: str, token: str, db: _Db) -> type[RuleBasedStateMachine]:
    class GatewayMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ns = f"m{uuid.uuid4().hex[:12]}"
            self.model = LedgerModel(PATTERN_THRESHOLD, RATE_THRESHOLD)
            self.ids: dict[int, int] = {}  # model request -> PostgreSQL id
            self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            self.last: list[Spec] | None = None
            Tally.examples += 1
            Tally.namespaces.append(self.ns)

        def teardown(self) -> None:
            self.client.close()

        @rule(batch=st.lists(specs, min_size=1, max_size=6))
        def send(self, batch: list[Spec]) -> None:
            self._send(batch)

        @precondition(lambda self: self.last is not None)
        @rule()
        def resend_last(self) -> None:
            assert self.last is not None
            self._send(self.last)

        @rule(name=st.sampled_from(NAMES), pods=st.lists(st.sampled_from(PODS), min_size=3, unique=True))
        def storm(self, name: str, pods: list[str]) -> None:
            self._send([(name, p, "app", True) for p in pods])

        @rule(data=st.data(), names=st.lists(st.sampled_from(NAMES), min_size=2, unique=True))
        def concurrent(self, data: st.DataObject, names: list[str]) -> None:
            """Webhooks of different groups at once (group commit): each as if alone."""
            batches = [
                [(n, p, c, f) for _n, p, c, f in data.draw(st.lists(specs, min_size=1, max_size=5))]
                for n in names
            ]

            async def post_all() -> list[httpx.Response]:
                async with httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                ) as client:
                    return await asyncio.gather(
                        *(client.post(PROMETHEUS, json=self._hook(b)) for b in batches)
                    )

            Tally.steps += len(batches)
            for batch, resp in zip(batches, asyncio.run(post_all()), strict=True):
                self._check_answer(batch, resp)
            self._check_postgres()

        @rule(reason=st.sampled_from(REASONS), pod=st.sampled_from(PODS))
        def kubernetes_event(self, reason: str, pod: str) -> None:
            """A Warning event: a firing signal of the group (namespace, reason)."""
            Tally.steps += 1
            resp = self.client.post(EVENTS, json=event(reason, name=pod, namespace=self.ns))
            self._check_answer([(reason, pod, "", True)], resp)
            self._check_postgres()

        @rule(data=st.data())
        def resolve_some_firing(self, data: st.DataObject) -> None:
            firing = sorted((n, p) for n in NAMES for p in PODS if self._fp(n, p) in self.model.firing)
            if not firing:
                return
            chosen = data.draw(st.lists(st.sampled_from(firing), min_size=1, unique=True))
            self._send([(n, p, "app", False) for n, p in chosen])

        def _fp(self, name: str, pod: str) -> str:
            return fingerprint(name, self.ns, "Pod", pod)

        def _hook(self, batch: list[Spec]) -> dict[str, Any]:
            return webhook(
                *(
                    alert(n, pod=p, namespace=self.ns, status="firing" if f else "resolved", container=c)
                    for n, p, c, f in batch
                )
            )

        def _send(self, batch: list[Spec]) -> None:
            Tally.steps += 1
            self.last = batch
            self._check_answer(batch, self.client.post(PROMETHEUS, json=self._hook(batch)))
            self._check_postgres()

        def _check_answer(self, batch: list[Spec], resp: httpx.Response) -> None:
            model_alerts = [ModelAlert(self._fp(n, p), (self.ns, n), f"Pod/{p}", f) for n, p, _c, f in batch]
            status, expected = self.model.send(model_alerts)
            assert resp.status_code == status, resp.text
            got = [(s["outcome"], s["request_id"]) for s in resp.json()["signals"]]
            assert [o for o, _ in got] == [o for o, _ in expected], (batch, got)
            Tally.outcomes.update(o for o, _ in got)
            for (_o, request), (_g, rid) in zip(expected, got, strict=True):
                self._same(request, rid)
            for fp in self.model.firing:
                assert self.model.open_request(fp) is not None, "a firing alert without an open request"

        def _same(self, request: ModelRequest | None, rid: int | None) -> None:
            if request is None:
                assert rid is None
                return
            assert rid is not None
            known = self.ids.setdefault(request.key, rid)
            assert known == rid, f"model request {request.key} is {known}, answered {rid}"
            assert list(self.ids.values()).count(rid) == 1, f"request {rid} stands for two model requests"

        def _expected(self) -> list[dict[str, Any]]:
            rows = []
            for r in self.model.requests:
                rows.append(
                    {
                        "id": self.ids[r.key],
                        "is_storm": r.is_storm,
                        "open": r.open,
                        "occurrence_count": r.count,
                        "storm_alert_count": r.alert_count,
                        "storm_request_id": self.ids[r.storm.key] if r.storm else None,
                        "members": r.members,
                        **({} if r.is_storm else {"fingerprint": r.fingerprint}),
                    }
                )
            return sorted(rows, key=lambda row: row["id"])

        def _check_postgres(self) -> None:
            """Equal to the model once the count flush has run (waited for, not slept)."""
            expected = self._expected()
            deadline = time.monotonic() + FLUSH_WAIT_S
            while True:
                actual = []
                for row in db.rows(self.ns):
                    row["members"] = json.loads(row["members"])
                    if row["is_storm"]:
                        del row["fingerprint"]
                    actual.append(row)
                if actual == expected:
                    return
                if time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL differs from the model:\nmodel    {expected}\npostgres {actual}")
                time.sleep(0.02)

    return GatewayMachine


def test_the_gateway_follows_the_model(stack: LocalStack, model_gateway: str) -> None:
    db = _Db(stack.postgres_dsn)
    try:
        machine = _machine(model_gateway, stack.gateway_token, db)
        config = settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            suppress_health_check=list(HealthCheck),
        )
        started = time.monotonic()
        while True:
            run_state_machine_as_test(machine, settings=config)
            if time.monotonic() - started >= SECONDS:
                break
        print(
            f"\nmodel test: {Tally.examples} examples, {Tally.steps} webhooks, "
            f"{time.monotonic() - started:.0f} s, no counterexample; outcomes {dict(Tally.outcomes)}; "
            f"storm members joined in Redis {db.joined_in_redis(Tally.namespaces)}"
        )
    finally:
        db.close()
