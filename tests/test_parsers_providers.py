"""Provider-specific rules of `intake.parsers`: optional fields, type variations, identity."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from intake.parsers import Ignored, PayloadError
from models import Alert, AlertState, Priority, Provider
from tests.test_parsers import CW, DD, GCP, GF, NR, load, only_alert, parse

AM = Provider.ALERTMANAGER

# --- GCP ------------------------------------------------------------------------------------


def gcp(**incident: object) -> dict[str, Any]:
    return {"version": "1.2", "incident": {"incident_id": "0.abc", "state": "open", **incident}}


def test_gcp_minimal_incident_uses_defaults() -> None:
    alert = only_alert(GCP, gcp())
    assert alert.incident_id == "gcp:0.abc"
    assert (alert.state, alert.priority, alert.service) == (AlertState.FIRING, Priority.P3, None)
    assert alert.started_at is None
    assert alert.summary == "GCP incident 0.abc"


@pytest.mark.parametrize("state", ["closed", "CLOSED", " Closed "])
def test_gcp_closed_state_is_resolved_whatever_its_case(state: str) -> None:
    assert only_alert(GCP, gcp(state=state)).state is AlertState.RESOLVED


@pytest.mark.parametrize(
    ("documentation", "summary"),
    [
        ("plain text docs", "GCP incident 0.abc"),
        ({"subject": "CPU high", "content": "x"}, "CPU high"),
    ],
)
def test_gcp_documentation_may_be_a_string_or_an_object(
    documentation: object, summary: str
) -> None:
    assert only_alert(GCP, gcp(documentation=documentation)).summary == summary


def test_gcp_numeric_threshold_and_observed_values_become_strings() -> None:
    alert = only_alert(GCP, gcp(threshold_value=0.5, observed_value="0.790", ended_at=None))
    assert alert.labels["threshold_value"] == "0.5"
    assert alert.labels["observed_value"] == "0.790"


@pytest.mark.parametrize(
    ("incident", "expected"),
    [
        ({"severity": "Critical"}, Priority.P1),
        ({"severity": "Error"}, Priority.P2),
        ({"severity": "no severity"}, Priority.P3),
        ({"policy_user_labels": {"severity": "warning"}}, Priority.P3),
        ({"metadata": {"user_labels": {"Severity": "ERROR"}}}, Priority.P2),
    ],
)
def test_gcp_priority_comes_from_severity_or_user_labels(
    incident: dict[str, object], expected: Priority
) -> None:
    assert only_alert(GCP, gcp(**incident)).priority is expected


@pytest.mark.parametrize(
    "incident",
    [
        {"resource": {"type": "cloud_run_revision", "labels": {"service_name": "checkout"}}},
        {"resource": {"type": "uptime_url", "labels": {"host": "CHECKOUT.internal"}}},
        {"policy_user_labels": {"service": "Checkout"}},
    ],
)
def test_gcp_service_from_user_label_cloud_run_or_uptime_host(incident: dict[str, object]) -> None:
    assert only_alert(GCP, gcp(**incident)).service == "Checkout"


def test_gcp_explicit_service_label_wins_over_resource_labels() -> None:
    resource = {"labels": {"service_name": "checkout"}}
    body = gcp(policy_user_labels={"service": "payments"}, resource=resource)
    assert only_alert(GCP, body).service == "payments"


def test_gcp_test_notification_is_ignored_even_when_oddly_shaped() -> None:
    assert parse(GCP, {"version": "TEST"}) == [Ignored("gcp:test", "test_notification")]


# --- Datadog --------------------------------------------------------------------------------


def test_datadog_tags_may_be_a_list_or_a_comma_joined_string() -> None:
    as_list = {"title": "[Triggered] x", "monitor_id": 7, "tags": ["env:prod", "service:checkout"]}
    as_text = {**as_list, "tags": "env:prod, service:checkout"}
    assert only_alert(DD, as_list).service == only_alert(DD, as_text).service == "Checkout"


def test_datadog_identity_ignores_event_id_and_title_changes() -> None:
    triggered = {"id": "1", "title": "[Triggered on {host:a}] Disk full on a", "monitor_id": "9"}
    recovered = {"id": "2", "title": "[Recovered on {host:a}] Disk full on ", "monitor_id": "9"}
    assert only_alert(DD, triggered).incident_id == only_alert(DD, recovered).incident_id
    assert only_alert(DD, triggered).incident_id == "datadog:9/host:a"
    assert only_alert(DD, recovered).state is AlertState.RESOLVED


def test_datadog_aggregation_key_wins_over_monitor_and_scope() -> None:
    body = {"title": "x", "aggreg_key": "abc123", "monitor_id": "9", "scopes": "host:a"}
    assert only_alert(DD, body).incident_id == "datadog:abc123"


def test_datadog_default_template_falls_back_to_the_title_without_state_prefix() -> None:
    triggered = {"id": "1", "title": "[Triggered] CPU high", "body": "no links"}
    recovered = {"id": "2", "title": "[Recovered] CPU high", "body": "no links"}
    assert only_alert(DD, triggered).incident_id == only_alert(DD, recovered).incident_id
    assert only_alert(DD, recovered).state is AlertState.RESOLVED


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"severity": "P1"}, Priority.P1),
        ({"priority": "p4"}, Priority.P4),
        ({"priority": "low"}, Priority.P3),
        ({"title": "[P2] [Triggered] x"}, Priority.P2),
        ({"alert_type": "error"}, Priority.P2),
        ({"alert_type": "warning"}, Priority.P3),
        ({"severity": ""}, Priority.P3),
    ],
)
def test_datadog_priority_from_alert_priority_title_or_alert_type(
    fields: dict[str, str], expected: Priority
) -> None:
    body = {"title": "x", "monitor_id": "1", **fields}
    assert only_alert(DD, body).priority is expected


@pytest.mark.parametrize(
    "body",
    [{"x": 1}, {"body": "%%%\nno title\n%%%", "monitor_id": "1"}, {"title": " ", "id": "2"}],
)
def test_datadog_payload_without_an_event_title_is_a_payload_error(body: object) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(DD, body)
    assert caught.value.errors[0]["loc"] == ["title"]


def test_datadog_alert_title_alone_is_enough() -> None:
    assert only_alert(DD, {"alert_title": "CPU high", "alert_id": "7"}).summary == "CPU high"


@pytest.mark.parametrize("provider", list(Provider))
def test_a_bare_object_is_no_alert_for_any_provider(provider: Provider) -> None:
    with pytest.raises(PayloadError):
        parse(provider, {"x": 1})


def test_datadog_numbers_rendered_without_quotes_are_accepted() -> None:
    body = {
        "title": "x",
        "monitor_id": 134462228,
        "date": 1733930738000,
        "first_triggered_at_epoch": 1733930648000,
        "org": {"id": 1},
    }
    alert = only_alert(DD, body)
    assert alert.incident_id == "datadog:134462228"
    assert alert.started_at is not None
    assert alert.started_at.timestamp() == 1733930648


# --- New Relic ------------------------------------------------------------------------------


def test_newrelic_workflow_without_issue_url_uses_id() -> None:
    body = {"id": "abc-1", "title": "t", "state": "ACTIVATED", "priority": "HIGH"}
    alert = only_alert(NR, body)
    assert (alert.incident_id, alert.priority, alert.state) == (
        "newrelic:abc-1",
        Priority.P2,
        AlertState.FIRING,
    )


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("CRITICAL", Priority.P1),
        ("HIGH", Priority.P2),
        ("MEDIUM", Priority.P3),
        ("LOW", Priority.P4),
    ],
)
def test_newrelic_priority_words(priority: str, expected: Priority) -> None:
    assert only_alert(NR, {"id": "1", "priority": priority}).priority is expected


def test_newrelic_legacy_closed_incident_is_resolved_and_maps_targets() -> None:
    body = load(NR, "legacy-incident-open-trimmed-zulip.json")
    body |= {"current_state": "closed", "severity": "WARNING", "targets": [{"name": "checkout"}]}
    alert = only_alert(NR, body)
    assert (alert.incident_id, alert.state, alert.priority, alert.service) == (
        "newrelic:1234",
        AlertState.RESOLVED,
        Priority.P3,
        "Checkout",
    )


def test_newrelic_legacy_unrendered_targets_string_is_tolerated() -> None:
    body = {"incident_id": "$INCIDENT_ID", "current_state": "open", "targets": "$TARGETS"}
    assert only_alert(NR, body).service is None


# --- Alertmanager / Grafana -----------------------------------------------------------------


def am(*alerts: dict[str, object]) -> dict[str, object]:
    return {"version": "4", "status": "firing", "alerts": list(alerts)}


def test_alertmanager_without_fingerprint_hashes_sorted_labels() -> None:
    one = am({"labels": {"alertname": "Fire", "job": "api"}})
    other = am({"labels": {"job": "api", "alertname": "Fire"}})
    assert only_alert(AM, one).incident_id == only_alert(AM, other).incident_id


def test_alertmanager_zero_start_time_is_none() -> None:
    body = am({"labels": {"a": "b"}, "startsAt": "0001-01-01T00:00:00Z"})
    assert only_alert(AM, body).started_at is None


@pytest.mark.parametrize(
    ("labels", "service"),
    [
        ({"service": "checkout", "job": "payments"}, "Checkout"),
        ({"job": "payments"}, "payments"),
        ({"instance": "checkout.internal:9100"}, "Checkout"),
        ({"job": "node-exporter"}, None),
    ],
)
def test_alertmanager_service_from_service_then_job_then_instance(
    labels: dict[str, str], service: str | None
) -> None:
    assert only_alert(AM, am({"labels": labels})).service == service


def test_alertmanager_group_mixing_states_is_read_per_alert() -> None:
    body = am({"labels": {"a": "1"}, "status": "resolved"}, {"labels": {"a": "2"}})
    states = [r.state for r in parse(AM, body) if isinstance(r, Alert)]
    assert states == [AlertState.RESOLVED, AlertState.FIRING]


def test_alertmanager_empty_group_gives_no_alerts() -> None:
    assert parse(AM, am()) == []


def test_grafana_relative_generator_url_falls_back_to_panel_url() -> None:
    body = load(GF, "test-alert-v12-keep.json")
    body["alerts"][0]["labels"] = {"alertname": "Disk", "severity": "warning"}
    alert = only_alert(GF, body)
    assert alert.url == "https://grafana.example.com/d/dashboard_uid?viewPanel=1"
    assert alert.priority is Priority.P3


@pytest.mark.parametrize(
    ("state", "expected"),
    [("alerting", AlertState.FIRING), ("ok", AlertState.RESOLVED), ("no_data", AlertState.FIRING)],
)
def test_grafana_legacy_rule_state(state: str, expected: AlertState) -> None:
    body = {"ruleId": 7, "ruleName": "CPU", "state": state, "evalMatches": []}
    alert = only_alert(GF, body)
    assert (alert.incident_id, alert.state) == ("grafana:rule-7", expected)


def test_grafana_legacy_paused_rule_is_not_an_alarm() -> None:
    body = {"ruleId": 7, "state": "paused", "evalMatches": []}
    assert parse(GF, body) == [Ignored("grafana:rule-7", "not_an_alarm")]


# --- CloudWatch -----------------------------------------------------------------------------


def alarm(**fields: object) -> dict[str, object]:
    return {
        "AlarmName": "checkout-5xx-rate",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed",
        "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:checkout-5xx-rate",
        **fields,
    }


def sns(message: object) -> dict[str, object]:
    text = message if isinstance(message, str) else json.dumps(message)
    return {"Type": "Notification", "MessageId": "m-1", "Message": text}


@pytest.mark.parametrize(
    ("new_state", "state", "priority"),
    [
        ("ALARM", AlertState.FIRING, Priority.P3),
        ("OK", AlertState.RESOLVED, Priority.P3),
        ("INSUFFICIENT_DATA", AlertState.FIRING, Priority.P4),
    ],
)
def test_cloudwatch_state_values(new_state: str, state: AlertState, priority: Priority) -> None:
    alert = only_alert(CW, sns(alarm(NewStateValue=new_state)))
    assert (alert.state, alert.priority) == (state, priority)


def test_cloudwatch_alarm_and_ok_share_the_arn_identity() -> None:
    firing = only_alert(CW, sns(alarm()))
    resolved = only_alert(CW, sns(alarm(NewStateValue="OK")))
    assert firing.incident_id == resolved.incident_id == f"cloudwatch:{alarm()['AlarmArn']}"


def test_cloudwatch_bare_alarm_without_envelope_is_accepted() -> None:
    alert = only_alert(CW, alarm(AlarmArn=None))
    assert alert.incident_id == "cloudwatch:checkout-5xx-rate"
    assert alert.url is None


def test_cloudwatch_service_from_alarm_name_first_token() -> None:
    assert only_alert(CW, sns(alarm())).service == "Checkout"
    assert only_alert(CW, sns(alarm(AlarmName="EC2-CPU"))).service is None


def test_cloudwatch_service_dimension_wins_over_alarm_name() -> None:
    dims = [{"name": "ServiceName", "value": "payments"}]
    body = sns(alarm(Trigger={"MetricName": "CPU", "Dimensions": dims}))
    assert only_alert(CW, body).service == "payments"


def test_cloudwatch_multi_metric_alarm_reads_dimensions_of_each_metric() -> None:
    body = load(CW, "lambda-sns-envelope-cloudwatch-alarm-multiple-metrics-aws-lambda-go.json")
    alert = only_alert(CW, body)
    assert alert.labels["dimension.InstanceId"] == "TestInstance"


@pytest.mark.parametrize("message", ["Hello world!", {"foo": 1}, [1, 2], ""])
def test_cloudwatch_notification_that_is_not_an_alarm_is_ignored(message: object) -> None:
    assert parse(CW, sns(message)) == [Ignored("cloudwatch:m-1", "not_an_alarm")]


def test_subscription_confirmation_logs_the_url_and_never_fetches_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = load(CW, "sns-http-subscription-confirmation-awsdocs.json")
    with caplog.at_level(logging.WARNING, logger="intake.parsers.cloudwatch"):
        [result] = parse(CW, body)
    assert isinstance(result, Ignored)
    assert result.reason == "subscription_confirmation"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert body["SubscribeURL"] in record.getMessage()
    assert "confirm" in record.getMessage()


# --- generic --------------------------------------------------------------------------------


def test_generic_priority_wins_over_severity() -> None:
    body = {"incident_id": "x", "summary": "s", "priority": "P4", "severity": "critical"}
    assert only_alert(Provider.GENERIC, body).priority is Priority.P4


def test_generic_fields_are_carried_and_naive_start_is_utc() -> None:
    body = {
        "incident_id": "job-42",
        "summary": "nightly export failed",
        "service": "CHECKOUT",
        "state": "resolved",
        "labels": {"team": "data"},
        "url": "https://ci.example.com/42",
        "started_at": "2024-05-01T10:00:00",
    }
    alert = only_alert(Provider.GENERIC, body)
    assert (alert.incident_id, alert.service, alert.state) == (
        "generic:job-42",
        "Checkout",
        AlertState.RESOLVED,
    )
    assert alert.labels == {"team": "data"}
    assert alert.url == "https://ci.example.com/42"
    assert alert.started_at is not None
    assert alert.started_at.isoformat() == "2024-05-01T10:00:00+00:00"
