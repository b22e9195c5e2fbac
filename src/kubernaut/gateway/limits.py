"""Byte limits on the signal values that become indexed PostgreSQL columns or grouping keys.

A btree entry holds at most ~2.7 KB, so an unbounded alert name or namespace made the insert fail and
the whole webhook answer 503 (retried forever by Alertmanager). A signal over a limit is rejected alone
(outcome ``rejected``); its full value is never truncated into a different identity.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kubernetes names: namespaces are DNS labels (63), object names and kinds at most 253 bytes. Alert
# names and event reasons have no such rule, so they get room well under the btree entry limit.
MAX_NAME_BYTES = 1024
MAX_NAMESPACE_BYTES = 253
MAX_KIND_BYTES = 253
MAX_RESOURCE_NAME_BYTES = 1024
MAX_SEVERITY_BYTES = 64
# A str of at most limit // MAX_UTF8_BYTES_PER_CHAR characters fits in ``limit`` bytes of UTF-8: the
# common case is decided by its length alone, without encoding it.
MAX_UTF8_BYTES_PER_CHAR = 4


@dataclass(slots=True, frozen=True)
class Rejection:
    """One signal of a request refused alone: ``index`` in the request, the offending ``field``."""

    index: int
    field: str
    reason: str
    detail: str

    def as_json(self) -> dict[str, object]:
        return {
            "fingerprint": None,
            "outcome": "rejected",
            "request_id": None,
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
        }


def over_limit(index: int, checks: list[tuple[str, str, int]]) -> Rejection | None:
    """The first ``(field, value, max bytes)`` whose UTF-8 value is too long, as a rejection."""
    for field, value, limit in checks:
        if len(value) * MAX_UTF8_BYTES_PER_CHAR > limit and len(value.encode(errors="surrogatepass")) > limit:
            return Rejection(index, field, "too_long", f"{field}: longer than {limit} bytes")
    return None
