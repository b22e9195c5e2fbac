"""Every module under src/ and tools/src/ imports on its own in a fresh interpreter: no import cycle, no
module that works only because another one was imported first (tests/import_walk.py says how, and why it
is fast)."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import kubernaut
import kubernaut_tools
from tests.import_walk import project_packages, third_party_imports

SRC = Path(kubernaut.__file__).parent.parent
TOOLS_SRC = Path(kubernaut_tools.__file__).parent.parent
WALKER = Path(__file__).with_name("import_walk.py")
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(SRC), str(TOOLS_SRC)]))


@cache
def _outcomes() -> dict[str, str | None]:
    # -I: nothing but the installed packages on the path (not the working directory, not tests/).
    workers = str(len(os.sched_getaffinity(0)) + 1)
    argv = [sys.executable, "-I", str(WALKER), os.pathsep.join(map(str, (SRC, TOOLS_SRC))), workers, *MODULES]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    outcomes: dict[str, str | None] = json.loads(result.stdout)
    return outcomes


def test_the_walk_covers_the_services_and_the_cli() -> None:
    for module in (
        "kubernaut.gateway.app",
        "kubernaut.contextapi.app",
        "kubernaut.cli",
        "kubernaut.__main__",
        "kubernaut_tools.cli",
    ):
        assert module in MODULES


def test_the_preload_holds_no_project_module() -> None:
    preload = third_party_imports(SRC)
    assert "pydantic" in preload
    assert "redis.asyncio" in preload
    assert "kubernaut" in project_packages(SRC)
    assert not [m for m in preload if m.partition(".")[0] in ("kubernaut", "os", "asyncio")]


def test_the_entry_point_starts_on_its_own() -> None:
    # Importing kubernaut.__main__ runs the CLI: start it as `python -m kubernaut` does, for its help.
    result = subprocess.run(
        [sys.executable, "-I", "-m", "kubernaut", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith(".__main__")])
def test_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    assert _outcomes()[module] is None, _outcomes()[module]
