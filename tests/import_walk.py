"""Import each given module alone, starting from an interpreter that has never loaded a project module.

Run as a script in a fresh interpreter: it imports the third-party modules the project imports (their
cost is most of an import, and they cannot close a cycle through the project), then forks one child per
project module; each child imports its one module and exits, so every import starts from the same state.
Prints ``{module: error or null}`` as JSON: the error as ``Type: message``, null when it imported."""

from __future__ import annotations

import ast
import contextlib
import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path


def project_packages(src: Path) -> set[str]:
    """The top-level packages under ``src`` (the services' package and any other the tree holds)."""
    return {m.name for m in pkgutil.iter_modules([str(src)])}


def third_party_imports(src: Path) -> list[str]:
    """The non-project, non-standard-library modules named by ``import``/``from`` lines under ``src``."""
    project = project_packages(src)
    names: set[str] = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    top = {n: n.partition(".")[0] for n in names}
    return sorted(n for n, t in top.items() if t not in project and t not in sys.stdlib_module_names)


def _child(module: str, write_fd: int) -> None:
    # The parent's stdout carries the JSON answer: nothing a module prints may land in it.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        importlib.import_module(module)
        os._exit(0)
    except BaseException as e:  # any failure is the answer
        # Short: the parent reads the pipe only after the child has exited.
        os.write(write_fd, f"{type(e).__name__}: {e}".encode()[:2000])
        os._exit(1)


def import_each(modules: list[str], workers: int) -> dict[str, str | None]:
    outcomes: dict[str, str | None] = {}
    running: dict[int, tuple[str, int]] = {}
    pending = list(modules)
    while pending or running:
        while pending and len(running) < workers:
            module = pending.pop(0)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _child(module, write_fd)
            os.close(write_fd)
            running[pid] = (module, read_fd)
        pid, status = os.wait()
        module, read_fd = running.pop(pid)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        code = os.waitstatus_to_exitcode(status)
        outcomes[module] = None if code == 0 else (message or f"exit status {code}")
    return dict(sorted(outcomes.items()))


def main() -> None:
    # argv: the source roots (os.pathsep between them), the number of workers, the modules.
    roots = [Path(p) for p in sys.argv[1].split(os.pathsep)]
    workers, modules = int(sys.argv[2]), sys.argv[3:]
    project = set().union(*(project_packages(src) for src in roots))
    for name in sorted({n for src in roots for n in third_party_imports(src)}):
        if name.partition(".")[0] in project:
            continue  # the other root's package
        # An optional or missing dependency: the modules naming it report it themselves.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    assert not [m for m in sys.modules if m.partition(".")[0] in project], "a project module was preloaded"
    print(json.dumps(import_each(modules, workers)))


if __name__ == "__main__":
    main()
