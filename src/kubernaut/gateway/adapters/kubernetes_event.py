"""A Kubernetes core/v1 Event: Warning events are signals, Normal events are refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubernaut.gateway.adapters import Batch
from kubernaut.gateway.limits import (
    MAX_KIND_BYTES,
    MAX_NAME_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_RESOURCE_NAME_BYTES,
    over_limit,
)
from kubernaut.gateway.problems import from_validation_error, invalid, refuse_nul
from kubernaut.gateway.signal import DEFAULT_NAMESPACE, NormalizedSignal, fingerprint

# Reasons that mean a workload or node is already failing.
CRITICAL_REASONS = frozenset(
    {"OOMKilled", "NodeNotReady", "FailedScheduling", "Evicted", "FailedMount", "NetworkNotReady"}
)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _InvolvedObject(_Loose):
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    namespace: str = ""


class _Metadata(_Loose):
    namespace: str = ""


class _Event(_Loose):
    type: str
    reason: str = Field(min_length=1)
    message: str = ""
    involvedObject: _InvolvedObject
    metadata: _Metadata = Field(default_factory=_Metadata)


def parse(body: bytes) -> Batch:
    """The event as a batch of one: a value over its limit is the batch's rejection."""
    try:
        event = _Event.model_validate_json(body)
    except ValidationError as err:
        raise from_validation_error(err) from None
    if event.type != "Warning":
        raise invalid("type", f"only Warning events are signals, got {event.type!r}")
    obj = event.involvedObject
    refuse_nul(
        body,
        [
            ("", {"reason": event.reason, "message": event.message, "type": event.type}),
            ("involvedObject", {"kind": obj.kind, "name": obj.name, "namespace": obj.namespace}),
            ("metadata", {"namespace": event.metadata.namespace}),
        ],
    )
    ns_field = "involvedObject.namespace" if obj.namespace else "metadata.namespace"
    namespace = obj.namespace or event.metadata.namespace or DEFAULT_NAMESPACE
    batch = Batch(1)
    rejected = over_limit(
        0,
        [
            ("reason", event.reason, MAX_NAME_BYTES),
            (ns_field, namespace, MAX_NAMESPACE_BYTES),
            ("involvedObject.kind", obj.kind, MAX_KIND_BYTES),
            ("involvedObject.name", obj.name, MAX_RESOURCE_NAME_BYTES),
        ],
    )
    if rejected:
        batch.rejections.append(rejected)
        return batch
    labels = {"reason": event.reason, "kind": obj.kind, "name": obj.name, "namespace": namespace}
    signal = NormalizedSignal(
        source_type="kubernetes-event",
        name=event.reason,
        firing=True,
        severity="critical" if event.reason in CRITICAL_REASONS else "warning",
        namespace=namespace,
        resource_kind=obj.kind,
        resource_name=obj.name,
        labels=labels,
        annotations={"message": event.message} if event.message else {},
        fingerprint=fingerprint(event.reason, namespace, obj.kind, obj.name),
    )
    batch.take(0, signal)
    return batch
