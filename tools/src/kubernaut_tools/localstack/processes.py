"""Start, track and stop the stack's processes by PID (never by name).

The PID table is a JSON file in the run directory, so ``kubernaut down`` in a later shell stops exactly
what ``kubernaut up`` started. A recorded PID counts only while its command line still carries the
component's marker (its port), so a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    marker: str
    argv: list[str]


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(record: ProcessRecord) -> bool:
    cmd = _cmdline(record.pid)
    if cmd is None:
        return False
    # Empty while the kernel is still setting up a just-exec'd program's arguments (Popen returns
    # once exec began): alive, unless it is a zombie (checked below).
    if cmd and record.marker not in cmd:
        return False
    if _is_zombie(record.pid):
        _reap(record.pid)
        return False
    return True


def has_exited(record: ProcessRecord) -> bool:
    """The PID is gone or a zombie. Unlike ``not is_alive``, a process caught mid-exec (its command line
    still empty) has not exited."""
    if not Path(f"/proc/{record.pid}").exists() or _is_zombie(record.pid):
        _reap(record.pid)
        return True
    cmd = _cmdline(record.pid)
    return bool(cmd) and record.marker not in str(cmd)


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll ``condition`` until true; raise TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ProcessTable:
    """The run directory's record of started processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, ProcessRecord]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {name: ProcessRecord(**rec) for name, rec in data.items()}

    def _save(self, records: dict[str, ProcessRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(r) for n, r in records.items()}, indent=2))
        tmp.replace(self.path)

    def get(self, name: str) -> ProcessRecord | None:
        return self.load().get(name)

    def put(self, record: ProcessRecord) -> None:
        records = self.load()
        records[record.name] = record
        self._save(records)

    def remove(self, name: str) -> None:
        records = self.load()
        if records.pop(name, None) is not None:
            self._save(records)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    marker: str,
    log: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start ``argv`` in its own session, output to ``log``; it outlives the caller."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    # Right after exec the command line can still read empty; until it shows the marker, is_alive would
    # call the process dead (and stop() would not signal it).
    deadline = time.monotonic() + 2.0
    while proc.poll() is None and marker not in (_cmdline(proc.pid) or "") and time.monotonic() < deadline:
        time.sleep(0.005)
    return ProcessRecord(name=name, pid=proc.pid, marker=marker, argv=list(argv))


def signal_process(record: ProcessRecord, sig: signal.Signals) -> bool:
    """Send ``sig`` to the recorded PID if it is still the process we started."""
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
        return True
    return False


def stop(record: ProcessRecord, *, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send ``sig`` (SIGTERM by default), wait for exit; SIGKILL if it does not stop in time."""
    if not signal_process(record, sig):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGCONT)  # a SIGSTOPped process must wake to die
    try:
        wait_until(lambda: not is_alive(record), timeout=timeout, what=f"{record.name} to stop")
    except TimeoutError:
        signal_process(record, signal.SIGKILL)
        wait_until(lambda: not is_alive(record), timeout=5, what=f"{record.name} to die")
