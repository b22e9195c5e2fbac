"""The migrations' order, read from the package as `migrate` reads it (pure: no server)."""

from __future__ import annotations

import re
from importlib import resources

from kubernaut.store.migrate import available


def _sql_files() -> list[str]:
    folder = resources.files("kubernaut.store") / "migrations"
    return sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))


def test_every_sql_file_is_a_migration_named_nnn_name() -> None:
    files = _sql_files()
    assert files
    for name in files:
        assert re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", name), name
    assert [f"{m.version:03d}_{m.name}.sql" for m in available()] == files


def test_versions_are_unique_and_applied_in_numeric_order() -> None:
    versions = [m.version for m in available()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_each_migration_carries_its_file_text() -> None:
    folder = resources.files("kubernaut.store") / "migrations"
    for m in available():
        text = (folder / f"{m.version:03d}_{m.name}.sql").read_text()
        assert m.sql == text
        assert m.sql.strip()
