"""Alertmanager webhook (version 4): every alert of the batch, firing and resolved.

The webhook's envelope must be valid (else 400); an alert that is not is rejected alone, so that one
bad alert does not keep the good ones of its group out (Alertmanager does not retry a 400).

The pydantic models below are the definition. A webhook in the common shape is read by msgspec instead,
about twice as fast (the alerts' times still by pydantic, so they are read the same); anything msgspec
does not take is judged by the models, with their messages. The one difference: msgspec reads arrays and
objects nested deeper than pydantic's limit (254 levels) in fields the gateway ignores."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kubernaut.gateway.adapters import Batch
from kubernaut.gateway.limits import (
    MAX_NAME_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_RESOURCE_NAME_BYTES,
    MAX_SEVERITY_BYTES,
    MAX_UTF8_BYTES_PER_CHAR,
    Rejection,
    over_limit,
)
from kubernaut.gateway.problems import from_validation_error, invalid
from kubernaut.gateway.signal import DEFAULT_NAMESPACE, RESOURCE_LABELS, NormalizedSignal, fingerprint
from kubernaut.validation import field_path


class _Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None


class _Envelope(BaseModel):
    """The webhook with its alerts unchecked: used alone only when some alert is invalid."""

    model_config = ConfigDict(extra="ignore")

    alerts: list[Any]
    receiver: str = ""
    groupKey: str = ""
    # Alerts Alertmanager left out of this webhook because of the receiver's `max_alerts`.
    truncatedAlerts: int = Field(default=0, ge=0)


class _Webhook(_Envelope):
    alerts: list[_Alert]


class _FastAlert(msgspec.Struct):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: str | None = None
    endsAt: str | None = None


class _FastWebhook(msgspec.Struct):
    alerts: list[_FastAlert]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: Annotated[int, msgspec.Meta(ge=0)] = 0


_ALERT = TypeAdapter(_Alert)
_FAST = msgspec.json.Decoder(_FastWebhook)
_TIME = TypeAdapter(datetime | None)
# An alert's own fields, as _signal takes them: firing, labels, annotations, startsAt, endsAt.
_Fields = tuple[bool, dict[str, str], dict[str, str], datetime | None, datetime | None]
# Lengths up to which a value cannot be over its limit (over_limit then need not look).
_NAME_CHARS = MAX_NAME_BYTES // MAX_UTF8_BYTES_PER_CHAR
_NAMESPACE_CHARS = MAX_NAMESPACE_BYTES // MAX_UTF8_BYTES_PER_CHAR
_RESOURCE_CHARS = MAX_RESOURCE_NAME_BYTES // MAX_UTF8_BYTES_PER_CHAR
_SEVERITY_CHARS = MAX_SEVERITY_BYTES // MAX_UTF8_BYTES_PER_CHAR
# (receiver, group key, truncatedAlerts), then each alert's fields or its rejection
_Read = tuple[tuple[str, str, int], list[_Fields | Rejection]]


@dataclass(frozen=True, slots=True)
class Webhook:
    """An Alertmanager webhook parsed: its signals, receiver, group key, and how many alerts it dropped."""

    batch: Batch
    receiver: str
    group_key: str
    truncated: int


def parse(body: bytes, max_alerts: int) -> Batch:
    """Validate the webhook and normalise each alert; raise a 400 Problem naming the field when the
    webhook itself is invalid. Alerts that cannot be taken are the batch's rejections."""
    return parse_webhook(body, max_alerts).batch


def parse_webhook(body: bytes, max_alerts: int) -> Webhook:
    """:func:`parse`, with the webhook's receiver, group key and ``truncatedAlerts``."""
    (receiver, group_key, truncated), alerts = _read_fast(body) or _read_validated(body)
    if not alerts:
        raise invalid("alerts", "at least one alert is required")
    if len(alerts) > max_alerts:
        raise invalid("alerts", f"{len(alerts)} alerts exceed the limit of {max_alerts} per request")
    batch = Batch(len(alerts))
    # A NUL can only come in as the escape \u0000: scan the body once instead of every label.
    check_nul = b"\\u0000" in body
    for i, alert in enumerate(alerts):
        taken = alert if isinstance(alert, Rejection) else _signal(i, *alert, check_nul)
        if isinstance(taken, Rejection):
            batch.rejections.append(taken)
        else:
            batch.take(i, taken)
    return Webhook(batch, receiver, group_key, truncated)


@functools.lru_cache(maxsize=4096)  # Alertmanager sends an alert's times again with every repeat
def _time(text: str | None) -> datetime | None:
    return _TIME.validate_python(text)


def _read_fast(body: bytes) -> _Read | None:
    """The webhook read by msgspec, or None when it is not in the common shape (or not UTF-8: msgspec
    does not check the text of fields it skips)."""
    try:
        if not body.isascii():
            body.decode()
        hook = _FAST.decode(body)
        alerts: list[_Fields | Rejection] = [
            (a.status == "firing", a.labels, a.annotations, _time(a.startsAt), _time(a.endsAt))
            for a in hook.alerts
        ]
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValidationError):
        return None
    return (hook.receiver, hook.groupKey, hook.truncatedAlerts), alerts


def _read_validated(body: bytes) -> _Read:
    """The webhook read by the pydantic models: a 400 Problem when its envelope is invalid."""
    hook: _Envelope
    try:
        hook = _Webhook.model_validate_json(body)
        alerts: list[_Fields | Rejection] = [_fields(a) for a in hook.alerts]
    except ValidationError as err:
        hook, alerts = _alerts_one_by_one(body, err)
    return (hook.receiver, hook.groupKey, hook.truncatedAlerts), alerts


def _fields(alert: _Alert) -> _Fields:
    return alert.status == "firing", alert.labels, alert.annotations, alert.startsAt, alert.endsAt


def _alerts_one_by_one(body: bytes, err: ValidationError) -> tuple[_Envelope, list[_Fields | Rejection]]:
    """Re-validate alert by alert after a failed whole-webhook validation (the rare path)."""
    if not all(len(e["loc"]) > 1 and e["loc"][0] == "alerts" for e in err.errors()):
        raise from_validation_error(err) from None
    try:
        envelope = _Envelope.model_validate_json(body)
    except ValidationError as envelope_err:
        raise from_validation_error(envelope_err) from None
    out: list[_Fields | Rejection] = []
    for i, item in enumerate(envelope.alerts):
        try:
            out.append(_fields(_ALERT.validate_python(item)))
        except ValidationError as alert_err:
            first = alert_err.errors(include_url=False, include_input=False)[0]
            field = field_path(("alerts", i, *first["loc"]))
            out.append(Rejection(i, field, "invalid", f"{field}: {first['msg']}"))
    return envelope, out


def _nul(i: int, part: str, mapping: dict[str, str]) -> Rejection | None:
    # PostgreSQL cannot store NUL in text or jsonb: a write would fail (503, retried forever).
    for key, value in mapping.items():
        if "\x00" in key or "\x00" in value:
            field = f"alerts[{i}].{part}.{key}"
            return Rejection(i, field, "nul", f"{field}: NUL characters are not allowed")
    return None


def _signal(
    i: int,
    firing: bool,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    check_nul: bool,
) -> NormalizedSignal | Rejection:
    if check_nul:
        rejected = _nul(i, "labels", labels) or _nul(i, "annotations", annotations)
        if rejected:
            return rejected
    name = labels.get("alertname")
    if not name:
        field = f"alerts[{i}].labels.alertname"
        return Rejection(i, field, "invalid", f"{field}: required")
    ns_label = "namespace"
    namespace = labels.get(ns_label)
    if not namespace:
        ns_label = "exported_namespace"
        namespace = labels.get(ns_label) or DEFAULT_NAMESPACE
    res_label = kind = resource = ""
    for label, label_kind in RESOURCE_LABELS:
        value = labels.get(label)
        if value:
            res_label, kind, resource = label, label_kind, value
            break
    severity = labels.get("severity", "unknown")
    if (  # the common case: every value short enough to fit
        len(name) > _NAME_CHARS
        or len(namespace) > _NAMESPACE_CHARS
        or len(resource) > _RESOURCE_CHARS
        or len(severity) > _SEVERITY_CHARS
    ):
        at = f"alerts[{i}].labels."
        rejected = over_limit(
            i,
            [
                (at + "alertname", name, MAX_NAME_BYTES),
                (at + ns_label, namespace, MAX_NAMESPACE_BYTES),
                (at + res_label, resource, MAX_RESOURCE_NAME_BYTES),
                (at + "severity", severity, MAX_SEVERITY_BYTES),
            ],
        )
        if rejected:
            return rejected
    return NormalizedSignal(
        source_type="prometheus",
        name=name,
        firing=firing,
        severity=severity.lower(),
        namespace=namespace,
        resource_kind=kind,
        resource_name=resource,
        labels=labels,
        annotations=annotations,
        fingerprint=fingerprint(name, namespace, kind, resource),
        starts_at=starts_at,
        ends_at=ends_at,
    )
