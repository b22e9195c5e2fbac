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
REFUSED_CALLS = "refused_calls"  # ingest calls to void on every master (migration 080)

OPEN_PHASES = ("pending", "processing")


def open_request(alias: str | None = None) -> str:
    """The SQL condition "this request is open", its columns qualified by ``alias`` when given."""
    col = f"{alias}." if alias else ""
    phases = ", ".join(f"'{p}'" for p in OPEN_PHASES)
    return f"{col}resolved_at IS NULL AND {col}phase IN ({phases})"


OPEN = open_request()


def add_resources(row: str, new: str, cap: str) -> str:
    """The SET clauses that append the text array ``new`` to storm row ``row``'s affected resources,
    keeping the first ``cap`` and counting the rest as overflow. A row with overflow is full: its list is
    kept as it is (even under a cap raised later), not rebuilt and written again on every join."""
    full = f"{row}.affected_overflow > 0"
    # "1 : " spaced: pgbench (the bench's copy of this statement) would read ":name" as a variable.
    return f"""affected_resources = CASE WHEN {full} THEN {row}.affected_resources
                              ELSE ({row}.affected_resources || {new})[1 : {cap}] END,
    affected_overflow = {row}.affected_overflow + CASE WHEN {full} THEN cardinality({new})
        ELSE greatest(0, cardinality({row}.affected_resources) + cardinality({new}) - {cap}) END"""
