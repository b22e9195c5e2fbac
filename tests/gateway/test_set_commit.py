"""Issue 16: the set-based group commit (gateway/setcommit.py) gives every webhook of a group exactly
what writing the webhooks one by one (gateway/onebyone.py) gives, results and stored rows alike, and a
group with one failing webhook commits the others (the store finds the failing one)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubernaut.gateway.metrics import GatewayMetrics
from kubernaut.gateway.onebyone import apply_webhook
from kubernaut.gateway.setcommit import apply_group, plan
from kubernaut.gateway.signal import NormalizedSignal
from kubernaut.gateway.store import NewRequest, Phase, RequestStore, StoreUnavailable, StormJoin
from kubernaut.gateway.writes import Webhook, Written
from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import connect_db

pytestmark = pytest.mark.stack

EXAMPLES = int(os.environ.get("KUBERNAUT_SET_COMMIT_EXAMPLES", "40"))
NAMES = ("Cpu", "Mem")
PODS = tuple(f"p{i}" for i in range(4))
STORMS = (("Cpu", "pattern"), ("Cpu", "rate"), ("Mem", "rate"))
MAX_AFFECTED = 3  # small, so the cap and its overflow count are exercised
T0 = datetime(2026, 1, 1, tzinfo=UTC)

Key = tuple[str, str]  # alert name, pod
offsets = st.integers(0, 20)
single = st.tuples(st.integers(1, 3), st.none() | offsets)  # occurrences, the alert's own time
storm = st.dictionaries(st.sampled_from(PODS), st.none() | offsets, min_size=1, max_size=3)
phase = st.fixed_dictionaries(
    {
        "singles": st.dictionaries(
            st.tuples(st.sampled_from(NAMES), st.sampled_from(PODS)), single, max_size=3
        ),
        "storms": st.dictionaries(st.sampled_from(STORMS), storm, max_size=2),
        "resolves": st.dictionaries(
            st.tuples(st.sampled_from(NAMES), st.sampled_from(PODS)), st.none() | offsets, max_size=3
        ),
        # Resolutions another gateway process ran in Redis just before this phase: they start a new
        # period of the fingerprint (its later firings carry it) and commit later, or never.
        "elsewhere": st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(PODS)), max_size=2),
    }
)
hook = st.tuples(
    st.lists(phase, min_size=1, max_size=3), st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3))
)
# Per round: its webhooks, and whether the other process's resolutions so far commit after them.
rounds = st.lists(st.tuples(st.lists(hook, min_size=1, max_size=5), st.booleans()), min_size=1, max_size=4)


class _Run:
    """One side of the comparison: its own namespace and fingerprints, the same shapes and times."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.namespace = f"set-{self.tag}"
        self.seeded: dict[str, int] = {}  # alert name -> request id the counts go to
        # Redis's side, as the ingest script keeps it: every signal's seq, each fingerprint's period
        # (its last resolution's seq), and the other process's resolutions not committed yet.
        self.seq = 1_000
        self.period: dict[str, int] = {}
        self.elsewhere: list[tuple[str, int]] = []

    def order(self) -> int:
        self.seq += 1
        return self.seq

    def fp(self, name: str, pod: str) -> str:
        return f"{self.tag}:{name}:{pod}"

    def signal(self, name: str, pod: str) -> NormalizedSignal:
        return NormalizedSignal(
            source_type="prometheus",
            name=name,
            firing=True,
            severity="warning",
            namespace=self.namespace,
            resource_kind="Pod",
            resource_name=pod,
            labels={"alertname": name, "pod": pod},
            annotations={},
            fingerprint=self.fp(name, pod),
        )

    def webhook(self, spec: Any, now: datetime) -> Webhook:
        phases = []
        for p in spec[0]:
            built = Phase()
            for name, pod in p["elsewhere"]:
                resolution = (self.fp(name, pod), self.order())
                self.period[resolution[0]] = resolution[1]
                self.elsewhere.append(resolution)
            for (name, pod), (n, at) in sorted(p["singles"].items()):
                seen = None if at is None else T0 + timedelta(seconds=at)
                fp = self.fp(name, pod)
                built.singles[fp] = NewRequest(
                    self.signal(name, pod), "dev", "P2", n, seen, self.period.get(fp, 0), self.order()
                )
            for (name, kind), members in p["storms"].items():
                sfp = f"{self.tag}:storm:{name}:{kind}"
                signals = {self.fp(name, pod): self.signal(name, pod) for pod in sorted(members)}
                first = next(iter(signals.values()))
                join = StormJoin(sfp, kind, T0, first, "dev", "P2", signals, len(signals) + 1)
                join.first_seen = {
                    self.fp(name, pod): T0 + timedelta(seconds=at)
                    for pod, at in members.items()
                    if at is not None
                }
                join.lookback = timedelta(seconds=60)
                built.storms[sfp] = join
            for (name, pod), at in sorted(p["resolves"].items()):
                fp = self.fp(name, pod)
                built.resolves[fp] = None if at is None else T0 + timedelta(seconds=at)
                built.resolve_seqs[fp] = self.period[fp] = self.order()
            phases.append(built)
        counts = {self.seeded[name]: n for name, n in spec[1].items()}
        return Webhook("prometheus", "bench", now, phases, counts)

    def late(self, now: datetime) -> Webhook:
        """The other process's resolutions so far, committed now (after firings Redis ran later)."""
        phases = []
        for fp, seq in self.elsewhere:
            phases.append(Phase(resolves={fp: None}, resolve_seqs={fp: seq}))
        self.elsewhere = []
        return Webhook("prometheus", "elsewhere", now, phases)

    async def seed(self, conn: asyncpg.Connection) -> None:
        hook = Webhook("prometheus", "seed", T0, [Phase()])
        for name in NAMES:
            hook.phases[0].singles[self.fp(name, "seed")] = NewRequest(self.signal(name, "seed"), "dev", "P2")
        async with conn.transaction():
            (written,) = await apply_webhook(conn, hook, MAX_AFFECTED)
        self.seeded = {name: written.singles[self.fp(name, "seed")][0] for name in NAMES}

    async def normalizer(self, conn: asyncpg.Connection) -> Callable[[int | None], object]:
        rows = await conn.fetch(
            "SELECT id, fingerprint FROM remediation_requests WHERE namespace = $1 ORDER BY id",
            self.namespace,
        )
        rank: dict[int, tuple[str, int]] = {}
        seen: dict[str, int] = {}
        for r in rows:
            f = self.strip(r["fingerprint"])
            rank[r["id"]] = (f, seen.get(f, 0))
            seen[f] = seen.get(f, 0) + 1
        return lambda rid: None if rid is None else rank[rid]

    def strip(self, fingerprint: str) -> str:
        return fingerprint.removeprefix(f"{self.tag}:")

    async def rows(self, conn: asyncpg.Connection) -> list[dict[str, Any]]:
        norm = await self.normalizer(conn)
        requests = await conn.fetch("SELECT * FROM remediation_requests WHERE namespace = $1", self.namespace)
        out = []
        for r in requests:
            row = dict(r)
            for volatile in ("id", "namespace", "updated_at", "created_at", "fingerprint"):
                row.pop(volatile, None)
            row["request"] = norm(r["id"])
            row["storm_request_id"] = norm(r["storm_request_id"])
            members = await conn.fetch(
                "SELECT fingerprint, resource, first_seen, received_at, resolved_at FROM storm_members"
                " WHERE request_id = $1 ORDER BY fingerprint",
                r["id"],
            )
            row["members"] = [(self.strip(m["fingerprint"]), *list(m.values())[1:]) for m in members]
            out.append(row)
        return sorted(out, key=lambda row: repr(row["request"]))

    def written(self, results: list[list[Written]], norm: Callable[[int | None], object]) -> object:
        s = self.strip
        return [
            [
                (
                    {s(f): (norm(i), ins) for f, (i, ins) in w.singles.items()},
                    {s(f): (norm(i), ins, sorted(map(s, added))) for f, (i, ins, added) in w.storms.items()},
                    {s(f): norm(i) for f, i in w.resolved.items()},
                )
                for w in hook
            ]
            for hook in results
        ]


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rounds=rounds)
def test_set_based_group_commit_equals_one_by_one(
    stack: LocalStack, rounds: list[tuple[list[Any], bool]]
) -> None:
    asyncio.run(_compare(stack, rounds))


def _hooks(run: _Run, specs: list[Any], nows: list[datetime], late: bool) -> list[Webhook]:
    built = [run.webhook(s, t) for s, t in zip(specs, nows, strict=False)]
    return [*built, run.late(nows[-1])] if late and run.elsewhere else built


async def _compare(stack: LocalStack, rounds: list[tuple[list[Any], bool]]) -> None:
    conn = await connect_db(stack)
    try:
        grouped, reference = _Run(), _Run()
        await grouped.seed(conn)
        await reference.seed(conn)
        for r, (specs, late) in enumerate(rounds):
            nows = [T0 + timedelta(seconds=10 * r + k) for k in range(len(specs) + 1)]
            async with conn.transaction():
                got = await apply_group(conn, _hooks(grouped, specs, nows, late), MAX_AFFECTED)
            want = []
            async with conn.transaction():
                for h in _hooks(reference, specs, nows, late):
                    want.append(await apply_webhook(conn, h, MAX_AFFECTED))
            assert grouped.written(got, await grouped.normalizer(conn)) == reference.written(
                want, await reference.normalizer(conn)
            ), f"round {r}"
            assert await grouped.rows(conn) == await reference.rows(conn), f"round {r}"
    finally:
        await conn.close()


def test_phases_that_do_not_commute_start_a_new_stage() -> None:
    run = _Run()
    none: dict[str, Any] = {"singles": {}, "storms": {}, "resolves": {}, "elsewhere": []}
    fire = {**none, "singles": {("Mem", "p0"): (1, None)}}
    resolve = {**none, "resolves": {("Mem", "p0"): None}}
    join = {**none, "storms": {("Cpu", "rate"): {"p1": None}}}
    other = {**none, "singles": {("Mem", "p1"): (1, None)}}
    cpu = {**none, "singles": {("Cpu", "p2"): (1, None)}}

    def cut(*phases: dict[str, Any]) -> list[int]:
        hooks = [run.webhook(([p], {}), T0) for p in phases]
        return [len(stage) for stage in plan(hooks)[0]]

    assert cut(fire, other, join) == [3]  # commuting: one stage
    assert cut(resolve, fire) == [1, 1]  # fires again what was resolved
    assert cut(resolve, resolve) == [1, 1]  # resolves again
    assert cut(resolve, join) == [1, 1]  # joins a storm the resolution may have closed
    assert cut(join, cpu) == [1, 1]  # a request of a group whose storm may have opened first
    assert cut(resolve, other) == [2]  # other fingerprints: no storm involved


async def test_a_group_with_one_failing_webhook_commits_the_others(stack: LocalStack) -> None:
    store = RequestStore(stack.settings().postgres, GatewayMetrics(), max_affected=MAX_AFFECTED)
    await store.start()
    run = _Run()
    try:
        specs: list[Any] = [
            ([{"singles": {("Cpu", f"p{i}"): (1, None)}, "storms": {}, "resolves": {}, "elsewhere": []}], {})
            for i in range(4)
        ]
        hooks = [run.webhook(s, T0) for s in specs]
        hooks[2].signal_type = "not-a-signal-type"  # violates the table's CHECK constraint
        # Queued before the committer runs, so the four are one group.
        results = await asyncio.gather(
            *(
                store.write_phases(
                    signal_type=h.signal_type, source=h.source, now=h.now, phases=h.phases, counts=h.counts
                )
                for h in hooks
            ),
            return_exceptions=True,
        )
    finally:
        await store.close()
    assert isinstance(results[2], StoreUnavailable)
    good = [r for k, r in enumerate(results) if k != 2]
    assert all(isinstance(r, list) and r[0].singles[next(iter(r[0].singles))][1] for r in good), results
    conn = await connect_db(stack)
    try:
        rows = await conn.fetch(
            "SELECT resource_name, created_at FROM remediation_requests WHERE namespace = $1"
            " ORDER BY resource_name",
            run.namespace,
        )
    finally:
        await conn.close()
    assert [r["resource_name"] for r in rows] == ["p0", "p1", "p3"]
    # now() is the transaction's start: one group, one transaction (its webhooks in savepoints)
    assert len({r["created_at"] for r in rows}) == 1


@pytest.mark.parametrize("late", [False, True])
def test_a_refire_in_a_period_another_process_opened_is_not_merged(stack: LocalStack, late: bool) -> None:
    """Two firings of one fingerprint in one stage, a resolution by another process between them in
    Redis: two requests, whether that resolution commits after the group or not yet."""
    none: dict[str, Any] = {"singles": {}, "storms": {}, "resolves": {}, "elsewhere": []}
    fire = {**none, "singles": {("Mem", "p0"): (2, None)}}
    refire = {**fire, "elsewhere": [("Mem", "p0")]}
    asyncio.run(_compare(stack, [([([fire], {}), ([refire], {})], late), ([([fire], {})], False)]))
