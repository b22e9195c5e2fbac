"""A small Prometheus target whose series the tests and the demo set: the local alert rules' real input.

The series live in a JSON file in the run directory (see :func:`write_signals`); every scrape reads it
again, so changing the file is all it takes to make an alert fire or resolve one scrape later.
Run as ``python -m kubernaut_tools.localstack.signal_source --file F --host H --port P``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

METRIC = "kubernaut_signal_source_active"
LABELS = ("scenario", "namespace", "pod")


@dataclass(frozen=True)
class ScenarioSeries:
    """One series: 1 while ``active`` (the scenario's alert fires for this pod), else 0."""

    scenario: str
    namespace: str
    pod: str
    active: bool = True


def write_signals(path: Path, signals: Iterable[ScenarioSeries]) -> None:
    """Replace the served series atomically (a scrape never sees a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(s) for s in signals], indent=1))
    tmp.replace(path)


def read_signals(path: Path) -> list[ScenarioSeries]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [ScenarioSeries(**item) for item in raw]


class SignalCollector(Collector):
    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            METRIC, "1 while the local alert scenario is active for this series", labels=LABELS
        )
        for s in read_signals(self.path):
            family.add_metric([s.scenario, s.namespace, s.pod], 1.0 if s.active else 0.0)
        yield family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """One line per scrape every second would only bury real problems in the log."""


def serve(path: Path, host: str, port: int) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SignalCollector(path))
    with make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler) as httpd:
        httpd.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.file, args.host, args.port)


if __name__ == "__main__":
    main()
