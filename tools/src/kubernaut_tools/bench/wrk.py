"""Drive HTTP load with Debian's ``wrk`` and read its figures.

The Lua scripts (``post.lua``: POST bodies from a file; ``get.lua``: GET paths drawn from a key file) print,
when the run ends, one line ``KUBERNAUT_WRK {json}`` with the exact counts and latency percentiles (and, for
``get.lua``, the answers per ``X-Cache`` tier); :func:`parse_wrk_output` reads it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kubernaut_tools.bench.errors import BenchError

MARKER = "KUBERNAUT_WRK "
# The Lua scripts, read by wrk from disk; they load wrk_common.lua from beside themselves.
SCRIPTS = Path(__file__).parent
PERCENTILES = ("50", "75", "90", "99", "99.9")


class WrkError(BenchError):
    """wrk could not run or did not report."""


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    requests: int
    non_2xx: int  # wrk counts answers with status > 399
    socket_errors: int  # connect, read, write and timeout errors
    latency_ms: dict[str, float]  # percentile ("50", "99", ...) -> milliseconds
    mean_ms: float
    max_ms: float
    served_by: dict[str, int] = field(default_factory=dict)  # X-Cache value -> answers (get.lua only)
    position: int | None = None  # get.lua's walk: the key-file line it would have sent next

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def parse_wrk_output(output: str) -> WrkResult:
    """The figures of the ``KUBERNAUT_WRK`` line in wrk's standard output."""
    line = next((ln for ln in output.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        first = next((ln.strip() for ln in output.splitlines() if ln.strip()), "no output")
        raise WrkError(f"wrk reported no figures: {first}")
    try:
        data = json.loads(line[len(MARKER) :])
        errors, latency = data["errors"], data["latency_us"]
        return WrkResult(
            duration_s=data["duration_us"] / 1e6,
            requests=int(data["requests"]),
            non_2xx=int(errors["status"]),
            socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
            latency_ms={p: latency["percentiles"][p] / 1000 for p in PERCENTILES},
            mean_ms=latency["mean"] / 1000,
            max_ms=latency["max"] / 1000,
            served_by={str(k): int(v) for k, v in data.get("x_cache", {}).items()},
            position=int(data["position"]) if "position" in data else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WrkError(f"wrk's figures line is malformed ({err!r}): {line[:120]}") from None


@dataclass(frozen=True)
class Load:
    """How hard and how long: the same for every target of a benchmark."""

    duration_s: float
    connections: int = 50
    threads: int = 2

    def interval_ms(self, rate_per_s: float) -> float:
        """Each thread's time between requests for ``rate_per_s`` in all."""
        return self.threads * 1000 / rate_per_s


def _run(
    script: str,
    url: str,
    script_args: list[str],
    load: Load,
    headers: tuple[str, ...],
    cpus: str | None,
) -> WrkResult:
    if shutil.which("wrk") is None:
        raise WrkError("wrk is not installed (Debian package wrk: make install)")
    argv = [
        *(["taskset", "--cpu-list", cpus] if cpus is not None else []),
        "wrk",
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={load.duration_s:g}s",
        "--timeout=10s",
        f"--script={SCRIPTS / script}",
        *(f"--header={h}" for h in headers),
        url,
        "--",
        *script_args,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=load.duration_s + 60)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise WrkError(f"wrk failed: {message[0] if message else f'exit {proc.returncode}'}")
    return parse_wrk_output(proc.stdout)


def run_wrk(
    url: str,
    body_file: Path,
    load: Load,
    *,
    headers: tuple[str, ...] = (),
    rate_per_s: float | None = None,
    salt: str = "0000",
    cpus: str | None = None,
) -> WrkResult:
    """POST the bodies of ``body_file`` to ``url`` for ``load.duration_s``; paced when ``rate_per_s``;
    wrk pinned to ``cpus`` (a taskset CPU list) when given."""
    interval = load.interval_ms(rate_per_s) if rate_per_s else 0
    return _run("post.lua", url, [str(body_file), f"{interval:.6f}", salt], load, headers, cpus)


def get_keys(
    base_url: str,
    key_file: Path,
    load: Load,
    *,
    walk_from: int | None = None,
    rate_per_s: float | None = None,
    salt: str = "0000",
    cpus: str | None = None,
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """GET paths of ``key_file`` (keymix.py) on ``base_url``: drawn with the file's probabilities, or walked
    in file order from line ``walk_from``; paced when ``rate_per_s``; pinned to ``cpus``.

    One wrk thread only: wrk starts each thread as soon as its script has loaded and starts its clock
    after the last one, so with a large key file (a second or so to load) a first thread would send for
    longer than the run counts, inflating the rate. One thread sends far more than these services serve.
    """
    if load.threads != 1:
        raise ValueError("get.lua runs on one wrk thread")
    interval = load.interval_ms(rate_per_s) if rate_per_s else 0
    mode = ["walk" if walk_from is not None else "draw", f"{interval:.6f}", salt, str(walk_from or 1)]
    return _run("get.lua", base_url, [str(key_file), *mode], load, headers, cpus)
