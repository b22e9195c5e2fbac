"""The services stand apart from the operator tools: nothing of kubernaut_tools is imported by them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import kubernaut

SERVICES = Path(kubernaut.__file__).parent
TOOLS_PACKAGE = "kubernaut_tools"


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_service_module_imports_the_tools() -> None:
    offenders = {
        str(path.relative_to(SERVICES)): sorted(
            name
            for name in _imported_modules(ast.parse(path.read_text()))
            if name.split(".")[0] == TOOLS_PACKAGE
        )
        for path in sorted(SERVICES.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_service_apps_load_no_tools_module() -> None:
    """A fresh interpreter: what this test process already imported cannot hide a dependency."""
    probe = (
        "import json, sys\n"
        "import kubernaut.gateway.app, kubernaut.contextapi.app\n"
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: dict[str, str | None] = json.loads(out.stdout)
    assert "kubernaut.gateway.app" in loaded
    assert "kubernaut.contextapi.app" in loaded
    assert sorted(n for n in loaded if n.split(".")[0] == TOOLS_PACKAGE) == []
    ours = {n: f for n, f in loaded.items() if n.split(".")[0] == "kubernaut"}
    outside = {n: f for n, f in ours.items() if f is not None and not Path(f).is_relative_to(SERVICES)}
    assert outside == {}


def test_the_services_cli_alone_then_with_the_tools() -> None:
    """kubernaut.cli by itself serves and migrates; the tools' entry point adds the rest (fresh interpreter,
    since the console script may already have loaded the plugins into this process's app)."""
    probe = (
        "import json\n"
        "from kubernaut import cli\n"
        "alone = sorted(c.name for c in cli.app.registered_commands)\n"
        "full = {c.name: c.callback.__module__ for c in cli.with_plugins().registered_commands}\n"
        "print(json.dumps([alone, full]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    alone, full = json.loads(out.stdout)
    assert alone == ["check-config", "context-api", "gateway", "migrate"]
    tool_commands = ["bench", "demo", "down", "drill", "send", "seed-history", "status", "up"]
    assert sorted(full) == sorted([*alone, *tool_commands])
    assert {n: full[n] for n in ("gateway", "context-api", "check-config")} == dict.fromkeys(
        ("gateway", "context-api", "check-config"), "kubernaut.cli"
    )
    # the tools' migrate (one of a name, not two) also finds the local stack's configuration
    assert full["migrate"] == "kubernaut_tools.cli"
    assert {full[n] for n in tool_commands} == {"kubernaut_tools.cli"}
