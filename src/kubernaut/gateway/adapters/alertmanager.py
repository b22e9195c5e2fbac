"""Alertmanager webhook (version 4): every alert of the batch, firing and resolved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubernaut.gateway.problems import from_validation_error, invalid, refuse_nul
from kubernaut.gateway.signal import Signal, fingerprint, namespace_from_labels, resource_from_labels


class _Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alerts: list[_Alert]
    receiver: str = ""
    groupKey: str = ""
    # Alerts Alertmanager left out of this webhook because of the receiver's `max_alerts`.
    truncatedAlerts: int = Field(default=0, ge=0)


@dataclass(frozen=True, slots=True)
class Webhook:
    signals: list[Signal]
    receiver: str
    group_key: str
    truncated: int


def parse(body: bytes, max_alerts: int) -> list[Signal]:
    """Validate the webhook and normalise each alert; raise a 400 Problem naming the field."""
    return parse_webhook(body, max_alerts).signals


def parse_webhook(body: bytes, max_alerts: int) -> Webhook:
    """:func:`parse`, with the webhook's receiver, group key and ``truncatedAlerts``."""
    try:
        hook = _Webhook.model_validate_json(body)
    except ValidationError as err:
        raise from_validation_error(err) from None
    if not hook.alerts:
        raise invalid("alerts", "at least one alert is required")
    if len(hook.alerts) > max_alerts:
        raise invalid("alerts", f"{len(hook.alerts)} alerts exceed the limit of {max_alerts} per request")
    refuse_nul(
        body,
        (
            (f"alerts[{i}].{part}", getattr(a, part))
            for i, a in enumerate(hook.alerts)
            for part in ("labels", "annotations")
        ),
    )
    signals = []
    for i, alert in enumerate(hook.alerts):
        labels = alert.labels
        name = labels.get("alertname")
        if not name:
            raise invalid(f"alerts[{i}].labels.alertname", "required")
        namespace = namespace_from_labels(labels)
        kind, resource = resource_from_labels(labels)
        signals.append(
            Signal(
                source_type="prometheus",
                name=name,
                firing=alert.status == "firing",
                severity=labels.get("severity", "unknown").lower(),
                namespace=namespace,
                resource_kind=kind,
                resource_name=resource,
                labels=labels,
                annotations=alert.annotations,
                fingerprint=fingerprint(name, namespace, kind, resource),
                starts_at=alert.startsAt,
                ends_at=alert.endsAt,
            )
        )
    return Webhook(signals, hook.receiver, hook.groupKey, hook.truncatedAlerts)
