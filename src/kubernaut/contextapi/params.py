"""Query and body validation: every bad value becomes a :class:`ParamError` naming its field.

Each query model also gives the canonical cache key of the request (same question, same key, whatever
the order or spelling of the parameters) and the invalidation tags of its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlencode

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from kubernaut.problems import Problem
from kubernaut.validation import UNNAMED, FieldError, field_errors

Phase = Literal["pending", "processing", "completed", "failed"]
# Kubernetes namespace names are DNS labels.
Namespace = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")]
Fingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

ALL_TAG = "all"


def namespace_tag(namespace: str) -> str:
    return f"ns:{namespace}"


def incident_tag(incident_id: int) -> str:
    return f"incident:{incident_id}"


class ParamError(Problem):
    """400 naming the first offending parameter or body field; ``errors`` lists every one."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(400, "invalid-parameter", detail, field=errors[0].field, errors=errors)


def _problems(err: ValidationError) -> list[FieldError]:
    return field_errors(err, unknown="unknown parameter")


class QueryModel(BaseModel):
    """A validated query string: unknown or repeated parameters refused; its ``cache_key`` names the entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    route: ClassVar[str]

    @classmethod
    def parse(cls, items: Sequence[tuple[str, str]]) -> Self:
        values: dict[str, str] = {}
        for name, value in items:
            if name in values:
                raise ParamError([FieldError(name or UNNAMED, "given more than once")])
            values[name] = value
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise ParamError(_problems(err)) from None

    def cache_key(self) -> str:
        return f"{self.route}?{urlencode(sorted(self.model_dump(mode='json', exclude_none=True).items()))}"

    def tags(self) -> list[str]:
        namespace = getattr(self, "namespace", None)
        return [namespace_tag(namespace) if namespace else ALL_TAG]


class TimeWindow(QueryModel):
    """``since`` inclusive, ``until`` exclusive, on the incident's first_seen; naive times are UTC."""

    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            raise ValueError("out of range (years 1-9999 in UTC)") from None

    @field_validator("until")
    @classmethod
    def _after_since(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if value is not None and since is not None and value <= since:
            raise ValueError("must be later than since")
        return value


class IncidentQuery(TimeWindow):
    """Filters and paging of ``GET /api/v1/incidents``."""

    route = "incidents"
    namespace: Namespace | None = None
    severity: Name | None = None
    alertname: Name | None = None
    fingerprint: Fingerprint | None = None
    phase: Phase | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0

    @field_validator("fingerprint", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class SuccessRateQuery(TimeWindow):
    """Filters of ``GET /api/v1/aggregations/success-rate``."""

    route = "success-rate"
    namespace: Namespace | None = None
    severity: Name | None = None
    alertname: Name | None = None
    action: Name | None = None


class NamespacesQuery(TimeWindow):
    """Filters of ``GET /api/v1/aggregations/namespaces``."""

    route = "namespaces"
    severity: Name | None = None
    alertname: Name | None = None


class SeverityQuery(TimeWindow):
    """Filters of ``GET /api/v1/aggregations/severity``."""

    route = "severity"
    namespace: Namespace | None = None
    alertname: Name | None = None


class TrendQuery(QueryModel):
    """Per-day counts (UTC days, on first_seen) for the last ``days`` days, today included."""

    route = "trend"
    days: Annotated[int, Field(ge=1, le=365)] = 7
    namespace: Namespace | None = None
    severity: Name | None = None
    alertname: Name | None = None


def parse_incident_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**63 - 1:
        raise ParamError([FieldError("id", "must be a positive integer")])
    return int(raw)


def _storable(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates: refuse them (400), do not fail the write."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("lone surrogates are not allowed") from None
    return value


Storable = Annotated[str, AfterValidator(_storable)]


class OutcomeBody(BaseModel):
    """The body of ``POST /api/v1/incidents/{id}/outcome``: a remediation action and its result."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    action: Annotated[Storable, Field(min_length=1, max_length=200)]
    succeeded: StrictBool
    detail: Annotated[Storable, Field(max_length=4000)] = ""

    @classmethod
    def parse(cls, raw: bytes) -> OutcomeBody:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as err:
            raise ParamError(_problems(err)) from None
