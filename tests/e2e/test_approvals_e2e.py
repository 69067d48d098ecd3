"""Approve mode end to end (CONTRACT §9) over real HTTP: the real app, a fake model that
proposes remediation writes, a fake service that records what reaches it, and a fake
PagerDuty. An operator is a client of `GET /approvals` and `POST .../approvals/{id}`; like
any API client it polls, with a bounded wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import Response
from starlette.requests import Request

from demo.simulators.llm import Call, FakeLLM
from tests.conftest import SettingsFactory
from tests.fakes.policies import propose_then_conclude
from tests.fakes.stack import Stack, running_stack

RESTART = Call(
    "call_ops_endpoint",
    {"service": "worker", "endpoint": "/ops/restart", "method": "POST", "body": {"pool": "db"}},
)
SCALE = Call("scale_service", {"service": "worker", "replicas": 4, "reason": "queue backlog"})
STATUS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
INCIDENT = "generic:inc-1"
WAIT_SECONDS = 10.0


def alert(incident: str = "inc-1", service: str = "worker") -> dict[str, Any]:
    return {"incident_id": incident, "summary": "Worker error rate above 5%", "service": service}


async def pending(stack: Stack, count: int = 1) -> list[dict[str, Any]]:
    """The pending approvals once there are `count` of them (polled, at most WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = await stack.client.get("/approvals")
        assert response.status_code == 200, response.text
        approvals: list[dict[str, Any]] = response.json()["approvals"]
        if len(approvals) >= count:
            return approvals
        assert time.monotonic() < deadline, f"{count} approval(s) never became pending"
        await asyncio.sleep(0.02)


async def decide(
    stack: Stack, approval: dict[str, Any], decision: str, note: str = "", **kw: Any
) -> Any:
    path = f"/alerts/{approval['incident_id']}/approvals/{approval['approval_id']}"
    return await stack.client.post(path, json={"decision": decision, "note": note}, **kw)


async def detail(stack: Stack, incident: str = INCIDENT) -> dict[str, Any]:
    response = await stack.client.get(f"/alerts/{incident}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def timeline(body: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in body["timeline"]]


def last_tool_results(llm: FakeLLM) -> str:
    messages = llm.requests[-1]["messages"]
    return "\n".join(str(m["content"]) for m in messages if m["role"] == "tool")


def approval_pages(stack: Stack) -> list[dict[str, Any]]:
    return [
        e.json
        for e in stack.pagerduty.events
        if str(e.json.get("payload", {}).get("summary", "")).startswith("Approval needed:")
    ]


async def test_approved_write_is_sent_once_and_its_result_reaches_the_model(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings, llm, agent_mode="approve", public_url="https://sre.example.com"
    ) as stack:
        assert (await stack.webhook("generic", alert())).status_code == 202
        [approval] = await pending(stack)
        waiting = await detail(stack)
        listed = (await stack.client.get("/alerts")).json()
        sent_before = stack.services["worker"].paths("POST")
        response = await decide(stack, approval, "approve", "go ahead")
        await stack.idle()
        done = await detail(stack)
        report = (await stack.client.get(f"/alerts/{INCIDENT}/report")).text
        again = await decide(stack, approval, "approve")
    assert approval["status"] == "pending"
    assert approval["tool"] == "call_ops_endpoint"
    assert approval["arguments"] == {
        "service": "worker",
        "endpoint": "/ops/restart",
        "method": "POST",
        "body": {"pool": "db"},
    }
    assert (approval["incident_id"], approval["occurrence"]) == (INCIDENT, 1)
    assert approval["expires_at"] > approval["requested_at"]
    assert waiting["status"] == "awaiting_approval"
    assert [a["status"] for a in listed["running"]] == ["awaiting_approval"]
    assert [a["approval_id"] for a in waiting["approvals"]] == [approval["approval_id"]]
    assert sent_before == []  # nothing is sent before the decision
    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["status"] == "approved"
    assert (decided["decided_by"], decided["note"]) == ("token", "go ahead")
    assert decided["decided_at"] is not None
    assert stack.services["worker"].paths("POST") == ["/ops/restart"]
    assert '"remedied"' in last_tool_results(llm)  # the service's answer reached the model
    assert done["status"] == "resolved"
    assert done["outcome"] == "resolved"
    assert timeline(done)[-3:] == ["awaiting_approval", "approved", "resolved"]
    assert done["approvals"][0]["result"] == "sent; ok"
    assert "## Approvals" in report
    assert approval["approval_id"] in report
    assert "approved" in report
    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]
    [page] = approval_pages(stack)
    assert page["dedup_key"] == INCIDENT
    assert page["payload"]["severity"] == "warning"
    details = page["payload"]["custom_details"]
    assert details["approval"]["approval_id"] == approval["approval_id"]
    assert details["console_url"] == f"https://sre.example.com/console/alerts/{INCIDENT}"
    # Opened only to ask: resolved when the occurrence ended resolved.
    assert stack.pagerduty.event_actions() == ["trigger", "resolve"]


async def test_denied_write_is_never_sent_and_the_model_reads_who_denied_it(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(SCALE))
    async with running_stack(
        make_settings, llm, agent_mode="approve", scaling_limits="worker|1|6|application"
    ) as stack:
        await stack.webhook("generic", alert())
        [approval] = await pending(stack)
        response = await decide(stack, approval, "deny", "scaling hides the leak")
        await stack.idle()
        done = await detail(stack)
    assert approval["tool"] == "scale_service"
    assert approval["reason"] == "queue backlog"
    assert response.status_code == 200
    assert response.json()["status"] == "denied"
    assert stack.services["worker"].paths("POST") == []
    assert '{"error": "denied by token: scaling hides the leak"}' in last_tool_results(llm)
    assert "denied" in timeline(done)
    assert done["approvals"][0]["status"] == "denied"


async def test_no_decision_in_time_expires_and_the_runtime_escalates(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings, llm, agent_mode="approve", approval_timeout_seconds=0.3
    ) as stack:
        await stack.webhook("generic", alert())
        await stack.idle()
        done = await detail(stack)
        report = (await stack.client.get(f"/alerts/{INCIDENT}/report")).text
        late = await decide(stack, done["approvals"][0], "approve")
        listed = (await stack.client.get("/approvals")).json()
    assert stack.services["worker"].paths("POST") == []
    assert '{"error": "no decision within 0.3 s"}' in last_tool_results(llm)
    assert done["approvals"][0]["status"] == "expired"
    assert "approval_expired" in timeline(done)
    assert (done["status"], done["reason"]) == ("escalated", "approval_expired")
    assert late.status_code == 409  # after expiry, and after the run ended
    assert listed == {"approvals": []}
    triggers = [e.json for e in stack.pagerduty.events if e.json["event_action"] == "trigger"]
    assert len(triggers) == 2  # the approval page, then the runtime's escalation
    assert triggers[1]["payload"]["summary"].startswith("[SRE agent: approval_expired]")
    assert "resolve" not in stack.pagerduty.event_actions()
    assert "## Approvals" in report
    assert "expired" in report


async def test_concurrent_decisions_send_the_write_exactly_once(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(make_settings, llm, agent_mode="approve") as stack:
        await stack.webhook("generic", alert())
        [approval] = await pending(stack)
        answers = await asyncio.gather(
            *(decide(stack, approval, "approve", f"operator {n}") for n in range(8)),
            decide(stack, approval, "deny", "no"),
        )
        await stack.idle()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 8
    winner = next(a for a in answers if a.status_code == 200).json()
    expected_posts = ["/ops/restart"] if winner["status"] == "approved" else []
    assert stack.services["worker"].paths("POST") == expected_posts


async def test_parallel_proposals_wait_together_and_are_decided_one_by_one(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART, SCALE, STATUS))
    async with running_stack(
        make_settings, llm, agent_mode="approve", scaling_limits="worker|1|6|application"
    ) as stack:
        await stack.webhook("generic", alert())
        approvals = await pending(stack, 2)
        by_tool = {a["tool"]: a for a in approvals}
        first = await decide(stack, by_tool["scale_service"], "approve")
        still = await detail(stack)
        second = await decide(stack, by_tool["call_ops_endpoint"], "deny", "not yet")
        await stack.idle()
    assert (first.status_code, second.status_code) == (200, 200)
    assert still["status"] == "awaiting_approval"  # one still pending
    assert stack.services["worker"].paths("POST") == ["/ops/scale"]
    assert stack.services["worker"].paths("GET") == ["/ops/status"]  # reads never wait


async def test_unknown_ids_and_missing_credentials_are_refused(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings, llm, agent_mode="approve", approval_timeout_seconds=30
    ) as stack:
        await stack.webhook("generic", alert())
        await stack.webhook("generic", alert("other", service="api"))
        approvals = await pending(stack, 2)
        mine = next(a for a in approvals if a["incident_id"] == INCIDENT)
        unknown = await decide(stack, {**mine, "approval_id": "apr_nope"}, "approve")
        elsewhere = await decide(stack, {**mine, "incident_id": "generic:other"}, "approve")
        no_incident = await decide(stack, {**mine, "incident_id": "nope"}, "approve")
        bad_body = await stack.client.post(
            f"/alerts/{INCIDENT}/approvals/{mine['approval_id']}", json={"decision": "maybe"}
        )
        anonymous = await decide(stack, mine, "approve", headers={"Authorization": ""})
        wrong = await decide(stack, mine, "approve", headers={"Authorization": "Bearer nope"})
        cookie_only = await decide(
            stack, mine, "approve", headers={"Authorization": "", "Cookie": "sre_console=x"}
        )
        unlisted = await stack.client.get("/approvals", headers={"Authorization": ""})
        still = [a["approval_id"] for a in await pending(stack, 2)]
        for approval in approvals:
            await decide(stack, approval, "deny")
        await stack.idle()
    assert [r.status_code for r in (unknown, elsewhere, no_incident)] == [404, 404, 404]
    assert bad_body.status_code == 422
    assert [r.status_code for r in (anonymous, wrong, cookie_only, unlisted)] == [401] * 4
    assert mine["approval_id"] in still  # none of the refused requests decided it
    assert stack.services["worker"].paths("POST") == []


async def test_console_session_decides_with_its_csrf_token_and_the_proxy_names_the_user(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings,
        llm,
        agent_mode="approve",
        console_identity_header="X-Goog-Authenticated-User-Email",
    ) as stack:
        await stack.webhook("generic", alert())
        [approval] = await pending(stack)
        issued = Response()  # the session cookie, as the console's login would set it
        csrf = stack.runtime.sessions.issue(issued, _request(stack.base_url)).csrf
        cookie = issued.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        user = {"X-Goog-Authenticated-User-Email": "accounts.google.com:ana@example.com"}
        path = f"/alerts/{INCIDENT}/approvals/{approval['approval_id']}"
        body = {"decision": "approve"}
        async with httpx.AsyncClient(
            base_url=stack.base_url, cookies={"sre_console": cookie}, headers=user
        ) as browser:
            no_token = await browser.post(path, json=body)
            cross_site = await browser.post(
                path, json=body, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
            )
            ok = await browser.post(path, json=body, headers={"X-CSRF-Token": csrf})
        await stack.idle()
    assert (no_token.status_code, cross_site.status_code) == (403, 403)
    assert ok.status_code == 200, ok.text
    assert ok.json()["decided_by"] == "ana@example.com"


async def test_live_mode_holds_nothing(make_settings: SettingsFactory) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", alert())
        await stack.idle()
        done = await detail(stack)
        listed = (await stack.client.get("/approvals")).json()
    assert stack.services["worker"].paths("POST") == ["/ops/restart"]
    assert done["approvals"] == []
    assert listed == {"approvals": []}
    assert "awaiting_approval" not in timeline(done)


def _request(base_url: str) -> Request:
    host = base_url.split("://", 1)[1]
    scope = {
        "type": "http",
        "scheme": "http",
        "headers": [(b"host", host.encode())],
        "path": "/console/login",
        "query_string": b"",
    }
    return Request(scope)


async def test_waiting_for_a_decision_does_not_count_against_the_agent_timeout(
    make_settings: SettingsFactory,
) -> None:
    """The run's AGENT_TIMEOUT_SECONDS (1.5 s) is shorter than the approval's wait (3 s):
    the run is not cut off while it waits, and goes on to conclude after the expiry."""
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings,
        llm,
        agent_mode="approve",
        agent_timeout_seconds=1.5,
        approval_timeout_seconds=3.0,
    ) as stack:
        await stack.webhook("generic", alert())
        await stack.idle()
        done = await detail(stack)
    assert '{"error": "no decision within 3 s"}' in last_tool_results(llm)
    assert len(llm.requests) == 2  # the model got the expiry and concluded
    assert (done["status"], done["reason"]) == ("escalated", "approval_expired")


async def test_shutdown_while_waiting_expires_the_approval_and_escalates_the_run(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings, llm, agent_mode="approve", shutdown_grace_seconds=0.1
    ) as stack:
        await stack.webhook("generic", alert())
        [approval] = await pending(stack)
        desk, record = stack.runtime.approvals, await stack.runtime.intake.get(INCIDENT)
    # The stack's exit was the SIGTERM: the run was cut off after the grace.
    proposal = desk.get(INCIDENT, approval["approval_id"])
    assert proposal.status == "expired"
    assert proposal.note == "the run ended before a decision"
    assert record is not None
    assert (record.status, record.reason) == ("escalated", "shutdown_grace_exceeded")
    assert stack.services["worker"].paths("POST") == []
