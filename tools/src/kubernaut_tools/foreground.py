"""Staying attached to the local stack (`kubernaut up --foreground`, `make run`) and tearing it down whole.

Ctrl-C under a terminal multiplexer sends SIGINT to the whole foreground group; make exits at once, the
shell and terminal close, and SIGHUP follows while the teardown is still stopping processes. So the first
of SIGINT/SIGHUP/SIGTERM starts the teardown and every later one is ignored, and output that can no
longer be written (EPIPE on a closed pipe, EIO on a vanished terminal) is dropped instead of aborting it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

TEARDOWN_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


class StopRequested(Exception):
    """A teardown signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def ignore_teardown_signals() -> None:
    for sig in TEARDOWN_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    ignore_teardown_signals()  # before anything else: a second signal must not cut the teardown short
    raise StopRequested(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: the first teardown signal raises :class:`StopRequested`, later ones are ignored.

    On leaving (normally or not) the signals stay ignored: what follows is the teardown."""
    for sig in TEARDOWN_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        ignore_teardown_signals()


def _silence(fd: int) -> None:
    """Point ``fd`` at /dev/null, so later writes (and the interpreter's final flush) succeed quietly."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def line_writer(fd: int) -> Callable[[str], None]:
    """Write each message as one line to ``fd``; once that fails (closed pipe, gone terminal), ``fd``
    points at /dev/null. Plain writes: rich's console exits the process on a broken pipe."""

    def write(text: str) -> None:
        try:
            os.write(fd, f"{text}\n".encode(errors="replace"))
        except OSError:
            _silence(fd)

    return write


def survive_closed_output() -> None:
    """Called once output has failed: silence stdout and stderr so nothing else can fail on them."""
    _silence(1)
    _silence(2)
