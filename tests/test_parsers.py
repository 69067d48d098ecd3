"""`intake.parsers.parse_webhook`: every corpus sample, and the rules shared by all providers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import ServiceEntry
from intake.parsers import Ignored, PayloadError, parse_webhook
from models import Alert, AlertState, Priority, Provider
from tools.redact import Redactor

DATA = Path(__file__).parent / "data"
FOLDERS = {Provider.CLOUDWATCH: "cloudwatch_sns"}

REGISTRY: Mapping[str, ServiceEntry] = {
    entry.name: entry
    for entry in (
        ServiceEntry("keep-api", "http://keep-api.internal:8080", critical=False),
        ServiceEntry("users", "https://myhost:8443", critical=True),
        ServiceEntry("thermal", "http://andromeda:9100", critical=True),
        ServiceEntry("main-app-ubuntu", "http://10.0.0.5:8000", critical=False),
        ServiceEntry("api-service", "http://10.0.0.6:8000", critical=False),
        ServiceEntry("Checkout", "http://checkout.internal", critical=False),
        ServiceEntry("payments", "http://payments.internal", critical=True),
    )
}


def load(provider: Provider, name: str) -> Any:
    return json.loads((DATA / FOLDERS.get(provider, provider.value) / name).read_text())


def parse(provider: Provider, body: object) -> list[Alert | Ignored]:
    return parse_webhook(provider, body, registry=REGISTRY)


def only_alert(provider: Provider, body: object) -> Alert:
    [result] = parse(provider, body)
    assert isinstance(result, Alert)
    return result


GCP, DD, NR = Provider.GCP, Provider.DATADOG, Provider.NEWRELIC
AM, GF, CW = Provider.ALERTMANAGER, Provider.GRAFANA, Provider.CLOUDWATCH
FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED
P1, P2, P3, P5 = Priority.P1, Priority.P2, Priority.P3, Priority.P5
EC2_ARN = "arn:aws:cloudwatch:ap-northeast-2:257706363616:alarm:EC2-CPU"
EXAMPLE_ARN = "arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
NR_ISSUE = "0ea2df1c-adab-45d2-aae0-042b609d2322"

# (provider, file) -> [(incident_id, service, priority, state or Ignored reason), ...]
CORPUS: dict[tuple[Provider, str], list[tuple[str, str | None, Priority, str]]] = {
    (GCP, "metric-threshold-open-v1.2-cloudforet.json"): [("gcp:0.mtdi83m6w8ao", None, P3, FIRING)],
    (GCP, "metric-threshold-closed-v1.2-cloudforet.json"): [
        ("gcp:0.mteuirnn0v0k", None, P3, RESOLVED)
    ],
    (GCP, "uptime-check-open-v1.2.json"): [("gcp:0.ligwyr056k2l", "users", P2, FIRING)],
    (GCP, "uptime-check-closed-v1.2.json"): [("gcp:0.ligwyr056k2l", "users", P2, RESOLVED)],
    (GCP, "test-notification-version-test-cloudforet.json"): [
        ("gcp:test", None, P5, "test_notification")
    ],
    (DD, "keep-template-log-alert-warn-p2.json"): [
        ("datadog:134462228/service:keep-api", "keep-api", P2, FIRING)
    ],
    (DD, "keep-template-log-alert-triggered-p2.json"): [
        ("datadog:134462228/service:keep-api", "keep-api", P2, FIRING)
    ],
    (DD, "keep-template-log-alert-recovered-p2.json"): [
        ("datadog:134462228/service:keep-api", "keep-api", P2, RESOLVED)
    ],
    (DD, "custom-metric-alert-triggered-codenow-fluffy.json"): [
        ("datadog:309811/host:i-3b93aafb", None, P3, FIRING)
    ],
    (DD, "port-custom-test-notification-triggered.json"): [
        ("datadog:147793", "api-service", P5, "test_notification")
    ],
    (NR, "workflow-default-created-zulip.json"): [
        (f"newrelic:{NR_ISSUE}", "main-app-ubuntu", P1, FIRING)
    ],
    (NR, "workflow-default-closed-zulip.json"): [(f"newrelic:{NR_ISSUE}", None, P1, RESOLVED)],
    (NR, "legacy-incident-open-trimmed-zulip.json"): [("newrelic:1234", None, P3, FIRING)],
    (NR, "legacy-channel-test-notification-depotjoe.json"): [
        ("newrelic:0", None, P5, "test_notification")
    ],
    (AM, "firing-grouped-2-alerts-zulip.json"): [
        ("alertmanager:a1bc48475b20e73d", "thermal", P1, FIRING),
        ("alertmanager:c2ea85182f28cbd9", "thermal", P1, FIRING),
    ],
    (AM, "resolved-single-zulip.json"): [
        ("alertmanager:a1bc48475b20e73d", "thermal", P1, RESOLVED)
    ],
    (AM, "firing-single-metalmatze-alertmanager-bot.json"): [
        ("alertmanager:7014c92e6425df8f", None, P1, FIRING)
    ],
    (GF, "firing-2-alerts-grafana-docs.json"): [
        ("grafana:c6eadffa33fcdf37", None, P3, FIRING),
        ("grafana:bc97ff14869b13e3", None, P3, FIRING),
    ],
    (GF, "resolved-v9-zulip.json"): [("grafana:d8a21484c9c25a60", None, P3, RESOLVED)],
    (GF, "test-alert-v12-keep.json"): [("grafana:c4edaaf9f9f839b0", None, P5, "test_notification")],
    (CW, "sns-http-cloudwatch-alarm-ALARM-ec2-cpu-cloudforet.json"): [
        (f"cloudwatch:{EC2_ARN}", None, P3, FIRING)
    ],
    (CW, "lambda-sns-envelope-cloudwatch-alarm-single-metric-aws-lambda-go.json"): [
        (f"cloudwatch:{EXAMPLE_ARN}", None, P3, FIRING)
    ],
    (CW, "lambda-sns-envelope-cloudwatch-alarm-multiple-metrics-aws-lambda-go.json"): [
        (f"cloudwatch:{EXAMPLE_ARN}", None, P3, FIRING)
    ],
    (CW, "sns-http-notification-awsdocs.json"): [
        ("cloudwatch:22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", None, P5, "not_an_alarm")
    ],
    (CW, "sns-http-subscription-confirmation-awsdocs.json"): [
        ("cloudwatch:165545c9-2a5c-472c-8df2-7ff2be2b3b1b", None, P5, "subscription_confirmation")
    ],
    (CW, "sns-http-unsubscribe-confirmation-awsdocs.json"): [
        ("cloudwatch:47138184-6831-46b8-8f7c-afc488602d7d", None, P5, "unsubscribe_confirmation")
    ],
}

PAIRS = [
    (GCP, "uptime-check-open-v1.2.json", "uptime-check-closed-v1.2.json"),
    (DD, "keep-template-log-alert-triggered-p2.json", "keep-template-log-alert-recovered-p2.json"),
    (DD, "keep-template-log-alert-warn-p2.json", "keep-template-log-alert-recovered-p2.json"),
    (NR, "workflow-default-created-zulip.json", "workflow-default-closed-zulip.json"),
    (AM, "firing-grouped-2-alerts-zulip.json", "resolved-single-zulip.json"),
]


def _outcome(result: Alert | Ignored) -> tuple[str, str | None, Priority, str]:
    if isinstance(result, Ignored):
        return (result.incident_id, result.service, result.priority, result.reason)
    return (result.incident_id, result.service, result.priority, result.state)


def test_corpus_table_covers_every_sample_of_the_six_providers() -> None:
    folders = ["gcp", "datadog", "newrelic", "alertmanager", "grafana", "cloudwatch_sns"]
    on_disk = {f"{d}/{p.name}" for d in folders for p in (DATA / d).glob("*.json")}
    in_table = {f"{FOLDERS.get(p, p.value)}/{name}" for p, name in CORPUS}
    assert on_disk == in_table


@pytest.mark.parametrize(("provider", "name"), list(CORPUS), ids=lambda v: str(v))
def test_corpus_sample_parses_to_expected_id_service_priority_state(
    provider: Provider, name: str
) -> None:
    results = parse(provider, load(provider, name))
    assert [_outcome(r) for r in results] == CORPUS[provider, name]


@pytest.mark.parametrize(("provider", "name"), list(CORPUS), ids=lambda v: str(v))
def test_corpus_alerts_are_well_formed(provider: Provider, name: str) -> None:
    for result in parse(provider, load(provider, name)):
        if isinstance(result, Ignored):
            continue
        assert result.provider is provider
        assert result.summary
        assert "\n" not in result.summary
        assert len(result.summary) <= 1024
        assert result.started_at is None or result.started_at.utcoffset() is not None
        assert all(isinstance(v, str) for v in result.labels.values())
        assert result.raw is not None


@pytest.mark.parametrize(("provider", "opened", "closed"), PAIRS, ids=lambda v: str(v))
def test_open_and_closed_events_share_the_incident_id(
    provider: Provider, opened: str, closed: str
) -> None:
    first = parse(provider, load(provider, opened))[0]
    last = only_alert(provider, load(provider, closed))
    assert isinstance(first, Alert)
    assert (first.incident_id, first.state, last.state) == (last.incident_id, FIRING, RESOLVED)


def test_redelivery_gives_the_same_incident_id() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    assert parse(AM, body) == parse(AM, json.loads(json.dumps(body)))


def test_alertmanager_group_raw_carries_the_alert_and_group_context() -> None:
    first, second = parse(AM, load(AM, "firing-grouped-2-alerts-zulip.json"))
    assert isinstance(first, Alert)
    assert isinstance(second, Alert)
    assert first.raw["fingerprint"] == "a1bc48475b20e73d"
    assert second.raw["annotations"]["description"] == "CPU core temperature is 17.625C"
    assert first.raw["receiver"] == "ops-zulip"
    assert first.raw["externalURL"] == "http://ops1:9093"
    assert first.raw["commonLabels"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("provider", "name", "url"),
    [
        (GCP, "uptime-check-open-v1.2.json", "https://app.google.stackdriver.com/incidents/"),
        (DD, "keep-template-log-alert-triggered-p2.json", "https://app.datadoghq.com/event/"),
        (NR, "legacy-incident-open-trimmed-zulip.json", "https://alerts.newrelic.com/accounts/"),
        (AM, "firing-single-metalmatze-alertmanager-bot.json", "http://localhost:9090/graph"),
        (GF, "resolved-v9-zulip.json", "https://grafana.example.com/alerting/grafana/"),
        (
            CW,
            "sns-http-cloudwatch-alarm-ALARM-ec2-cpu-cloudforet.json",
            "https://ap-northeast-2.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-2"
            "#alarmsV2:alarm/EC2-CPU",
        ),
    ],
)
def test_alert_links_back_to_the_platform(provider: Provider, name: str, url: str) -> None:
    alert = parse(provider, load(provider, name))[0]
    assert isinstance(alert, Alert)
    assert alert.url is not None
    assert alert.url.startswith(url)


@pytest.mark.parametrize(
    ("provider", "name", "started_at"),
    [
        (GCP, "uptime-check-open-v1.2.json", datetime(2020, 1, 20, 22, 30, 44, tzinfo=UTC)),
        (
            AM,
            "firing-single-metalmatze-alertmanager-bot.json",
            datetime(2018, 11, 4, 21, 43, 58, 283995, tzinfo=UTC),
        ),
        (
            NR,
            "workflow-default-created-zulip.json",
            datetime(2024, 4, 22, 6, 36, 29, 495000, tzinfo=UTC),
        ),
        (
            CW,
            "sns-http-cloudwatch-alarm-ALARM-ec2-cpu-cloudforet.json",
            datetime(2021, 6, 23, 8, 41, 6, 622000, tzinfo=UTC),
        ),
    ],
)
def test_started_at_is_timezone_aware_utc(
    provider: Provider, name: str, started_at: datetime
) -> None:
    alert = parse(provider, load(provider, name))[0]
    assert isinstance(alert, Alert)
    assert alert.started_at == started_at
    assert alert.started_at.tzinfo is UTC


# --- priority -------------------------------------------------------------------------------


def generic(**fields: object) -> dict[str, object]:
    return {"incident_id": "inc-1", "summary": "disk almost full", **fields}


@pytest.mark.parametrize(
    ("severity", "service", "expected"),
    [
        ("critical", "Checkout", P1),
        ("CRITICAL", "Checkout", P1),
        ("Error", "Checkout", P2),
        ("warning", "Checkout", P3),
        ("info", "Checkout", Priority.P4),
        ("bogus", "Checkout", P3),
        (None, "Checkout", P3),
        ("warning", "payments", P2),
        ("critical", "payments", P1),
        ("info", "payments", P3),
        ("bogus", None, P3),
    ],
)
def test_priority_from_severity_word_raised_once_for_critical_services(
    severity: str | None, service: str | None, expected: Priority
) -> None:
    alert = only_alert(Provider.GENERIC, generic(severity=severity, service=service))
    assert alert.priority is expected


def test_unknown_alertmanager_severity_defaults_to_p3() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    body["alerts"][0]["labels"]["severity"] = "apocalyptic"
    assert only_alert(AM, body).priority is P3


def test_critical_service_raises_p3_to_p2_and_never_above_p1() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    body["alerts"][0]["labels"] |= {"service": "payments", "severity": "warning"}
    assert only_alert(AM, body).priority is P2
    body["alerts"][0]["labels"]["severity"] = "critical"
    assert only_alert(AM, body).priority is P1


# --- caps -----------------------------------------------------------------------------------


def test_unicode_summary_is_kept_on_one_line() -> None:
    alert = only_alert(Provider.GENERIC, generic(summary="  Dienst für Zahlungen ⚠️\n\tdown 🔥 "))
    assert alert.summary == "Dienst für Zahlungen ⚠️ down 🔥"


def test_long_summary_is_cut_to_1024_chars_with_a_marker() -> None:
    alert = only_alert(Provider.GENERIC, generic(summary="é" * 5000))
    assert len(alert.summary) == 1024
    assert alert.summary == "é" * 1001 + "…[truncated 3999 chars]"


def test_huge_labels_are_capped_in_count_key_and_value_length() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    body["alerts"][0]["labels"] = {f"k{i}-{'x' * 300}": "v" * 5000 for i in range(500)}
    labels = only_alert(AM, body).labels
    assert len(labels) == 64
    assert max(map(len, labels)) <= 128
    assert {len(v) for v in labels.values()} == {256}
    assert all(v.endswith("…[truncated 4767 chars]") for v in labels.values())


def test_non_string_label_values_are_json_encoded() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    body["alerts"][0]["labels"] = {"replicas": 3, "canary": True, "meta": {"a": [1, 2]}}
    assert only_alert(AM, body).labels == {"replicas": "3", "canary": "true", "meta": '{"a":[1,2]}'}


def test_huge_raw_payload_is_replaced_by_a_bounded_preview() -> None:
    body = load(GCP, "uptime-check-open-v1.2.json")
    body["incident"]["documentation"] = {"content": "ü" * 100_000}
    raw = only_alert(GCP, body).raw
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    assert raw["truncated"] is True
    assert raw["bytes"] == size
    assert len(raw["preview"].encode()) <= 16 * 1024
    assert raw["preview"].startswith('{"incident":')


def test_small_raw_payload_is_kept_as_received() -> None:
    body = load(GCP, "uptime-check-open-v1.2.json")
    assert only_alert(GCP, body).raw == body


@pytest.mark.parametrize(
    ("provider", "body", "loc"),
    [
        (GCP, {"incident": {"incident_id": "a" * 253}}, ["incident", "incident_id"]),
        (DD, {"title": "t", "aggreg_key": "a" * 300}, ["aggreg_key"]),
        (DD, {"title": "t", "monitor_id": "1", "scopes": "host:" + "a" * 300}, ["scopes"]),
        (NR, {"id": "a" * 300}, ["id"]),
        (AM, {"alerts": [{}, {"fingerprint": "a" * 300}]}, ["alerts", 1, "fingerprint"]),
        (GF, {"ruleId": "a" * 300, "state": "alerting", "evalMatches": []}, ["ruleId"]),
        (CW, {"AlarmName": "a" * 300, "NewStateValue": "ALARM"}, ["AlarmName"]),
        (Provider.GENERIC, generic(incident_id="a" * 249), ["incident_id"]),
    ],
    ids=lambda v: v.value if isinstance(v, Provider) else "",
)
def test_incident_id_over_256_chars_is_a_payload_error_naming_its_field(
    provider: Provider, body: object, loc: list[object]
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(provider, body)
    assert caught.value.errors[0]["loc"] == loc


def test_a_test_notification_with_a_long_id_is_still_ignored_not_refused() -> None:
    [item] = parse(NR, {"incident_id": "a" * 300, "current_state": "test"})
    assert isinstance(item, Ignored)
    assert len(item.incident_id) <= 256


def test_incident_id_of_exactly_256_chars_is_kept() -> None:
    alert = only_alert(Provider.GENERIC, generic(incident_id="a" * 248))
    assert alert.incident_id == "generic:" + "a" * 248


# --- wrong shapes ---------------------------------------------------------------------------

SECRET = "s3cr3t-value-never-echoed"


@pytest.mark.parametrize("provider", list(Provider))
@pytest.mark.parametrize("body", [[{"a": SECRET}], SECRET, 42, None], ids=repr)
def test_body_that_is_not_an_object_is_a_payload_error_at_the_root(
    provider: Provider, body: object
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(provider, body)
    assert caught.value.errors[0]["loc"] == []
    assert caught.value.errors[0]["msg"] == "Input should be a JSON object"
    assert SECRET not in json.dumps(caught.value.errors)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("provider", "body", "loc"),
    [
        (GCP, {"version": "1.2"}, ["incident"]),
        (GCP, {"version": "1.2", "incident": SECRET}, ["incident"]),
        (GCP, {"incident": {"state": "open"}}, ["incident", "incident_id"]),
        (GCP, {"incident": {"incident_id": "1", "resource": [SECRET]}}, ["incident", "resource"]),
        (AM, {"alerts": SECRET}, ["alerts"]),
        (AM, {"alerts": [{"labels": SECRET}]}, ["alerts", 0, "labels"]),
        (
            GF,
            {"alerts": [{"status": "firing", "annotations": [SECRET]}]},
            ["alerts", 0, "annotations"],
        ),
        (NR, {"title": SECRET}, ["id"]),
        (NR, {"current_state": "open"}, ["incident_id"]),
        (DD, {"tags": {"k": SECRET}}, ["tags"]),
        (CW, {"Message": SECRET}, ["Type"]),
        (
            CW,
            {
                "Type": "Notification",
                "Message": json.dumps({"AlarmName": SECRET, "NewStateValue": 1}),
            },
            ["Message", "NewStateValue"],
        ),
        (CW, {"Records": [{"Sns": SECRET}]}, ["Records", 0, "Sns"]),
        (Provider.GENERIC, {"summary": SECRET}, ["incident_id"]),
        (Provider.GENERIC, generic(priority="P9"), ["priority"]),
    ],
)
def test_wrong_shape_names_the_field_path_without_echoing_input(
    provider: Provider, body: object, loc: list[object]
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(provider, body)
    assert caught.value.errors[0]["loc"] == loc
    assert set(caught.value.errors[0]) == {"loc", "msg", "type"}
    assert SECRET not in json.dumps(caught.value.errors)
    assert SECRET not in str(caught.value)


# --- robustness -----------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    children: list[tuple[object, object]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    return [prefix] + [p for key, child in children for p in _paths(child, (*prefix, key))]


def _replaced(body: Any, path: tuple[Any, ...], value: object) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


@settings(max_examples=300, deadline=None)
@given(sample=st.sampled_from(list(CORPUS)), data=st.data())
def test_any_field_of_any_sample_replaced_by_any_json_parses_or_is_a_payload_error(
    sample: tuple[Provider, str], data: st.DataObject
) -> None:
    provider, name = sample
    body = load(provider, name)
    path = data.draw(st.sampled_from(_paths(body)))
    mutated = _replaced(body, path, data.draw(JSON_VALUES))
    result = _parse_or_error(provider, mutated)
    if isinstance(result, PayloadError):
        assert all(set(e) == {"loc", "msg", "type"} for e in result.errors)
    else:
        assert all(len(r.incident_id) <= 256 for r in result)


def _parse_or_error(provider: Provider, body: object) -> list[Alert | Ignored] | PayloadError:
    try:
        return parse(provider, body)
    except PayloadError as exc:
        return exc


def test_a_secret_in_a_huge_raw_payload_is_redacted_from_its_preview() -> None:
    body = load(GCP, "uptime-check-open-v1.2.json")
    secret = "hunter2-correct-horse-battery"
    body["incident"]["db_password"] = secret
    body["incident"]["documentation"] = {"content": "x" * 20_000}
    [alert] = parse_webhook(
        GCP,
        body,
        registry=REGISTRY,
        body_size=len(json.dumps(body)),
        redactor=Redactor([]),
    )
    assert isinstance(alert, Alert)
    assert alert.raw["truncated"] is True
    assert "db_password" in alert.raw["preview"]
    assert secret not in alert.raw["preview"]
