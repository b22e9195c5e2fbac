"""The manifest tests render with the project's own kubectl, so a fresh Debian machine (which packages none)
runs them after `make install` alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.manifests import DEPLOY, kubectl


def test_kubectl_is_the_one_the_venv_installed() -> None:
    assert Path(kubectl()).parent == Path(sys.executable).parent


def test_manifests_render_with_no_kubectl_on_path(tmp_path: Path) -> None:
    """An empty PATH hides whatever kubectl the machine has; rendering still works."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / "production")],
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout
