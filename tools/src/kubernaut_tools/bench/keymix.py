"""The keys a read benchmark asks for: Zipf-distributed popularity over the Context-API's URLs.

A *class* of keys (incidents by id, list queries) gets a share of the requests, spread over its paths by
Zipf's law with exponent ``s``: the k-th most popular path is asked with probability proportional to
``1 / k**s``. The classes together make one *mix*: every path with its probability, most popular first.
The key file written from a mix holds each path with the cumulative probability up to it; ``get.lua``
draws paths from it by inverse CDF, or walks it in order (most popular first) to warm a cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, product
from pathlib import Path
from urllib.parse import urlencode

from kubernaut.store.schema import OPEN_PHASES
from kubernaut_tools.seed import NAMESPACES, NODE_NAMESPACE, SIGNALS

INCIDENTS_PATH = "/api/v1/incidents"
LIST_LIMIT = 20
# Shares and exponents of the Context-API benchmarks' mix (README.md states them).
BY_ID_SHARE, LIST_SHARE, EXPONENT = 0.8, 0.2, 1.0


@dataclass(frozen=True)
class KeyClass:
    name: str
    share: float  # of all requests
    exponent: float  # Zipf's s
    paths: Sequence[str]  # most popular first


Mix = list[tuple[str, float]]  # (path, probability), most popular first


def zipf(n: int, exponent: float) -> list[float]:
    """Probabilities of ranks 1..n under Zipf's law with ``exponent``; they sum to 1."""
    if n < 1:
        raise ValueError("a Zipf distribution needs at least one rank")
    weights = [k**-exponent for k in range(1, n + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def mixture(classes: Iterable[KeyClass]) -> Mix:
    """Every path of every class with its probability (share x Zipf), most popular first."""
    classes = list(classes)
    total_share = sum(c.share for c in classes)
    if not classes or abs(total_share - 1) > 1e-9:
        raise ValueError(f"class shares must sum to 1, not {total_share}")
    mix = [
        (path, c.share * p)
        for c in classes
        for path, p in zip(c.paths, zipf(len(c.paths), c.exponent), strict=True)
    ]
    if len({path for path, _ in mix}) != len(mix):
        raise ValueError("a path appears more than once in the mix")
    return sorted(mix, key=lambda item: -item[1])


def cumulative(mix: Mix) -> list[float]:
    """The running sum of the mix's probabilities, the last pinned to exactly 1 (so every draw lands)."""
    cum = list(accumulate(p for _, p in mix))
    cum[-1] = 1.0
    return cum


def write_key_file(path: Path, mix: Mix) -> None:
    """``CUM<TAB>PATH`` per line, in the mix's order, as ``get.lua`` reads it."""
    path.write_text("".join(f"{c!r}\t{p}\n" for (p, _), c in zip(mix, cumulative(mix), strict=True)))


def ideal_hit_rate(mix: Mix, entries: int) -> float:
    """The hit rate of a cache that always holds the ``entries`` most popular paths: no cache of that
    size does better on independent draws from the mix."""
    return sum(p for _, p in mix[:entries])


def incident_paths(ids: Iterable[int], seed: int) -> list[str]:
    """``/api/v1/incidents/{id}`` for every id, in a random popularity order fixed by ``seed``."""
    paths = [f"{INCIDENTS_PATH}/{i}" for i in sorted(ids)]
    random.Random(seed).shuffle(paths)
    return paths


def list_paths(seed: int) -> list[str]:
    """List queries over the seeded history's namespaces, severities and phases (each filter present or
    not), ``LIST_LIMIT`` per page, in a random popularity order fixed by ``seed``."""
    namespaces = [None, *sorted(NAMESPACES), NODE_NAMESPACE]
    severities = [None, *sorted({s.severity for s in SIGNALS})]
    phases = [None, *OPEN_PHASES, "completed", "failed"]
    paths = [
        f"{INCIDENTS_PATH}?"
        + urlencode(
            [
                (k, v)
                for k, v in (("namespace", ns), ("severity", sev), ("phase", ph), ("limit", LIST_LIMIT))
                if v is not None
            ]
        )
        for ns, sev, ph in product(namespaces, severities, phases)
    ]
    random.Random(seed).shuffle(paths)
    return paths


def context_api_mix(ids: Iterable[int], seed: int) -> Mix:
    """The Context-API benchmarks' mix: incidents by id and list queries, each class Zipf-distributed."""
    return mixture(
        [
            KeyClass("by id", BY_ID_SHARE, EXPONENT, incident_paths(ids, seed)),
            KeyClass("list", LIST_SHARE, EXPONENT, list_paths(seed)),
        ]
    )
