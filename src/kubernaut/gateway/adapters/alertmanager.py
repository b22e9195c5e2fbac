"""Alertmanager webhook (version 4): every alert of the batch, firing and resolved.

The webhook's envelope must be valid (else 400); an alert that is not is rejected alone, so that one
bad alert does not keep the good ones of its group out (Alertmanager does not retry a 400)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kubernaut.gateway.adapters import Batch
from kubernaut.gateway.limits import (
    MAX_NAME_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_RESOURCE_NAME_BYTES,
    MAX_SEVERITY_BYTES,
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


_ALERT = TypeAdapter(_Alert)
_NAME_CHARS, _NAMESPACE_CHARS = MAX_NAME_BYTES // 4, MAX_NAMESPACE_BYTES // 4
_RESOURCE_CHARS, _SEVERITY_CHARS = MAX_RESOURCE_NAME_BYTES // 4, MAX_SEVERITY_BYTES // 4


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
    hook: _Envelope
    try:
        hook = _Webhook.model_validate_json(body)
        alerts: list[_Alert | Rejection] = list(hook.alerts)
    except ValidationError as err:
        hook, alerts = _alerts_one_by_one(body, err)
    if not alerts:
        raise invalid("alerts", "at least one alert is required")
    if len(alerts) > max_alerts:
        raise invalid("alerts", f"{len(alerts)} alerts exceed the limit of {max_alerts} per request")
    batch = Batch(len(alerts))
    # A NUL can only come in as the escape \u0000: scan the body once instead of every label.
    check_nul = b"\\u0000" in body
    for i, alert in enumerate(alerts):
        taken = alert if isinstance(alert, Rejection) else _signal(i, alert, check_nul)
        if isinstance(taken, Rejection):
            batch.rejections.append(taken)
        else:
            batch.take(i, taken)
    return Webhook(batch, hook.receiver, hook.groupKey, hook.truncatedAlerts)


def _alerts_one_by_one(body: bytes, err: ValidationError) -> tuple[_Envelope, list[_Alert | Rejection]]:
    """Re-validate alert by alert after a failed whole-webhook validation (the rare path)."""
    if not all(len(e["loc"]) > 1 and e["loc"][0] == "alerts" for e in err.errors()):
        raise from_validation_error(err) from None
    try:
        envelope = _Envelope.model_validate_json(body)
    except ValidationError as envelope_err:
        raise from_validation_error(envelope_err) from None
    out: list[_Alert | Rejection] = []
    for i, item in enumerate(envelope.alerts):
        try:
            out.append(_ALERT.validate_python(item))
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


def _signal(i: int, alert: _Alert, check_nul: bool) -> NormalizedSignal | Rejection:
    labels = alert.labels
    if check_nul:
        rejected = _nul(i, "labels", labels) or _nul(i, "annotations", alert.annotations)
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
    if (  # a value of at most a quarter of its limit in characters fits in UTF-8: the common case
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
        firing=alert.status == "firing",
        severity=severity.lower(),
        namespace=namespace,
        resource_kind=kind,
        resource_name=resource,
        labels=labels,
        annotations=alert.annotations,
        fingerprint=fingerprint(name, namespace, kind, resource),
        starts_at=alert.startsAt,
        ends_at=alert.endsAt,
    )
