"""Pin running processes, with every thread and child, to CPU cores with ``taskset`` (util-linux).

Children forked later (PostgreSQL's backends) inherit the affinity of the process that forks them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kubernaut_tools.bench.errors import BenchError


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, as /proc lists them now (gone processes are skipped)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        tasks = Path(f"/proc/{current}/task")
        try:
            children = [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]
        except OSError:
            continue
        found.append(current)
        todo += children
    return found


def pin(pid: int, cpus: str) -> list[int]:
    """Pin the process tree of ``pid`` (every thread) to ``cpus``, a CPU list such as "0" or "0,1";
    return the processes pinned."""
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (Debian package util-linux)")
    pinned = []
    for p in process_tree(pid):
        proc = subprocess.run(
            ["taskset", "--all-tasks", "--pid", "--cpu-list", cpus, str(p)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            pinned.append(p)
        elif Path(f"/proc/{p}").exists():  # a process that exited meanwhile needs no pinning
            raise BenchError(f"taskset could not pin pid {p}: {proc.stderr.strip()}")
    return pinned


def cores_of(pid: int) -> set[int]:
    """The CPUs ``pid``'s main thread may run on."""
    return os.sched_getaffinity(pid)
