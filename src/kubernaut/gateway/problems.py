"""The gateway's own refusals of a signal (400 ``invalid-signal``), built on :mod:`kubernaut.problems`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from kubernaut import problems
from kubernaut.problems import Problem
from kubernaut.validation import FieldError

INVALID = "invalid-signal"


def invalid(field: str, detail: str) -> Problem:
    return problems.invalid(INVALID, [FieldError(field, detail)])


def from_validation_error(err: ValidationError) -> Problem:
    return problems.from_validation_error(INVALID, err)


def refuse_nul(body: bytes, strings: Iterable[tuple[str, Mapping[str, str]]]) -> None:
    """PostgreSQL cannot store NUL in text or jsonb: refuse it here (400) rather than fail the write
    (503, retried forever). The byte scan keeps the common case cheap."""
    if b"\\u0000" not in body:
        return
    for field, mapping in strings:
        for key, value in mapping.items():
            if "\x00" in key or "\x00" in value:
                raise invalid(f"{field}.{key}" if field else key, "NUL characters are not allowed")
