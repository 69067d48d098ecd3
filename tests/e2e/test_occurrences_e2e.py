"""Occurrences end to end (CONTRACT §3 "What intake does with an alert", §5, §6): each row of
the lifecycle over real HTTP, with the real app, the scripted LLM, fake services and a fake
PagerDuty. Runs are counted as LLM requests; held LLM answers keep a run going (or, on one
service, the next alert queued) for as long as a test needs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from demo.simulators.llm import Call, FakeLLM, say, tools
from tests.conftest import SettingsFactory
from tests.fakes.stack import Stack, running_stack

STATUS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
FIRST_START = "2026-12-01T03:00:00Z"
LATER_START = "2026-12-01T04:00:00Z"
FINGERPRINT = "abc123"
AM_INCIDENT = f"alertmanager:{FINGERPRINT}"


def generic(incident: str = "inc-1", service: str = "worker", **extra: object) -> dict[str, Any]:
    return {"incident_id": incident, "summary": "Error rate above 5%", "service": service, **extra}


def alertmanager(
    status: str = "firing",
    *,
    starts_at: str = FIRST_START,
    fingerprint: str = FINGERPRINT,
    summary: str = "Worker error rate above 5%",
) -> dict[str, Any]:
    """A v4 notification of one alert on the `worker` job."""
    labels = {"alertname": "HighErrorRate", "job": "worker", "severity": "critical"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "status": status,
        "receiver": "sre-agent",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": summary},
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else LATER_START,
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


async def decide(stack: Stack, provider: str, body: dict[str, Any]) -> tuple[str, str | None]:
    """Send one alert; its (status, reason) from the 202."""
    response = await stack.webhook(provider, body)
    assert response.status_code == 202, response.text
    [result] = response.json()["alerts"]
    return result["status"], result["reason"]


async def detail(stack: Stack, incident: str, **params: int) -> dict[str, Any]:
    response = await stack.client.get(f"/alerts/{incident}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def report(stack: Stack, incident: str, **params: int) -> str:
    response = await stack.client.get(f"/alerts/{incident}/report", params=params)
    assert response.status_code == 200, response.text
    return response.text


def timeline(body: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in body["timeline"]]


def numbers(body: dict[str, Any]) -> list[int]:
    return [entry["occurrence"] for entry in body["occurrences"]]


def user_texts(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request["messages"] if m["role"] == "user"]


# -- opening and repeats -----------------------------------------------------------------------


async def test_first_firing_opens_occurrence_one_and_runs_it(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("Worker healthy again.")])
    async with running_stack(make_settings, llm) as stack:
        decision = await decide(stack, "generic", generic())
        await stack.idle()
        body = await detail(stack, "generic:inc-1")
    assert decision == ("queued", None)
    assert len(llm.requests) == 1
    assert body["occurrence"] == 1
    assert body["status"] == "resolved"
    [only] = body["occurrences"]
    assert only["occurrence"] == 1
    assert only["status"] == "resolved"
    assert only["outcome"] == "resolved"
    assert only["report_file"] == body["report_file"] is not None


async def test_repeat_of_a_queued_or_running_occurrence_is_deduplicated_and_told_to_the_agent(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(script=[tools(STATUS, hold=gate), say("Restarted."), say("Second one.")])
    async with running_stack(make_settings, llm) as stack:
        first = await decide(stack, "generic", generic("run-1"))
        await llm.wait_for_requests(1)  # run-1 holds the worker
        repeat_running = await decide(
            stack, "generic", generic("run-1", summary="Error rate above 9%")
        )
        waiting = await decide(stack, "generic", generic("wait-1"))  # same service: queued
        repeat_queued = await decide(stack, "generic", generic("wait-1"))
        gate.set()
        await stack.idle()
        running_detail = await detail(stack, "generic:run-1")
        queued_detail = await detail(stack, "generic:wait-1")
    assert first == ("queued", None)
    assert repeat_running == ("deduplicated", "running")
    assert waiting == ("queued", None)
    assert repeat_queued == ("deduplicated", "queued")
    assert len(llm.requests) == 3  # run-1: two turns; wait-1: one; the repeats none
    told = "\n".join(user_texts(llm.requests[1]))
    assert "1 repeat notification(s) arrived" in told
    assert "Error rate above 9%" in told
    assert numbers(running_detail) == [1]
    assert numbers(queued_detail) == [1]


async def test_repeat_within_the_dedup_window_after_the_run_is_recently_handled(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("Fine.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
        repeat = await decide(stack, "generic", generic(started_at=FIRST_START))
        unstarted = await decide(stack, "generic", generic())
        await stack.idle()
        body = await detail(stack, "generic:inc-1")
    assert repeat == ("deduplicated", "recently_handled")
    assert unstarted == ("deduplicated", "recently_handled")
    assert len(llm.requests) == 1
    assert numbers(body) == [1]


async def test_refire_with_a_later_start_opens_occurrence_two_with_its_own_report(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("First episode: restarted."), say("Second episode: scaled.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "alertmanager", alertmanager(starts_at=FIRST_START))
        await stack.idle()
        refire = await decide(stack, "alertmanager", alertmanager(starts_at=LATER_START))
        await stack.idle()
        latest = await detail(stack, AM_INCIDENT)
        first = await detail(stack, AM_INCIDENT, occurrence=1)
        latest_report = await report(stack, AM_INCIDENT)
        first_report = await report(stack, AM_INCIDENT, occurrence=1)
        unknown = await stack.client.get(f"/alerts/{AM_INCIDENT}", params={"occurrence": 9})
        unknown_report = await stack.client.get(
            f"/alerts/{AM_INCIDENT}/report", params={"occurrence": 9}
        )
        zero = await stack.client.get(f"/alerts/{AM_INCIDENT}", params={"occurrence": 0})
    assert refire == ("queued", None)
    assert len(llm.requests) == 2
    assert latest["occurrence"] == 2
    assert numbers(latest) == [2, 1]
    assert [o["started_at"][:19] for o in latest["occurrences"]] == [
        LATER_START[:19],
        FIRST_START[:19],
    ]
    assert first["occurrence"] == 1
    assert numbers(first) == [2, 1]  # every remembered occurrence, whichever is shown
    assert latest["report_file"] != first["report_file"]
    assert [o["report_file"] for o in latest["occurrences"]] == [
        latest["report_file"],
        first["report_file"],
    ]
    assert "Second episode: scaled." in latest_report
    assert "First episode" not in latest_report
    assert "First episode: restarted." in first_report
    assert (unknown.status_code, unknown_report.status_code) == (404, 404)
    assert zero.status_code == 422


async def test_firing_resent_after_the_platform_resolved_is_stale_and_one_without_a_start_reopens(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("Fixed."), say("Fixed too."), say("Again.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "alertmanager", alertmanager(starts_at=FIRST_START))
        await stack.idle()
        resolved = await decide(stack, "alertmanager", alertmanager("resolved"))
        resent = await decide(stack, "alertmanager", alertmanager(starts_at=FIRST_START))
        await decide(stack, "generic", generic("no-start"))
        await stack.idle()
        generic_resolved = await decide(stack, "generic", generic("no-start", state="resolved"))
        reopened = await decide(stack, "generic", generic("no-start"))
        await stack.idle()
        am_detail = await detail(stack, AM_INCIDENT)
        generic_detail = await detail(stack, "generic:no-start")
    assert resolved[0] == "ignored"
    assert resent == ("deduplicated", "stale")
    assert generic_resolved[0] == "ignored"
    assert reopened == ("queued", None)
    assert len(llm.requests) == 3  # the Alertmanager incident once, the generic one twice
    assert numbers(am_detail) == [1]
    assert "resolved_upstream" in timeline(am_detail)
    assert numbers(generic_detail) == [2, 1]
    assert generic_detail["occurrences"][0]["started_at"] is None


async def test_repeat_after_the_dedup_window_opens_a_new_occurrence(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("Fixed."), say("Fixed again.")])
    async with running_stack(make_settings, llm, dedup_window_seconds=0) as stack:
        await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
        repeat = await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
        body = await detail(stack, "generic:inc-1")
    assert repeat == ("queued", None)
    assert len(llm.requests) == 2
    assert numbers(body) == [2, 1]
    assert body["occurrences"][0]["report_file"] != body["occurrences"][1]["report_file"]


# -- still firing after a fix --------------------------------------------------------------------


async def test_still_firing_after_the_agents_fix_is_escalated_once(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("Restarted the worker; fixed.")])
    async with running_stack(make_settings, llm, resolve_grace_seconds=0) as stack:
        await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
        fixed = await detail(stack, "generic:inc-1")
        still = await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
        escalated = await detail(stack, "generic:inc-1")
        text = await report(stack, "generic:inc-1")
        again = await decide(stack, "generic", generic(started_at=FIRST_START))
        await stack.idle()
    assert fixed["status"] == "resolved"
    assert still == ("escalated", "still_firing")
    assert again == ("deduplicated", "recently_handled")
    assert len(llm.requests) == 1
    assert stack.pagerduty.event_actions() == ["trigger"]
    event = stack.pagerduty.events[0].json
    assert event["dedup_key"] == "generic:inc-1"
    assert "still_firing" in event["payload"]["summary"]
    assert "did not clear" in event["payload"]["custom_details"]["findings"]
    assert event["payload"]["custom_details"]["report_file"] == fixed["report_file"]
    assert escalated["occurrence"] == 1
    assert escalated["status"] == "escalated"
    assert escalated["outcome"] == "escalated"
    assert escalated["occurrences"][0]["outcome"] == "escalated"
    assert "still_firing" in timeline(escalated)
    assert escalated["report_file"] == fixed["report_file"]
    assert "Restarted the worker; fixed." in text  # the run's report, added to
    assert "## Still firing after the fix" in text
    assert "did not clear the alert" in text


# -- resolves ------------------------------------------------------------------------------------


async def test_platform_resolve_of_a_queued_occurrence_closes_it_without_a_run(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(script=[say("Busy one done.", hold=gate)])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "generic", generic("busy"))
        await llm.wait_for_requests(1)
        queued = await decide(stack, "generic", generic("waiting"))
        resolved = await decide(stack, "generic", generic("waiting", state="resolved"))
        gate.set()
        await stack.idle()
        body = await detail(stack, "generic:waiting")
        text = await report(stack, "generic:waiting")
    assert queued == ("queued", None)
    assert resolved == ("resolved", "resolved_before_diagnosis")
    assert len(llm.requests) == 1  # only the busy one ran
    assert body["status"] == "resolved"
    assert body["reason"] == "resolved_before_diagnosis"
    assert "running" not in timeline(body)
    assert body["tool_calls"] == []
    assert "resolved the incident before diagnosis" in text


async def test_platform_resolve_while_running_is_told_to_the_agent_and_on_the_timeline(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(script=[tools(STATUS, hold=gate), say("Already recovered.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "generic", generic())
        await llm.wait_for_requests(1)
        resolved = await decide(
            stack, "generic", generic(state="resolved", summary="Error rate back under 1%")
        )
        during = await detail(stack, "generic:inc-1")
        gate.set()
        await stack.idle()
        body = await detail(stack, "generic:inc-1")
    assert resolved == ("ignored", "running")
    assert len(llm.requests) == 2
    told = "\n".join(user_texts(llm.requests[1]))
    assert "reports this incident as resolved" in told
    assert "Error rate back under 1%" in told
    assert not any("reports this incident as resolved" in t for t in user_texts(llm.requests[0]))
    assert body["status"] == "resolved"
    assert timeline(during) == ["queued", "running", "resolved_upstream"]
    assert timeline(body) == ["queued", "running", "resolved_upstream", "resolved"]


async def test_run_that_escalates_after_the_platform_resolved_gets_its_page_resolved(
    make_settings: SettingsFactory,
) -> None:
    gate = asyncio.Event()
    escalate = Call("escalate_pagerduty", {"summary": "Queue stuck; needs a human"})
    llm = FakeLLM(script=[tools(STATUS, hold=gate), tools(escalate), say("Escalated.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "generic", generic())
        await llm.wait_for_requests(1)
        assert await decide(stack, "generic", generic(state="resolved")) == ("ignored", "running")
        gate.set()
        await stack.idle()
        text = await report(stack, "generic:inc-1")
    trigger, resolve = (e.json for e in stack.pagerduty.events)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert resolve["dedup_key"] == trigger["dedup_key"] == "generic:inc-1"
    assert "## Resolved by the platform" in text


ESCALATING = [
    tools(Call("escalate_pagerduty", {"summary": "Queue stuck; needs a human", "details": "x"})),
    say("Escalated to on-call."),
]


async def test_platform_resolve_after_an_escalated_run_resolves_its_pagerduty_incident(
    make_settings: SettingsFactory,
) -> None:
    async with running_stack(make_settings, FakeLLM(script=list(ESCALATING))) as stack:
        await decide(stack, "generic", generic())
        await stack.idle()
        before = await detail(stack, "generic:inc-1")
        resolved = await decide(stack, "generic", generic(state="resolved"))
        await stack.idle()
        after = await detail(stack, "generic:inc-1")
        text = await report(stack, "generic:inc-1")
    assert before["status"] == "escalated"
    assert resolved == ("resolved", "resolved_upstream")
    trigger, resolve = (e.json for e in stack.pagerduty.events)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert resolve["dedup_key"] == trigger["dedup_key"] == "generic:inc-1"
    assert timeline(after) == [*timeline(before), "resolved_upstream"]
    assert after["report_file"] == before["report_file"]
    assert "## Resolved by the platform" in text
    assert "PagerDuty resolve `generic:inc-1`: sent" in text


async def test_platform_resolve_after_an_escalated_run_without_auto_resolve_only_records_it(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=list(ESCALATING))
    async with running_stack(make_settings, llm, pagerduty_auto_resolve=False) as stack:
        await decide(stack, "generic", generic())
        await stack.idle()
        resolved = await decide(stack, "generic", generic(state="resolved"))
        await stack.idle()
        after = await detail(stack, "generic:inc-1")
        text = await report(stack, "generic:inc-1")
    assert resolved[0] == "ignored"
    assert stack.pagerduty.event_actions() == ["trigger"]
    assert timeline(after)[-1] == "resolved_upstream"
    assert "## Resolved by the platform" in text


async def test_platform_resolve_of_an_unknown_service_alert_resolves_its_page(
    make_settings: SettingsFactory,
) -> None:
    async with running_stack(make_settings, FakeLLM()) as stack:
        escalated = await decide(stack, "generic", generic("ghost-1", service="ghost"))
        await stack.idle()
        resolved = await decide(
            stack, "generic", generic("ghost-1", service="ghost", state="resolved")
        )
        await stack.idle()
        body = await detail(stack, "generic:ghost-1")
    assert escalated == ("escalated", "unknown_service")
    assert resolved == ("resolved", "resolved_upstream")
    assert stack.llm.requests == []  # escalated at intake, never diagnosed
    assert [(e.json["event_action"], e.json["dedup_key"]) for e in stack.pagerduty.events] == [
        ("trigger", "generic:ghost-1"),
        ("resolve", "generic:ghost-1"),
    ]
    assert timeline(body)[-1] == "resolved_upstream"


# -- the decision log, a whole story, transcripts ----------------------------------------------


async def test_every_alert_gets_one_intake_decision_info_line(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    two = alertmanager()
    two["alerts"].append({**two["alerts"][0], "fingerprint": "def456"})
    two["alerts"][1]["labels"] = {"alertname": "Down", "job": "nowhere", "severity": "warning"}
    async with running_stack(make_settings, FakeLLM()) as stack:
        await stack.webhook("alertmanager", two)
        await stack.idle()
        await stack.webhook("alertmanager", alertmanager())
        await stack.idle()
    lines = [r for r in caplog.records if r.getMessage() == "intake_decision"]
    assert [r.levelno for r in lines] == [logging.INFO] * 3
    fields = ("incident_id", "occurrence", "provider", "service", "priority", "status", "reason")
    assert [tuple(getattr(r, name) for name in fields) for r in lines] == [
        (AM_INCIDENT, 1, "alertmanager", "worker", "P1", "queued", None),
        ("alertmanager:def456", 1, "alertmanager", None, "P3", "escalated", "unknown_service"),
        (AM_INCIDENT, 1, "alertmanager", "worker", "P1", "deduplicated", "recently_handled"),
    ]


async def test_alertmanager_story_fire_repeat_resolve_stale_refire(
    make_settings: SettingsFactory,
) -> None:
    """What one Alertmanager rule sends over an incident's life, in order."""
    llm = FakeLLM(script=[say("Episode one handled."), say("Episode two handled.")])
    async with running_stack(make_settings, llm) as stack:
        decisions = [await decide(stack, "alertmanager", alertmanager())]
        await stack.idle()
        for body in (
            alertmanager(summary="Worker error rate above 7%"),  # group_interval re-notify
            alertmanager("resolved"),
            alertmanager(),  # an HA peer re-sending the old firing
        ):
            decisions.append(await decide(stack, "alertmanager", body))
            await stack.idle()
        decisions.append(await decide(stack, "alertmanager", alertmanager(starts_at=LATER_START)))
        await stack.idle()
        latest = await detail(stack, AM_INCIDENT)
        reports = [await report(stack, AM_INCIDENT, occurrence=n) for n in (1, 2)]
    assert decisions == [
        ("queued", None),
        ("deduplicated", "recently_handled"),
        ("ignored", "finished"),
        ("deduplicated", "stale"),
        ("queued", None),
    ]
    assert len(llm.requests) == 2
    assert numbers(latest) == [2, 1]
    files = [o["report_file"] for o in latest["occurrences"]]
    assert None not in files
    assert len(set(files)) == 2
    assert "Episode one handled." in reports[0]
    assert "## Resolved by the platform" in reports[0]  # the resolve after its run, added
    assert "Episode two handled." in reports[1]


async def test_transcript_is_served_for_an_occurrence_with_a_run_and_404_without(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[tools(STATUS), say("Healthy.")])
    async with running_stack(make_settings, llm) as stack:
        await decide(stack, "generic", generic("ghost-1", service="ghost"))
        await decide(stack, "generic", generic())
        await stack.idle()
        without = await stack.client.get("/alerts/generic:ghost-1/transcript")
        latest = await stack.client.get("/alerts/generic:inc-1/transcript")
        first = await stack.client.get("/alerts/generic:inc-1/transcript", params={"occurrence": 1})
        unknown = await stack.client.get(
            "/alerts/generic:inc-1/transcript", params={"occurrence": 2}
        )
    assert without.status_code == 404
    assert unknown.status_code == 404
    assert latest.status_code == first.status_code == 200
    body = latest.json()
    assert body == first.json()
    assert (body["incident_id"], body["occurrence"]) == ("generic:inc-1", 1)
    assert body["model"] == stack.settings.llm_model
    assert len(body["turns"]) == 2
