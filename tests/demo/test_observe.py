"""The demo's pure parts: counter deltas from /metrics pages, blackout spans from readiness probes."""

from __future__ import annotations

from kubernaut_tools.demo.observe import Blackout, Figures, Metrics

GATEWAY_BEFORE = """
gateway_signals_received_total{source_type="prometheus",outcome="created"} 5
gateway_signals_received_total{source_type="prometheus",outcome="duplicate"} 7
gateway_http_requests_total{route="/api/v1/signals/prometheus",status="201"} 4
gateway_remediation_requests_created_total{kind="single"} 5
"""
GATEWAY_AFTER = """
gateway_signals_received_total{source_type="prometheus",outcome="created"} 8
gateway_signals_received_total{source_type="prometheus",outcome="duplicate"} 9
gateway_signals_received_total{source_type="prometheus",outcome="storm_opened"} 1
gateway_signals_received_total{source_type="prometheus",outcome="storm_aggregated"} 9
gateway_signals_received_total{source_type="kubernetes-event",outcome="resolved"} 1
gateway_http_requests_total{route="/api/v1/signals/prometheus",status="201"} 6
gateway_http_requests_total{route="/api/v1/signals/prometheus",status="202"} 1
gateway_http_requests_total{route="/api/v1/signals/prometheus",status="503"} 3
gateway_http_requests_total{route="/api/v1/signals/kubernetes-event",status="201"} 50
gateway_remediation_requests_created_total{kind="single"} 8
gateway_remediation_requests_created_total{kind="storm"} 1
"""
ALERTMANAGER_BEFORE = 'alertmanager_notification_requests_total{integration="webhook"} 2\n'
ALERTMANAGER_AFTER = (
    'alertmanager_notification_requests_total{integration="webhook"} 8\n'
    'alertmanager_notification_requests_total{integration="email"} 30\n'
)


def test_figures_are_counter_deltas_of_the_webhook_route() -> None:
    figures = Figures.between(
        Metrics.parse(GATEWAY_BEFORE),
        Metrics.parse(GATEWAY_AFTER),
        Metrics.parse(ALERTMANAGER_BEFORE),
        Metrics.parse(ALERTMANAGER_AFTER),
    )
    assert figures == Figures(
        signals_in=3 + 2 + 1 + 9 + 1,
        deduplicated=2,
        storm_folded=10,
        resolved=1,
        requests_created=4,
        webhooks_sent=6,
        webhooks_accepted=3,
        webhooks_refused=3,
    )


def test_a_restarted_process_counts_no_negative_delta() -> None:
    empty = Metrics.parse("")
    figures = Figures.between(Metrics.parse(GATEWAY_AFTER), empty, empty, empty)
    assert figures == Figures()


def test_blackout_spans_run_from_the_first_failed_probe_to_the_first_good_one() -> None:
    blackout = Blackout()
    for at, ready in [(0.0, True), (1.0, False), (1.1, False), (3.0, True), (4.0, True), (5.0, False)]:
        blackout.record(at, ready)
    assert blackout.ongoing
    assert blackout.seconds(now=5.5) == 2.0 + 0.5
    blackout.record(6.0, True)
    assert not blackout.ongoing
    assert blackout.seconds(now=100.0) == 3.0
