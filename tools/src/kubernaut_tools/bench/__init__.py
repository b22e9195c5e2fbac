"""Benchmarks run by ``kubernaut bench NAME``; what each measures is in benchmarks/README.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kubernaut_tools.bench import context_api, gateway_ingest, isolation
from kubernaut_tools.bench.report import BenchReport
from kubernaut_tools.localstack import LocalStack


class Benchmark(Protocol):
    def __call__(self, stack: LocalStack, *, quick: bool, log: Callable[[str], None]) -> BenchReport: ...


BENCHMARKS: dict[str, Benchmark] = {
    "gateway-ingest": gateway_ingest.run,
    "context-api": context_api.run,
    "isolation": isolation.run,
}
