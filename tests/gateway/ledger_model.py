"""A reference model of the gateway's contract (docs/gateway.md), in plain Python: outcomes, one open
request per fingerprint, resolution, counts, storms. Signals are taken one by one in batch order.

Scope: no faults, and no time passing inside the storm and dedup windows (the model test configures them
far longer than an example lasts): rate storm = more than ``rate_threshold`` new signals of a group,
pattern storm = more than ``pattern_threshold`` distinct resources; a storm window, once open, stays open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Group = tuple[str, str]  # (namespace, alert name)


@dataclass(frozen=True)
class ModelAlert:
    fingerprint: str
    group: Group
    resource: str
    firing: bool


@dataclass(eq=False)
class ModelRequest:
    key: int
    fingerprint: str  # the alert's, or for a storm "storm:<group>:<n>"
    group: Group
    is_storm: bool
    open: bool = True
    count: int = 1  # occurrence_count: every firing signal taken in
    members: dict[str, bool] = field(default_factory=dict)  # storm member -> resolved
    alert_count: int = 0  # storm_alert_count: members taken in
    storm: ModelRequest | None = None  # storm_request_id: the storm this request came just before


@dataclass(eq=False)
class _Window:
    storm_type: str
    request: ModelRequest | None = None


@dataclass
class LedgerModel:
    pattern_threshold: int
    rate_threshold: int
    requests: list[ModelRequest] = field(default_factory=list)
    _open_single: dict[str, ModelRequest] = field(default_factory=dict)
    _member_of: dict[str, ModelRequest] = field(default_factory=dict)  # unresolved, open storm
    _new: dict[Group, int] = field(default_factory=dict)
    _resources: dict[Group, set[str]] = field(default_factory=dict)
    _windows: dict[Group, _Window] = field(default_factory=dict)
    firing: set[str] = field(default_factory=set)  # fingerprints whose last signal was firing

    def send(self, alerts: list[ModelAlert]) -> tuple[int, list[tuple[str, ModelRequest | None]]]:
        """One webhook: the HTTP status and each signal's (outcome, request)."""
        outcomes = [self._firing(a) if a.firing else self._resolved(a) for a in alerts]
        created = any(o in ("created", "storm_opened") for o, _ in outcomes)
        return (201 if created else 202), outcomes

    def open_request(self, fingerprint: str) -> ModelRequest | None:
        return self._open_single.get(fingerprint) or self._member_of.get(fingerprint)

    def _new_request(self, fingerprint: str, group: Group, is_storm: bool) -> ModelRequest:
        request = ModelRequest(len(self.requests), fingerprint, group, is_storm)
        self.requests.append(request)
        return request

    def _firing(self, a: ModelAlert) -> tuple[str, ModelRequest]:
        self.firing.add(a.fingerprint)
        known = self.open_request(a.fingerprint)
        if known is not None:
            known.count += 1
            return "duplicate", known
        g = a.group
        self._new[g] = self._new.get(g, 0) + 1
        self._resources.setdefault(g, set()).add(a.resource)
        window = self._windows.get(g)
        if window is None:
            if len(self._resources[g]) > self.pattern_threshold:
                window = self._windows[g] = _Window("pattern")
            elif self._new[g] > self.rate_threshold:
                window = self._windows[g] = _Window("rate")
            else:
                single = self._open_single[a.fingerprint] = self._new_request(a.fingerprint, g, False)
                return "created", single
        storm = window.request
        if storm is None or not storm.open:
            storm = window.request = self._new_request(f"storm:{g}:{len(self.requests)}", g, True)
            storm.members[a.fingerprint] = False
            storm.alert_count = 1
            self._member_of[a.fingerprint] = storm
            for r in self.requests:
                if not r.is_storm and r.group == g and r.storm is None:
                    r.storm = storm
            return "storm_opened", storm
        storm.count += 1
        rejoined = a.fingerprint in storm.members
        storm.members[a.fingerprint] = False
        self._member_of[a.fingerprint] = storm
        if rejoined:
            return "duplicate", storm
        storm.alert_count += 1
        return "storm_aggregated", storm

    def _resolved(self, a: ModelAlert) -> tuple[str, ModelRequest | None]:
        self.firing.discard(a.fingerprint)
        single = self._open_single.pop(a.fingerprint, None)
        if single is not None:
            single.open = False
            return "resolved", single
        storm = self._member_of.pop(a.fingerprint, None)
        if storm is not None:
            storm.members[a.fingerprint] = True
            if all(storm.members.values()):
                storm.open = False
            return "resolved", storm
        return "resolved", None
