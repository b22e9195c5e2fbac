"""A benchmark's outcome: its figures as data, the tables to print, and its entry in RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

RESULTS_HEADER = """# Benchmark results

Appended by `kubernaut bench NAME` (see README.md beside this file); newest last. Figures from different
runs are not comparable on a shared machine: compare the ratios inside one run.
"""


@dataclass(frozen=True)
class FigureTable:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]

    def rich(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for i, col in enumerate(self.columns):
            table.add_column(col, justify="left" if i < 3 else "right")
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" if i < 3 else "---:" for i in range(len(self.columns))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def tool_version(argv: list[str]) -> str:
    """The x.y.z a tool's ``--version`` prints (on stdout or stderr), else "unknown"."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "unknown"
    found = re.search(r"\d+\.\d+\.\d+", proc.stdout + proc.stderr)
    return found.group(0) if found else "unknown"


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": _cpu_model(),
        "memory_gib": f"{_memory_gib():.1f}",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


@dataclass
class BenchReport:
    name: str
    figures: dict[str, Any]
    tables: list[FigureTable]
    notes: list[str] = field(default_factory=list)
    command: str = ""
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    machine: dict[str, str] = field(default_factory=machine)

    def as_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "date": self.date,
            "command": self.command,
            "machine": self.machine,
            **self.figures,
            "notes": self.notes,
        }

    def markdown(self) -> str:
        m = self.machine
        parts = [
            f"## {self.name}, {self.date}",
            "",
            f"- command: `{self.command}`",
            f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['kernel']}",
            *(f"- {note}" for note in self.notes),
            "",
        ]
        for table in self.tables:
            parts += [table.markdown(), ""]
        return "\n".join(parts)


def find_results_file(start: Path) -> Path | None:
    """``benchmarks/RESULTS.md`` of the checkout that contains ``start``."""
    for d in (start, *start.parents):
        if (d / "benchmarks").is_dir() and (d / "pyproject.toml").is_file():
            return d / "benchmarks" / "RESULTS.md"
    return None


def append(path: Path, report: BenchReport) -> None:
    text = path.read_text() if path.exists() else RESULTS_HEADER
    path.write_text(text.rstrip("\n") + "\n\n" + report.markdown())
