"""PagerDuty client: Events API v2 payloads and retries, REST probe and policy hand-off."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from config import Settings
from demo.simulators.pagerduty import FakePagerDuty, Scripted
from models import Alert, Priority, Provider
from tests.conftest import TEST_SECRETS, SettingsFactory
from tools.pagerduty import Escalation, PagerDutyClient, dedup_key_for, severity_for


class FakeTime:
    """A monotonic clock that only moves when the client sleeps; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_alert(**fields: Any) -> Alert:
    values: dict[str, Any] = {
        "incident_id": "gcp:0.abc",
        "provider": Provider.GCP,
        "service": "worker",
        "priority": Priority.P2,
        "summary": "error rate above 5%",
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.abc",
        "started_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    values.update(fields)
    return Alert.model_validate(values)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


ClientFactory = Callable[..., PagerDutyClient]


@pytest.fixture
def make_client(
    http: httpx.AsyncClient,
    fake_pd: tuple[FakePagerDuty, str],
    make_settings: SettingsFactory,
    fake_time: FakeTime,
) -> ClientFactory:
    def factory(**overrides: Any) -> PagerDutyClient:
        settings = make_settings(**fake_pd[0].settings_for(fake_pd[1]), **overrides)
        return PagerDutyClient(
            http=http, settings=settings, sleep=fake_time.sleep, clock=fake_time.clock
        )

    return factory


@pytest.fixture
def pd(fake_pd: tuple[FakePagerDuty, str]) -> FakePagerDuty:
    return fake_pd[0]


async def test_trigger_sends_the_events_v2_payload(pd: FakePagerDuty, make_client: ClientFactory):
    result = await make_client().trigger(
        Escalation(
            alert=make_alert(),
            summary="worker failing",
            trace_id="t-1",
            details="db slow",
            report_file="r.md",
        )
    )
    assert result.ok
    assert result.action == "trigger"
    assert result.status_code == 202
    (event,) = pd.events
    assert event.headers["x-trace-id"] == "t-1"
    assert event.json == {
        "routing_key": TEST_SECRETS["pagerduty_routing_key"],
        "event_action": "trigger",
        "dedup_key": "gcp:0.abc",
        "client": "SRE Agent Runtime",
        "payload": {
            "summary": "worker failing",
            "source": "worker",
            "severity": "error",
            "component": "worker",
            "timestamp": "2025-01-02T03:04:05+00:00",
            "custom_details": {
                "findings": "db slow",
                "trace_id": "t-1",
                "report_file": "r.md",
                "incident_id": "gcp:0.abc",
                "priority": "P2",
                "service": "worker",
            },
        },
        "links": [{"href": make_alert().url, "text": "Alert source"}],
    }


async def test_trigger_without_service_or_url_uses_unknown_source_and_no_links(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    await make_client().trigger(
        Escalation(alert=make_alert(service=None, url=None), summary="s", trace_id="t")
    )
    assert pd.events[0].json["payload"]["source"] == "unknown"
    assert "links" not in pd.events[0].json


async def test_trigger_summary_is_cut_to_1024_chars(pd: FakePagerDuty, make_client: ClientFactory):
    await make_client().trigger(Escalation(alert=make_alert(), summary="x" * 5000, trace_id="t"))
    assert pd.events[0].json["payload"]["summary"] == "x" * 1024


@pytest.mark.parametrize(
    ("priority", "critical", "expected"),
    [
        (Priority.P1, False, "critical"),
        (Priority.P2, False, "error"),
        (Priority.P3, False, "warning"),
        (Priority.P4, False, "info"),
        (Priority.P5, False, "info"),
        (Priority.P4, True, "critical"),
    ],
)
def test_severity_follows_priority_and_criticality(
    priority: Priority, critical: bool, expected: str
) -> None:
    assert severity_for(make_alert(priority=priority), critical) == expected


@pytest.mark.parametrize(
    ("requested", "service", "expected"),
    [("WARNING", "worker", "warning"), ("urgent", "worker", "error"), (None, "api", "critical")],
)
async def test_trigger_severity_is_the_requested_one_if_valid_else_derived(
    pd: FakePagerDuty,
    make_client: ClientFactory,
    requested: str | None,
    service: str,
    expected: str,
) -> None:
    alert = make_alert(service=service)
    await make_client().trigger(
        Escalation(alert=alert, summary="s", trace_id="t", severity=requested)
    )
    assert pd.events[0].json["payload"]["severity"] == expected


async def test_acknowledge_and_resolve_send_only_action_and_dedup_key(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    client = make_client()
    ack = await client.acknowledge(dedup_key="gcp:0.abc", trace_id="t")
    res = await client.resolve(dedup_key="gcp:0.abc", trace_id="t")
    assert (ack.ok, ack.action, res.ok, res.action) == (True, "acknowledge", True, "resolve")
    assert [e.json for e in pd.events] == [
        {
            "routing_key": TEST_SECRETS["pagerduty_routing_key"],
            "event_action": action,
            "dedup_key": "gcp:0.abc",
        }
        for action in ("acknowledge", "resolve")
    ]


async def test_429_is_retried_honouring_retry_after(
    pd: FakePagerDuty, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    pd.events_script.extend([Scripted(429, headers={"Retry-After": "7"}), Scripted(202)])
    result = await make_client().trigger(Escalation(alert=make_alert(), summary="s", trace_id="t"))
    assert (result.ok, result.attempts, result.status_code) == (True, 2, 202)
    assert fake_time.sleeps == [7.0]


async def test_permanent_500_gives_up_after_5_retries_and_logs_error_without_secrets(
    pd: FakePagerDuty,
    make_client: ClientFactory,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pd.events_default = Scripted(500, body={"echo": TEST_SECRETS["pagerduty_routing_key"]})
    with caplog.at_level(logging.ERROR, logger="tools.pagerduty"):
        result = await make_client().trigger(
            Escalation(alert=make_alert(), summary="s", trace_id="t")
        )
    assert (result.ok, result.attempts, result.status_code) == (False, 6, 500)
    assert result.error is not None
    assert "HTTP 500" in result.error
    assert len(pd.events) == 6
    assert len(fake_time.sleeps) == 5
    assert all(0 < s <= 31 for s in fake_time.sleeps)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert TEST_SECRETS["pagerduty_routing_key"] not in caplog.text + result.error


async def test_400_is_not_retried(
    pd: FakePagerDuty, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    pd.events_script.append(Scripted(400, body={"status": "invalid event"}))
    result = await make_client().trigger(Escalation(alert=make_alert(), summary="s", trace_id="t"))
    assert (result.ok, result.attempts, result.status_code) == (False, 1, 400)
    assert fake_time.sleeps == []


async def test_retries_never_sleep_past_the_deadline(
    pd: FakePagerDuty, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    pd.events_default = Scripted(503)
    deadline = fake_time.now + 5
    result = await make_client().trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t"), deadline=deadline
    )
    assert not result.ok
    assert 1 < result.attempts < 6
    assert fake_time.now <= deadline


async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    pd: FakePagerDuty, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    pd.events_default = Scripted(429, headers={"Retry-After": "60"})
    result = await make_client().trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t"), deadline=fake_time.now + 10
    )
    assert (result.ok, result.attempts, fake_time.sleeps) == (False, 1, [])


async def test_timeouts_and_transport_errors_are_retried(
    make_settings: SettingsFactory, fake_time: FakeTime
) -> None:
    failures: list[Exception] = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]

    def handler(_request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(202, json={"status": "success"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = PagerDutyClient(
            http=http, settings=make_settings(), sleep=fake_time.sleep, clock=fake_time.clock
        )
        result = await client.resolve(dedup_key="k", trace_id="t")
    assert (result.ok, result.attempts, len(fake_time.sleeps)) == (True, 3, 2)


async def test_unreachable_events_api_fails_with_the_error(
    make_settings: SettingsFactory, fake_time: FakeTime
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = PagerDutyClient(
            http=http, settings=make_settings(), sleep=fake_time.sleep, clock=fake_time.clock
        )
        result = await client.trigger(Escalation(alert=make_alert(), summary="s", trace_id="t"))
    assert (result.ok, result.attempts, result.status_code) == (False, 6, None)
    assert result.error == "ConnectError: refused"


POLICY = {"pagerduty_escalation_policy_id": "PPOLICY", "pagerduty_from_email": "sre@example.com"}


async def test_trigger_hands_the_incident_to_the_escalation_policy(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    result = await make_client(**POLICY).trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t")
    )
    assert result.ok
    assert result.policy_handoff == "handed to escalation policy PPOLICY (incident Q0001)"
    lookup, update = pd.rest
    assert (lookup.path, lookup.query) == ("/incidents", "incident_key=gcp%3A0.abc")
    assert (update.method, update.path) == ("PUT", "/incidents/Q0001")
    assert update.json == {
        "incident": {
            "type": "incident_reference",
            "escalation_policy": {"id": "PPOLICY", "type": "escalation_policy_reference"},
        }
    }
    assert update.headers["from"] == "sre@example.com"
    assert update.headers["authorization"] == f"Token token={TEST_SECRETS['pagerduty_api_token']}"
    assert update.headers["accept"] == "application/vnd.pagerduty+json;version=2"


async def test_hand_off_waits_for_the_incident_to_appear(
    pd: FakePagerDuty, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    pd.lookup_misses = 1
    result = await make_client(**POLICY).trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t")
    )
    assert result.policy_handoff is not None
    assert result.policy_handoff.startswith("handed")
    assert fake_time.sleeps == [1.0]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ({"update_status": 403}, "failed: HTTP 403 from PUT /incidents/Q0001"),
        ({"lookup_status": 500}, "failed: HTTP 500 from GET /incidents"),
        ({"lookup_misses": 10}, "failed: no PagerDuty incident found for dedup key gcp:0.abc"),
    ],
)
async def test_hand_off_failure_does_not_fail_the_escalation(
    pd: FakePagerDuty, make_client: ClientFactory, script: dict[str, int], reason: str
) -> None:
    for name, value in script.items():
        setattr(pd, name, value)
    result = await make_client(**POLICY).trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t")
    )
    assert result.ok
    assert result.policy_handoff == reason


async def test_no_hand_off_without_a_policy_or_after_a_failed_trigger(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    plain = await make_client().trigger(Escalation(alert=make_alert(), summary="s", trace_id="t"))
    pd.events_script.append(Scripted(400))
    failed = await make_client(**POLICY).trigger(
        Escalation(alert=make_alert(), summary="s", trace_id="t")
    )
    assert plain.policy_handoff is None
    assert failed.policy_handoff is None
    assert pd.rest == []


async def test_probe_is_ok_when_the_rest_api_accepts_the_token(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    assert await make_client().probe() == (True, "HTTP 200")
    assert pd.rest[0].path == "/abilities"


async def test_probe_fails_on_a_rejected_token(make_client: ClientFactory) -> None:
    ok, detail = await make_client(pagerduty_api_token="wrong").probe()
    assert (ok, detail) == (False, "HTTP 401 from PagerDuty REST API /abilities")


async def test_probe_fails_when_unreachable(
    make_settings: SettingsFactory, http: httpx.AsyncClient
) -> None:
    settings: Settings = make_settings(pagerduty_api_url="http://127.0.0.1:9")
    ok, detail = await PagerDutyClient(http=http, settings=settings).probe()
    assert (ok, detail) == (False, "PagerDuty REST API unreachable: ConnectError")


def test_dedup_key_is_the_incident_id_shortened_stably_past_255_chars() -> None:
    assert dedup_key_for("gcp:0.abc") == "gcp:0.abc"
    long_id = "generic:" + "x" * 300
    key = dedup_key_for(long_id)
    assert len(key) == 255
    assert key == dedup_key_for(long_id)
    assert key != dedup_key_for(long_id + "y")


async def test_long_incident_id_uses_the_same_short_key_for_every_action(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    client, incident = make_client(), "generic:" + "x" * 300
    await client.trigger(
        Escalation(alert=make_alert(incident_id=incident), summary="s", trace_id="t")
    )
    await client.resolve(dedup_key=incident, trace_id="t")
    assert {e.json["dedup_key"] for e in pd.events} == {dedup_key_for(incident)}


async def test_empty_summary_falls_back_to_the_alert_summary(
    pd: FakePagerDuty, make_client: ClientFactory
) -> None:
    await make_client().trigger(Escalation(alert=make_alert(), summary="  ", trace_id="t"))
    assert pd.events[0].json["payload"]["summary"] == "error rate above 5%"
