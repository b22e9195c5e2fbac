"""Real Prometheus rules fire, real Alertmanager routes to the real gateway with its bearer token; what the
gateway made of it is read back through the Context-API's HTTP API, as a downstream service would."""

from __future__ import annotations

import pytest

from kubernaut_tools.demo.scenario import alert_fingerprint
from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.signal_source import ScenarioSeries
from tests.alerting_helpers import Alerts, ContextApi, Json, unique_namespace

pytestmark = pytest.mark.e2e


def test_a_steady_alert_makes_one_request(alerting_stack: LocalStack, alerts: Alerts) -> None:
    api = ContextApi(alerting_stack)
    steady = ScenarioSeries("steady", unique_namespace("steady"), "web-0")
    alerts.set(steady)

    (incident,) = api.wait_incidents(
        lambda found: len(found) >= 1, namespace=steady.namespace, what="the steady alert's request"
    )
    assert incident["alertname"] == "KubernautSteadyAlert"
    assert incident["fingerprint"] == alert_fingerprint(steady)
    assert incident["signal_type"] == "prometheus"
    assert incident["source"] == "local", "the identity of the bearer token Alertmanager sent"
    assert incident["severity"] == "warning"
    assert incident["resource"] == {"kind": "Pod", "name": "web-0"}
    assert incident["labels"]["scenario"] == "steady"
    assert (incident["occurrence_count"], incident["phase"], incident["resolved_at"]) == (1, "pending", None)
    assert incident["storm"] is None
    by_id = api.incident(incident["id"])
    assert by_id is not None
    assert by_id["fingerprint"] == incident["fingerprint"]


def test_a_repeating_alert_counts_occurrences_on_one_request(
    alerting_stack: LocalStack, alerts: Alerts
) -> None:
    api = ContextApi(alerting_stack)
    repeating = ScenarioSeries("repeating", unique_namespace("repeat"), "api-0")
    alerts.set(repeating)

    # Its route has repeat_interval 3 s: each repeated notification is a duplicate of the first request.
    found = api.wait_incidents(
        lambda found: bool(found) and found[0]["occurrence_count"] >= 3,
        timeout=60,
        namespace=repeating.namespace,
        what="two repeated notifications counted",
    )
    (incident,) = found
    assert incident["fingerprint"] == alert_fingerprint(repeating)
    assert incident["severity"] == "critical"
    assert incident["last_seen"] > incident["first_seen"]
    assert incident["resolved_at"] is None


def test_a_storm_across_15_pods_makes_5_requests_and_one_aggregated(
    alerting_stack: LocalStack, alerts: Alerts
) -> None:
    api = ContextApi(alerting_stack)
    namespace = unique_namespace("storm")
    storm = [ScenarioSeries("storm", namespace, f"api-{i}") for i in range(15)]
    alerts.set(*storm)

    def storm_settled(found: list[Json]) -> bool:
        folded = sum(i["storm"]["alert_count"] for i in found if i["storm"])
        return len(found) >= 6 and folded + sum(1 for i in found if not i["storm"]) >= 15

    found = api.wait_incidents(storm_settled, namespace=namespace, what="15 alerts in requests")
    singles = [i for i in found if i["storm"] is None]
    (aggregated,) = [i for i in found if i["storm"] is not None]
    # Default thresholds: a pattern storm is one alert name on more than 5 resources.
    assert len(singles) == 5
    assert all(i["occurrence_count"] == 1 for i in singles)
    assert aggregated["storm"]["type"] == "pattern"
    assert aggregated["storm"]["alert_count"] == 10
    assert aggregated["alertname"] == "KubernautStormAlert"
    single_pods = {f"Pod/{i['resource']['name']}" for i in singles}
    assert len(set(aggregated["storm"]["affected_resources"])) == 10
    assert single_pods | set(aggregated["storm"]["affected_resources"]) == {f"Pod/{s.pod}" for s in storm}
    assert {i["fingerprint"] for i in singles} <= {alert_fingerprint(s) for s in storm}


def test_several_alerts_in_one_webhook_are_all_taken(alerting_stack: LocalStack, alerts: Alerts) -> None:
    api = ContextApi(alerting_stack)
    namespace = unique_namespace("group")
    group = [ScenarioSeries("steady", namespace, f"web-{i}") for i in range(4)]  # under the storm threshold
    alerts.set(*group)

    found = api.wait_incidents(lambda found: len(found) >= 4, namespace=namespace, what="four requests")
    assert {i["fingerprint"] for i in found} == {alert_fingerprint(s) for s in group}
    # Alertmanager groups by (alertname, namespace); the gateway writes one webhook at one instant.
    assert len({i["first_seen"] for i in found}) == 1, "the four alerts arrived in one webhook"
    assert all(i["occurrence_count"] == 1 for i in found)


def test_a_resolved_alert_closes_its_request_and_a_new_firing_opens_another(
    alerting_stack: LocalStack, alerts: Alerts
) -> None:
    api = ContextApi(alerting_stack)
    firing = ScenarioSeries("resolving", unique_namespace("resolve"), "db-0")
    alerts.set(firing)
    (opened,) = api.wait_incidents(bool, namespace=firing.namespace, what="the request")
    assert opened["resolved_at"] is None

    alerts.set(ScenarioSeries(firing.scenario, firing.namespace, firing.pod, active=False))
    resolved = api.wait_incident(
        opened["id"], lambda i: i["resolved_at"] is not None, what="the resolved notification (send_resolved)"
    )
    assert resolved["resolved_at"] >= resolved["first_seen"]
    assert resolved["occurrence_count"] == 1

    alerts.set(firing)
    found = api.wait_incidents(
        lambda found: len(found) >= 2, namespace=firing.namespace, what="a new request for the new firing"
    )
    (again,) = [i for i in found if i["id"] != opened["id"]]
    assert again["fingerprint"] == opened["fingerprint"]
    assert again["resolved_at"] is None
