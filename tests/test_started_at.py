"""`Alert.started_at` per provider: when the platform says the firing episode began.

Repeats and redeliveries of one episode carry the same `started_at`, a re-fire a later one,
and a payload that does not say (or says it with a sentinel) gives None.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from models import Alert, Provider
from tests.test_parsers import CW, DD, GCP, GF, NR, load, only_alert, parse

AM, GENERIC = Provider.ALERTMANAGER, Provider.GENERIC
ZERO_TIME = "0001-01-01T00:00:00Z"


def alerts(provider: Provider, body: object) -> list[Alert]:
    return [r for r in parse(provider, body) if isinstance(r, Alert)]


def with_fields(body: Any, **fields: object) -> Any:
    return {**copy.deepcopy(body), **fields}


# --- Datadog --------------------------------------------------------------------------------

CYCLE_START = 1733930648000  # ms; the Keep sample's notification `date` is 90 s later


def datadog(**fields: object) -> dict[str, Any]:
    body = load(DD, "keep-template-log-alert-triggered-p2.json")
    return with_fields(body, **{"first_triggered_at_epoch": str(CYCLE_START), **fields})


def test_datadog_renotify_of_one_cycle_keeps_the_cycle_start() -> None:
    first = only_alert(DD, datadog())
    renotify = datadog(
        alert_transition="Renotify",
        id="7879719351243699999",
        date="1733934338000",
        last_updated="1733934338000",
    )
    again = only_alert(DD, renotify)
    assert first.started_at == again.started_at == datetime.fromtimestamp(CYCLE_START / 1000, UTC)
    assert first.incident_id == again.incident_id


def test_datadog_new_cycle_is_a_later_start() -> None:
    first = only_alert(DD, datadog())
    refire = only_alert(DD, datadog(first_triggered_at_epoch=str(CYCLE_START + 3_600_000)))
    assert first.started_at is not None
    assert refire.started_at is not None
    assert refire.started_at > first.started_at


def test_datadog_recovery_carries_the_start_of_the_cycle_it_ends() -> None:
    body = load(DD, "keep-template-log-alert-recovered-p2.json")
    recovered = only_alert(DD, with_fields(body, first_triggered_at_epoch=CYCLE_START))
    assert recovered.started_at == only_alert(DD, datadog()).started_at


@pytest.mark.parametrize(
    "fields",
    [
        {"first_triggered_at": "2024-12-11 15:24:08 UTC"},
        {"first_triggered_at": "2024-12-11T15:24:08Z"},
        {"alert_cycle_start": "2024-12-11T16:24:08+01:00"},
        {"alert_cycle_start": 1733930648000},
    ],
    ids=repr,
)
def test_datadog_cycle_start_under_each_accepted_key_and_form(fields: dict[str, object]) -> None:
    body = with_fields(load(DD, "keep-template-log-alert-triggered-p2.json"), **fields)
    expected = datetime(2024, 12, 11, 15, 24, 8, tzinfo=UTC)
    assert only_alert(DD, body).started_at == expected


@pytest.mark.parametrize(
    "fields",
    [
        {},  # the Keep template: `date` and `last_updated` are the notification's time
        {"date": 1733930738000, "last_updated": "1733930738000"},
        # names the cycle, does not date it (even when it looks like an epoch)
        {"alert_cycle_key": "1733930648000"},
        {"first_triggered_at_epoch": "{{first_triggered_at_epoch}}"},  # not rendered
        {"first_triggered_at_epoch": "0"},
        {"first_triggered_at_epoch": ""},
        {"alert_cycle_start": ZERO_TIME},
    ],
    ids=repr,
)
def test_datadog_without_a_cycle_start_has_no_started_at(fields: dict[str, object]) -> None:
    body = with_fields(load(DD, "keep-template-log-alert-triggered-p2.json"), **fields)
    assert only_alert(DD, body).started_at is None


# --- Alertmanager / Grafana -----------------------------------------------------------------


def test_alertmanager_repeat_notification_keeps_starts_at() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    repeat = copy.deepcopy(body)
    repeat["alerts"][0]["endsAt"] = "2018-11-04T23:46:58.283995108+01:00"  # pushed on
    repeat["alerts"].append({"labels": {"alertname": "Smoke"}, "startsAt": "2018-11-04T22:50:00Z"})
    [first] = alerts(AM, body)
    again, _ = alerts(AM, repeat)
    assert first.incident_id == again.incident_id
    assert first.started_at == again.started_at == datetime(2018, 11, 4, 21, 43, 58, 283995, UTC)


def test_alertmanager_refire_has_a_later_starts_at() -> None:
    body = load(AM, "firing-single-metalmatze-alertmanager-bot.json")
    refire = copy.deepcopy(body)
    refire["alerts"][0]["startsAt"] = "2018-11-04T23:10:00.000000001+01:00"
    [first], [again] = alerts(AM, body), alerts(AM, refire)
    assert first.incident_id == again.incident_id
    assert first.started_at is not None
    assert again.started_at is not None
    assert again.started_at > first.started_at


def test_alertmanager_resolved_alert_keeps_the_start_of_its_episode() -> None:
    firing = alerts(AM, load(AM, "firing-grouped-2-alerts-zulip.json"))[0]
    resolved = only_alert(AM, load(AM, "resolved-single-zulip.json"))
    assert firing.incident_id == resolved.incident_id
    assert firing.started_at is not None
    assert resolved.started_at == firing.started_at


@pytest.mark.parametrize("provider", [AM, GF])
@pytest.mark.parametrize(
    "starts_at",
    [ZERO_TIME, "0001-01-01T00:00:00+01:00", "1970-01-01T00:00:00Z", "", "soon", None],
    ids=repr,
)
def test_sentinel_or_missing_starts_at_is_none(provider: Provider, starts_at: str | None) -> None:
    alert: dict[str, object] = {"labels": {"alertname": "Disk"}}
    if starts_at is not None:
        alert["startsAt"] = starts_at
    body = {"version": "4", "status": "firing", "alerts": [alert]}
    assert only_alert(provider, body).started_at is None


def test_grafana_alerts_of_a_group_keep_their_own_starts_at() -> None:
    body = load(GF, "firing-2-alerts-grafana-docs.json")
    first, second = alerts(GF, body)
    assert first.started_at == datetime(2021, 10, 12, 7, 51, 3, 157076, UTC)
    assert second.started_at == datetime(2021, 10, 12, 7, 56, 3, 157076, UTC)


def test_grafana_repeat_keeps_and_refire_moves_starts_at() -> None:
    body = load(GF, "firing-2-alerts-grafana-docs.json")
    repeat, refire = copy.deepcopy(body), copy.deepcopy(body)
    repeat["alerts"][0]["values"] = {"B": 99, "C": 1}
    repeat["alerts"][0]["valueString"] = "[ var='B' value=99 ]"
    refire["alerts"][0]["startsAt"] = "2021-10-12T10:30:00+02:00"
    first, again, later = (alerts(GF, b)[0] for b in (body, repeat, refire))
    assert first.started_at == again.started_at
    assert first.started_at is not None
    assert later.started_at is not None
    assert later.started_at > first.started_at


def test_grafana_legacy_payload_has_no_started_at() -> None:
    body = {"ruleId": 7, "ruleName": "CPU", "state": "alerting", "evalMatches": []}
    assert only_alert(GF, body).started_at is None


# --- GCP ------------------------------------------------------------------------------------


def test_gcp_repeat_and_close_keep_started_at_and_a_new_incident_starts_later() -> None:
    opened = load(GCP, "uptime-check-open-v1.2.json")
    repeat = copy.deepcopy(opened)
    repeat["incident"]["summary"] = "An uptime check is still failing."
    refire = copy.deepcopy(opened)
    refire["incident"] |= {"incident_id": "0.newone", "started_at": 1579563044}
    first, again, later = (only_alert(GCP, b) for b in (opened, repeat, refire))
    closed = only_alert(GCP, load(GCP, "uptime-check-closed-v1.2.json"))
    assert first.started_at == again.started_at == closed.started_at
    assert first.started_at == datetime(2020, 1, 20, 22, 30, 44, tzinfo=UTC)
    assert later.started_at is not None
    assert later.started_at > first.started_at


@pytest.mark.parametrize("started_at", [0, "0", "", None, -5, "soon"], ids=repr)
def test_gcp_zero_or_missing_started_at_is_none(started_at: object) -> None:
    body = {"version": "1.2", "incident": {"incident_id": "0.abc", "started_at": started_at}}
    assert only_alert(GCP, body).started_at is None


# --- CloudWatch -----------------------------------------------------------------------------

CW_SAMPLE = "sns-http-cloudwatch-alarm-ALARM-ec2-cpu-cloudforet.json"


def cloudwatch(**alarm: object) -> dict[str, Any]:
    body = load(CW, CW_SAMPLE)
    message = {**json.loads(body["Message"]), **alarm}
    return with_fields(body, Message=json.dumps(message))


def test_cloudwatch_sns_redelivery_keeps_the_alarm_state_change_time() -> None:
    first = only_alert(CW, cloudwatch())
    again = only_alert(CW, with_fields(cloudwatch(), Timestamp="2021-06-23T08:45:00.000Z"))
    assert first.started_at == again.started_at == datetime(2021, 6, 23, 8, 41, 6, 622000, UTC)


def test_cloudwatch_next_alarm_transition_is_a_later_start() -> None:
    first = only_alert(CW, cloudwatch())
    refire = only_alert(
        CW, cloudwatch(OldStateValue="OK", StateChangeTime="2021-06-23T09:12:00.000+0000")
    )
    assert first.incident_id == refire.incident_id
    assert first.started_at is not None
    assert refire.started_at is not None
    assert refire.started_at > first.started_at


@pytest.mark.parametrize("new_state", ["OK", "INSUFFICIENT_DATA"])
def test_cloudwatch_leaving_alarm_does_not_date_the_episode(new_state: str) -> None:
    changed = cloudwatch(
        NewStateValue=new_state, OldStateValue="ALARM", StateChangeTime="2021-06-23T09:00:00+0000"
    )
    assert only_alert(CW, changed).started_at is None


@pytest.mark.parametrize("state_change_time", [None, "", "0001-01-01T00:00:00.000+0000"])
def test_cloudwatch_alarm_without_a_state_change_time_has_none(
    state_change_time: str | None,
) -> None:
    assert only_alert(CW, cloudwatch(StateChangeTime=state_change_time)).started_at is None


# --- New Relic ------------------------------------------------------------------------------


def test_newrelic_notifications_of_one_issue_share_its_creation() -> None:
    created = load(NR, "workflow-default-created-zulip.json")
    activated = with_fields(created, state="ACTIVATED", updatedAt=1713767850000)
    acknowledged = with_fields(activated, trigger="USER_ACTION", updatedAt=1713767900000)
    first, again, ack = (only_alert(NR, b) for b in (created, activated, acknowledged))
    assert first.started_at == again.started_at == ack.started_at
    assert first.started_at == datetime(2024, 4, 22, 6, 36, 29, 495000, UTC)


def test_newrelic_issue_created_later_starts_later() -> None:
    created = load(NR, "workflow-default-created-zulip.json")
    later = with_fields(created, createdAt=1713771389495, updatedAt=1713771389495)
    first, again = only_alert(NR, created), only_alert(NR, later)
    assert first.started_at is not None
    assert again.started_at is not None
    assert again.started_at > first.started_at


@pytest.mark.parametrize("created_at", [0, "0", "", None, "{{createdAt}}"], ids=repr)
def test_newrelic_zero_or_missing_created_at_is_none(created_at: object) -> None:
    body = {"id": "abc-1", "title": "t", "state": "ACTIVATED", "createdAt": created_at}
    assert only_alert(NR, body).started_at is None


@pytest.mark.parametrize("state", ["open", "acknowledged", "closed"])
def test_newrelic_legacy_event_timestamp_is_not_the_incident_start(state: str) -> None:
    body = with_fields(load(NR, "legacy-incident-open-trimmed-zulip.json"), current_state=state)
    assert only_alert(NR, body).started_at is None


# --- generic --------------------------------------------------------------------------------


def generic(**fields: object) -> dict[str, object]:
    return {"incident_id": "job-42", "summary": "nightly export failed", **fields}


def test_generic_started_at_is_taken_as_given_in_utc() -> None:
    alert = only_alert(GENERIC, generic(started_at="2024-05-01T12:00:00+02:00"))
    assert alert.started_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert alert.started_at.tzinfo is UTC


@pytest.mark.parametrize("started_at", [ZERO_TIME, "1970-01-01T00:00:00Z", 0, None], ids=repr)
def test_generic_sentinel_or_missing_started_at_is_none(started_at: object) -> None:
    assert only_alert(GENERIC, generic(started_at=started_at)).started_at is None
