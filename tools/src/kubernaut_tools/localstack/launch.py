"""Launching the stack's processes: spawn into the run directory's process table, wait until ready.

The one way every part of the stack, and every extra process a benchmark starts, comes up: `launch`
spawns unless the component already runs, then polls its readiness probe; a process that exits meanwhile
fails at once with its log's last line instead of after the timeout.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernaut_tools.localstack.processes import (
    ProcessRecord,
    ProcessTable,
    is_alive,
    spawn,
    stop,
    wait_until,
)
from kubernaut_tools.localstack.topology import RunDir


def last_line(log: Path) -> str:
    """The log's last non-blank line (300 characters at most), or "" when there is none."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def http_ok(url: str) -> bool:
    """The readiness probe of an HTTP component: ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Launcher:
    """Starts and stops the processes of one run directory, by PID, recording each in its table."""

    def __init__(self, run: RunDir, table: ProcessTable, log: Callable[[str], None]) -> None:
        self.run = run
        self.table = table
        self._log = log

    def record(self, name: str) -> ProcessRecord | None:
        """The recorded process ``name`` while it is still the one we started and alive, else None."""
        rec = self.table.get(name)
        return rec if rec is not None and is_alive(rec) else None

    def spawn(self, name: str, argv: list[str], marker: str, **kw: Any) -> ProcessRecord:
        """Start ``argv`` (output to the run directory's log of ``name``) and record it."""
        rec = spawn(name, argv, marker=marker, log=self.run.log(name), **kw)
        self.table.put(rec)
        self._log(f"started {name} (pid {rec.pid})")
        return rec

    def exited(self, name: str) -> str:
        """The error for a process that died while starting: its log's last line says why."""
        log = self.run.log(name)
        said = last_line(log)
        return f"{name} exited during start-up{': ' + said if said else ''} (log: {log})"

    def wait_ready(
        self, name: str, ready: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
    ) -> None:
        """Poll ``ready`` until true; RuntimeError as soon as ``name`` is no longer running."""

        def check() -> bool:
            if self.record(name) is None:
                raise RuntimeError(self.exited(name))
            return ready()

        wait_until(check, timeout=timeout, interval=interval, what=what)

    def launch(
        self,
        name: str,
        argv: list[str],
        *,
        marker: str,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
        **kw: Any,
    ) -> ProcessRecord:
        """Spawn ``name`` unless it runs, then wait for ``ready`` (see `wait_ready`)."""
        rec = self.record(name) or self.spawn(name, argv, marker, **kw)
        self.wait_ready(name, ready, timeout=timeout, what=what)
        return rec

    def retire(self, name: str, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Stop ``name`` (waiting until it has exited) and forget it; whether it was running."""
        rec = self.table.get(name)
        running = rec is not None and is_alive(rec)
        if rec is not None:
            if running:
                stop(rec, sig=sig)
                self._log(f"stopped {name} (pid {rec.pid})")
            self.table.remove(name)
        return running
