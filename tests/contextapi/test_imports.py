"""Every module of the Context-API package imports on its own, in a fresh interpreter: no import cycle
hides behind the order in which the app happens to import things."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import kubernaut.contextapi


def _modules() -> list[str]:
    package = kubernaut.contextapi
    names = [package.__name__]
    names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")]
    return sorted(names)


def test_the_walk_finds_the_cache_package() -> None:
    assert {"kubernaut.contextapi.metrics", "kubernaut.contextapi.cache.l1"} <= set(_modules())


@pytest.mark.parametrize("module", _modules())
def test_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
