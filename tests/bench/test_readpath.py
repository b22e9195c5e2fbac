"""The read benchmarks' load script (get.lua) and process pinning, against real servers and processes:
draws follow the key file's probabilities, a walk requests every line once and resumes where it stopped,
answers are counted by their X-Cache tier, and taskset pins a process with its children."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubernaut_tools.bench.keymix import KeyClass, mixture, write_key_file
from kubernaut_tools.bench.pinning import cores_of, pin, process_tree
from kubernaut_tools.bench.wrk import Load, get_keys
from kubernaut_tools.localstack.processes import wait_until

KEYS = 100


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.paths: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionResetError):  # wrk resets its connections at the end
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    """Answers every GET, with X-Cache l3 the first time a path is asked and l2 afterwards."""

    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per answer
    disable_nagle_algorithm = True
    server: Recorder

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths[self.path] += 1
            seen = self.server.paths[self.path] > 1
        self.send_response(200)
        self.send_header("X-Cache", "l2" if seen else "l3")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    write_key_file(path, mixture([KeyClass("k", 1.0, 1.0, [f"/k/{i}" for i in range(1, KEYS + 1)])]))
    return path


def test_draws_follow_the_key_files_probabilities(server: Recorder, key_file: Path) -> None:
    result = get_keys(server.url, key_file, Load(duration_s=1, connections=4, threads=1))
    asked = sum(server.paths.values())
    assert result.requests > 0
    assert set(server.paths) <= {f"/k/{i}" for i in range(1, KEYS + 1)}
    # Zipf s=1 over 100 keys: the first takes 19.3 %, the first ten 56.6 %; within 6 standard deviations
    # of the binomial share for however many draws this machine made in the second.
    harmonic = sum(1 / k for k in range(1, KEYS + 1))
    for top in (1, 10):
        p = sum(1 / k for k in range(1, top + 1)) / harmonic
        share = sum(server.paths[f"/k/{i}"] for i in range(1, top + 1)) / asked
        assert abs(share - p) <= 6 * math.sqrt(p * (1 - p) / asked), (top, share, asked)
    # Every answer wrk counted is in the X-Cache counts; first asks were l3, repeats l2.
    assert sum(result.served_by.values()) == result.requests
    assert result.served_by["l3"] <= KEYS
    assert result.served_by["none"] == 0
    assert result.position is None
    with pytest.raises(ValueError, match="one wrk thread"):
        get_keys(server.url, key_file, Load(duration_s=1, connections=4, threads=2))


def test_a_walk_asks_every_line_once_in_order_and_resumes(server: Recorder, key_file: Path) -> None:
    one = Load(duration_s=1, connections=1, threads=1)
    first = get_keys(server.url, key_file, one, walk_from=1, rate_per_s=40)
    assert first.position is not None
    assert 1 < first.position < KEYS  # at least one line asked, the walk not finished: it resumes
    assert dict(server.paths) == {f"/k/{i}": 1 for i in range(1, first.position)}
    second = get_keys(server.url, key_file, one, walk_from=first.position, rate_per_s=40)
    assert second.position is not None
    assert dict(server.paths) == {f"/k/{i}": 1 for i in range(1, second.position)}
    assert second.served_by == {"l1": 0, "l2": 0, "l3": second.requests, "none": 0}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin to one")
def test_pin_moves_a_process_and_its_children_to_one_core(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        wait_until(lambda: len(process_tree(proc.pid)) == 3, timeout=10, what="the shell's two children")
        core = min(os.sched_getaffinity(0))
        pinned = pin(proc.pid, str(core))
        assert sorted(pinned) == sorted(process_tree(proc.pid))
        assert all(cores_of(pid) == {core} for pid in pinned)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
