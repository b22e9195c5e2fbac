"""The names the services' SQL shares: tables, and what an *open* RemediationRequest is.

"Open" is the predicate of the unique index ``remediation_requests_one_open`` (migration 001): one open
request per fingerprint (invariant 2). An ``ON CONFLICT (fingerprint) WHERE <open>`` clause must imply
that predicate, so every query spells it from here. Migrations are history and keep their own text.
"""

from __future__ import annotations

REQUESTS = "remediation_requests"
OUTCOMES = "remediation_outcomes"
STORM_MEMBERS = "storm_members"
APPLIED_COUNT_BATCHES = "applied_count_batches"
RESOLUTIONS = "gateway_resolutions"  # resolutions in Redis order (migration 070)

OPEN_PHASES = ("pending", "processing")


def open_request(alias: str | None = None) -> str:
    """The SQL condition "this request is open", its columns qualified by ``alias`` when given."""
    col = f"{alias}." if alias else ""
    phases = ", ".join(f"'{p}'" for p in OPEN_PHASES)
    return f"{col}resolved_at IS NULL AND {col}phase IN ({phases})"


OPEN = open_request()
