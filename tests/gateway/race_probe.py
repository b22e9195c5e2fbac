"""A probe, not part of the suite (pytest collects only test_*.py): how often do two gateway processes
that race a resolution and a re-fire of one fingerprint leave the alert firing on a closed request?
docs/gateway.md ("Counting guarantee") states this limit. Run it explicitly:

    KUBERNAUT_TEST_PORT_OFFSET=... .venv/bin/pytest -q -s tests/gateway/race_probe.py
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from kubernaut_tools.localstack import LocalStack
from tests.gateway.helpers import PROMETHEUS, alert, fetch_rows, gateway_process, unique, webhook

pytestmark = pytest.mark.stack

TRIALS = int(os.environ.get("KUBERNAUT_RACE_TRIALS", "300"))
ONE_PROCESS = os.environ.get("KUBERNAUT_RACE_ONE_PROCESS") == "1"  # both webhooks to the same process


async def test_resolution_and_refire_racing_in_two_processes(stack: LocalStack) -> None:
    port = stack.topology.gateway_http + 161
    headers = {"Authorization": f"Bearer {stack.gateway_token}"}
    with (
        gateway_process(stack, "gateway-race-a", port, RATE_LIMIT__MODE="off") as url_a,
        gateway_process(stack, "gateway-race-b", port + 1, RATE_LIMIT__MODE="off") as url_b,
    ):
        async with (
            httpx.AsyncClient(base_url=url_a, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=url_a if ONE_PROCESS else url_b, headers=headers, timeout=30) as b,
        ):
            closed = 0
            for _ in range(TRIALS):
                name = unique("Race")
                firing = alert(name)
                await a.post(PROMETHEUS, json=webhook(firing))
                await asyncio.gather(
                    a.post(PROMETHEUS, json=webhook({**firing, "status": "resolved"})),
                    b.post(PROMETHEUS, json=webhook(firing)),
                )
                again = (await a.post(PROMETHEUS, json=webhook(firing))).json()["signals"][0]
                rows = await fetch_rows(
                    stack,
                    "SELECT id FROM remediation_requests WHERE signal_name = $1 AND resolved_at IS NULL",
                    name,
                )
                if again["request_id"] not in [r["id"] for r in rows]:
                    closed += 1
    where = "one process" if ONE_PROCESS else "two processes"
    print(
        f"\n{where}: {closed} of {TRIALS} trials: the firing alert's repeat was counted onto a closed request"
    )
