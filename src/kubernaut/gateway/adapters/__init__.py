"""Signal sources: each adapter turns one request body into normalised signals or a 400 Problem."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernaut.gateway.limits import Rejection
from kubernaut.gateway.problems import INVALID
from kubernaut.gateway.signal import NormalizedSignal
from kubernaut.problems import Problem
from kubernaut.validation import FieldError


@dataclass(slots=True)
class Batch:
    """What a request carried: the signals taken (with their index in the request) and those rejected
    alone. A request with nothing to take is refused whole (:meth:`refuse_if_empty`)."""

    size: int
    signals: list[NormalizedSignal] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def take(self, index: int, signal: NormalizedSignal) -> None:
        self.signals.append(signal)
        self.positions.append(index)

    def refuse_if_empty(self) -> None:
        """Every signal rejected: 400 naming the first field, listing all (nothing was taken)."""
        if self.signals or not self.rejections:
            return
        first = self.rejections[0]
        errors = [FieldError(r.field, r.detail, r.reason) for r in self.rejections]
        raise Problem(400, INVALID, first.detail, field=first.field, errors=errors)
