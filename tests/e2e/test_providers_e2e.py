"""One full incident per provider format, through the real HTTP app and the real agent.

Each case is a real payload sample from tests/data, adapted only so that its service maps
to a registered name (`api`, critical, or `worker`), plus its resolved counterpart.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.simulators.llm import FakeLLM
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.policies import incident_of, status_then_conclude
from tests.fakes.stack import Stack, running_stack

DATA = Path(__file__).resolve().parent.parent / "data"
SNS_HEADERS = {"content-type": "text/plain; charset=UTF-8"}


def load(name: str, replace: dict[str, str] | None = None) -> Any:
    text = (DATA / name).read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return json.loads(text)


@dataclass(frozen=True)
class Case:
    """A provider's firing payload, its resolved payload, and what the firing one means."""

    provider: str
    firing: Any
    resolved: Any
    expected: tuple[tuple[str, str, str], ...]  # (incident id, service, priority)
    resolves: str  # the incident id the resolved payload closes
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return self.provider


def gcp() -> Case:
    resource = {"type": "cloud_run_revision", "labels": {"project_id": "p1", "service_name": "api"}}
    firing = load("gcp/metric-threshold-open-v1.2-cloudforet.json")
    firing["incident"]["resource"] = resource
    closed = load("gcp/metric-threshold-closed-v1.2-cloudforet.json")
    closed["incident"].update(incident_id="0.mtdi83m6w8ao", resource=resource)
    incident = "gcp:0.mtdi83m6w8ao"
    return Case("gcp", firing, closed, ((incident, "api", "P2"),), incident)


def datadog() -> Case:
    rename = {"keep-api": "worker"}
    incident = "datadog:134462228/service:worker"
    return Case(
        "datadog",
        load("datadog/keep-template-log-alert-triggered-p2.json", rename),
        load("datadog/keep-template-log-alert-recovered-p2.json", rename),
        ((incident, "worker", "P2"),),
        incident,
    )


def newrelic() -> Case:
    incident = "newrelic:0ea2df1c-adab-45d2-aae0-042b609d2322"
    created = load("newrelic/workflow-default-created-zulip.json", {"MAIN-APP-UBUNTU": "worker"})
    closed = load("newrelic/workflow-default-closed-zulip.json", {"main_app-UBUNTU": "worker"})
    closed["createdAt"] = created["createdAt"]  # the samples are of two issues: make them one
    return Case("newrelic", created, closed, ((incident, "worker", "P1"),), incident)


def alertmanager() -> Case:
    firing = load("alertmanager/firing-grouped-2-alerts-zulip.json")
    firing["alerts"][0]["labels"]["service"] = "api"
    firing["alerts"][1]["labels"]["service"] = "worker"
    resolved = load("alertmanager/resolved-single-zulip.json")
    resolved["alerts"][0]["labels"]["service"] = "api"
    expected = (
        ("alertmanager:a1bc48475b20e73d", "api", "P1"),
        ("alertmanager:c2ea85182f28cbd9", "worker", "P1"),
    )
    return Case("alertmanager", firing, resolved, expected, "alertmanager:a1bc48475b20e73d")


def grafana() -> Case:
    firing = load("grafana/firing-2-alerts-grafana-docs.json")
    firing["alerts"][0]["labels"]["service"] = "worker"
    firing["alerts"][1]["labels"]["service"] = "api"
    resolved = load("grafana/resolved-v9-zulip.json")
    resolved["alerts"][0].update(fingerprint="c6eadffa33fcdf37")
    resolved["alerts"][0]["labels"]["service"] = "worker"
    expected = (
        ("grafana:c6eadffa33fcdf37", "worker", "P3"),
        ("grafana:bc97ff14869b13e3", "api", "P2"),
    )
    return Case("grafana", firing, resolved, expected, "grafana:c6eadffa33fcdf37")


def _with_alarm(envelope: dict[str, Any], message_id: str, **changes: Any) -> dict[str, Any]:
    alarm = json.loads(envelope["Message"])
    alarm["Trigger"]["Dimensions"].append({"name": "ServiceName", "value": "worker"})
    alarm.update(changes)
    return {**envelope, "Message": json.dumps(alarm), "MessageId": message_id}


def cloudwatch() -> Case:
    envelope = load("cloudwatch_sns/sns-http-cloudwatch-alarm-ALARM-ec2-cpu-cloudforet.json")
    firing = _with_alarm(envelope, envelope["MessageId"])
    resolved = _with_alarm(
        envelope, "0b1c2d3e-0000-4000-8000-000000000001", NewStateValue="OK", OldStateValue="ALARM"
    )
    incident = "cloudwatch:arn:aws:cloudwatch:ap-northeast-2:257706363616:alarm:EC2-CPU"
    expected = ((incident, "worker", "P3"),)
    return Case("cloudwatch", firing, resolved, expected, incident, SNS_HEADERS)


CASES: tuple[Callable[[], Case], ...] = (gcp, datadog, newrelic, alertmanager, grafana, cloudwatch)


@pytest.fixture(params=CASES, ids=lambda make: make.__name__)
def case(request: pytest.FixtureRequest) -> Case:
    make: Callable[[], Case] = request.param
    return make()


async def send(stack: Stack, case: Case, body: Any) -> httpx.Response:
    if case.headers is None:
        return await stack.webhook(case.provider, body)
    return await stack.client.post(
        f"/webhook/{case.provider}",
        content=json.dumps(body).encode(),
        headers=case.headers,
        params={"auth_token": TEST_SECRETS["ops_auth_token"]},
    )


def runs_of(llm: FakeLLM) -> list[str | None]:
    """The incident of each agent run: one entry per conversation's first request."""
    return [incident_of(r) for r in llm.requests if len(r["messages"]) == 2]


async def test_provider_alert_is_diagnosed_and_reported(
    make_settings: SettingsFactory, case: Case
) -> None:
    llm = FakeLLM(policy=status_then_conclude())
    async with running_stack(make_settings, llm) as stack:
        response = await send(stack, case, copy.deepcopy(case.firing))
        await stack.idle()
        details = [(await stack.client.get(f"/alerts/{i}")).json() for i, _, _ in case.expected]
        reports = [
            (await stack.client.get(f"/alerts/{i}/report")).text for i, _, _ in case.expected
        ]
        closed = await send(stack, case, copy.deepcopy(case.resolved))
    assert response.status_code == 202
    assert [
        (a["incident_id"], a["service"], a["priority"], a["status"])
        for a in response.json()["alerts"]
    ] == [(*expected, "queued") for expected in case.expected]
    assert sorted(runs_of(llm)) == sorted(i for i, _, _ in case.expected)  # one run each
    for (incident, service, _), detail, report in zip(case.expected, details, reports, strict=True):
        assert detail["status"] == "resolved"
        assert [c["arguments"]["service"] for c in detail["tool_calls"]] == [service]
        assert stack.services[service].paths() != []
        assert f"**Incident:** {incident}" in report
        assert "## Token Usage" in report
    assert closed.json()["alerts"][0]["status"] == "ignored"  # finished before it closed
    assert stack.pagerduty.events == []


async def test_provider_resolved_event_while_queued_closes_the_incident(
    make_settings: SettingsFactory, case: Case
) -> None:
    release = asyncio.Event()
    llm = FakeLLM(policy=status_then_conclude(holds={"generic:blocker": release}))
    async with running_stack(make_settings, llm) as stack:
        try:
            for service in ("api", "worker"):  # keep both services busy: new alerts queue
                body = {"incident_id": f"blocker-{service}", "summary": "busy", "service": service}
                await stack.webhook("generic", body)
            await llm.wait_for_requests(2)
            firing = await send(stack, case, copy.deepcopy(case.firing))
            resolved = await send(stack, case, copy.deepcopy(case.resolved))
        finally:
            release.set()
        await stack.idle()
        detail = (await stack.client.get(f"/alerts/{case.resolves}")).json()
        report = (await stack.client.get(f"/alerts/{case.resolves}/report")).text
    assert {a["status"] for a in firing.json()["alerts"]} == {"queued"}
    assert [(a["incident_id"], a["status"]) for a in resolved.json()["alerts"]] == [
        (case.resolves, "resolved")
    ]
    assert detail["status"] == "resolved"
    assert detail["reason"] == "resolved_before_diagnosis"
    assert detail["tool_calls"] == []
    assert case.resolves not in runs_of(llm)  # never diagnosed
    assert "resolved the incident before diagnosis" in report
    others = {i for i, _, _ in case.expected} - {case.resolves}
    assert others <= set(runs_of(llm))  # the rest of the group still ran


async def test_sns_subscription_confirmation_is_ignored_and_never_fetched(
    make_settings: SettingsFactory,
) -> None:
    body = load("cloudwatch_sns/sns-http-subscription-confirmation-awsdocs.json")
    llm = FakeLLM()
    async with running_stack(make_settings, llm) as stack:
        worker_url = stack.settings.service_registry["worker"].base_url
        body["SubscribeURL"] = f"{worker_url}/confirm?Action=ConfirmSubscription&Token=2336412f37"
        case = Case("cloudwatch", body, body, (), "", SNS_HEADERS)
        response = await send(stack, case, body)
        await stack.idle()
    assert response.status_code == 202
    assert response.json()["alerts"] == [
        {
            "incident_id": "cloudwatch:165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "service": None,
            "priority": "P5",
            "status": "ignored",
            "reason": "subscription_confirmation",
        }
    ]
    assert stack.services["worker"].requests == []  # the SubscribeURL was not fetched
    assert llm.requests == []
    assert stack.pagerduty.events == []
