"""The agent end to end: real app, real openai client, fake LLM/services/PagerDuty."""

from __future__ import annotations

import asyncio
import json

from demo.simulators.llm import Call, FakeLLM, fail, say, tools
from demo.simulators.pagerduty import Scripted
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.stack import running_stack


def generic(incident: str = "inc-1", service: str = "worker", **extra: object) -> dict[str, object]:
    return {"incident_id": incident, "summary": "Error rate above 5%", "service": service, **extra}


async def test_happy_path_diagnoses_remediates_verifies_and_reports_without_paging(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(
        script=[
            tools(Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})),
            tools(
                Call(
                    "call_ops_endpoint",
                    {"service": "worker", "endpoint": "/ops/restart", "method": "POST"},
                )
            ),
            tools(Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/status"})),
            tools(Call("write_incident_report", {"content": "# Worker restarted\nFixed."})),
            say("Restarted the worker; status healthy again."),
        ]
    )
    async with running_stack(make_settings, llm) as stack:
        stack.services["worker"].faulty = True
        response = await stack.webhook("generic", generic())
        assert response.status_code == 202
        assert response.json()["alerts"][0]["status"] == "queued"
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
        report = (await stack.client.get("/alerts/generic:inc-1/report")).text
    assert detail["status"] == "resolved"
    assert detail["outcome"] == "resolved"
    assert [c["name"] for c in detail["tool_calls"]] == [
        "call_ops_endpoint",
        "call_ops_endpoint",
        "call_ops_endpoint",
        "write_incident_report",
    ]
    assert stack.services["worker"].faulty is False
    assert stack.pagerduty.events == []
    assert report.startswith("# Worker restarted")
    timeline = report.split("## Timeline", 1)[1].split("##", 1)[0]
    assert [line.split()[-1] for line in timeline.strip().splitlines()] == [
        "queued",
        "running",
        "resolved",
    ]
    assert "## Token Usage" in report
    assert "Budget Exceeded: no" in report
    assert detail["tokens"] == {"input": 500, "output": 100, "total": 600}
    worker_requests = stack.services["worker"].requests
    assert all(
        r.headers["authorization"] == f"Bearer {TEST_SECRETS['ops_auth_token']}"
        for r in worker_requests
    )
    trace_id = response.headers["x-trace-id"]
    assert {r.headers["x-trace-id"] for r in worker_requests} == {trace_id}


async def test_model_escalation_pages_pagerduty_with_the_incident_dedup_key(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(
        script=[
            tools(Call("call_ops_endpoint", {"service": "api", "endpoint": "status"})),
            tools(
                Call(
                    "escalate_pagerduty",
                    {"summary": "Database down; cannot fix via API", "details": "db refused"},
                )
            ),
            say("Escalated."),
        ]
    )
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", generic("db-1", service="api"))
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:db-1")).json()
    assert detail["status"] == "escalated"
    event = stack.pagerduty.events[0].json
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "generic:db-1"
    assert event["payload"]["severity"] == "critical"  # api is a critical service


async def test_turn_limit_ends_with_a_runtime_escalation(make_settings: SettingsFactory) -> None:
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    metrics = Call("call_ops_endpoint", {"service": "worker", "endpoint": "metrics"})
    llm = FakeLLM(script=[tools(status), tools(metrics), tools(status)])
    async with running_stack(make_settings, llm, agent_max_turns=3) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
    assert detail["status"] == "escalated"
    assert detail["reason"] == "max_turns"
    assert "tools" not in llm.requests[-1]  # the last turn is offered no tools
    assert "tools" in llm.requests[0]
    assert stack.pagerduty.event_actions() == ["trigger"]


async def test_token_budget_stops_the_run_and_says_so(make_settings: SettingsFactory) -> None:
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    llm = FakeLLM(script=[tools(status, prompt_tokens=900, completion_tokens=200)])
    async with running_stack(make_settings, llm, max_tokens_per_incident=1000) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
        report = (await stack.client.get("/alerts/generic:inc-1/report")).text
    assert detail["reason"] == "token_budget"
    assert detail["status"] == "escalated"
    assert "Budget Exceeded: yes" in report
    assert len(llm.requests) == 1


async def test_wall_clock_limit_escalates(make_settings: SettingsFactory) -> None:
    never = asyncio.Event()
    llm = FakeLLM(script=[say("too late", hold=never)])
    async with running_stack(make_settings, llm, agent_timeout_seconds=0.5) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
        never.set()
    assert detail["reason"] == "timeout"
    assert detail["status"] == "escalated"


async def test_wall_clock_limit_bounds_the_run_even_while_pagerduty_hangs(
    make_settings: SettingsFactory,
) -> None:
    """The runtime's page after a timeout is the pager's job: the run's slot is free at the
    limit, and the service's next alert starts while the first page still waits."""
    never, hung = asyncio.Event(), asyncio.Event()
    llm = FakeLLM(script=[say("too late", hold=never), say("All fine.")])
    async with running_stack(make_settings, llm, agent_timeout_seconds=0.5) as stack:
        stack.pagerduty.hold = hung
        await stack.webhook("generic", generic("slow"))
        await stack.webhook("generic", generic("next"))  # same service: waits for the slot
        async with asyncio.timeout(10):  # generous; before the fix the page held the slot 60 s
            await llm.wait_for_requests(2)
        first = (await stack.client.get("/alerts/generic:slow")).json()
        hung.set()
        never.set()
        await stack.idle()
    assert first["status"] == "escalated"
    assert first["reason"] == "timeout"
    assert [e.json["dedup_key"] for e in stack.pagerduty.events] == ["generic:slow"]


async def test_llm_rate_limit_is_retried_honouring_retry_after(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(
        script=[fail(429, "rate_limit_exceeded", headers={"retry-after": "0"}), say("All fine.")]
    )
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
    assert detail["status"] == "resolved"
    assert len(llm.requests) == 2


async def test_insufficient_quota_is_not_retried_and_escalates(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[fail(429, "insufficient_quota")])
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        detail = (await stack.client.get("/alerts/generic:inc-1")).json()
    assert len(llm.requests) == 1
    assert detail["reason"] == "llm_error: insufficient_quota"
    assert stack.pagerduty.event_actions() == ["trigger"]


async def test_parallel_tool_calls_return_in_call_order(make_settings: SettingsFactory) -> None:
    calls = [
        Call("call_ops_endpoint", {"service": "worker", "endpoint": name})
        for name in ("status", "metrics", "errors")
    ]
    llm = FakeLLM(script=[tools(*calls), say("done")])
    async with running_stack(make_settings, llm) as stack:
        worker = stack.services["worker"]
        worker.hold("/ops/status")
        await stack.webhook("generic", generic())
        await worker.arrived("/ops/errors")
        await worker.arrived("/ops/metrics")
        assert "/ops/status" in worker.paths()  # all three are in flight at once
        worker.release("/ops/status")
        await stack.idle()
    tool_messages = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0_0", "call_0_1", "call_0_2"]


async def test_shadow_mode_withholds_every_write_and_lists_it(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(
        script=[
            tools(
                Call(
                    "call_ops_endpoint",
                    {"service": "worker", "endpoint": "/ops/restart", "method": "POST"},
                ),
                Call("escalate_pagerduty", {"summary": "would page"}),
            ),
            say("done"),
        ]
    )
    async with running_stack(make_settings, llm, agent_mode="shadow") as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        report = (await stack.client.get("/alerts/generic:inc-1/report")).text
    assert stack.services["worker"].paths("POST") == []
    assert stack.pagerduty.events == []
    assert "## Would Have Done" in report
    withheld = report.split("## Would Have Done", 1)[1]
    assert "/ops/restart" in withheld
    assert "PagerDuty" in withheld


async def test_unknown_service_is_escalated_with_a_report(make_settings: SettingsFactory) -> None:
    async with running_stack(make_settings, FakeLLM()) as stack:
        response = await stack.webhook("generic", generic("ghost-1", service="ghost"))
        await stack.idle()
        report = (await stack.client.get("/alerts/generic:ghost-1/report")).text
        detail = (await stack.client.get("/alerts/generic:ghost-1")).json()
    assert detail["paged_as"] == "generic:ghost-1"
    assert response.json()["alerts"][0] == {
        "incident_id": "generic:ghost-1",
        "service": None,
        "priority": "P3",
        "status": "escalated",
        "reason": "unknown_service",
    }
    assert stack.pagerduty.event_actions() == ["trigger"]
    assert "No registered service matches" in report


async def test_incident_report_json_line_is_logged(
    make_settings: SettingsFactory, capsys: object
) -> None:
    async with running_stack(make_settings, FakeLLM()) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    reports = [line for line in lines if line["message"] == "INCIDENT_REPORT"]
    assert len(reports) == 1
    assert reports[0]["incident_id"] == "generic:inc-1"
    assert reports[0]["outcome"] == "resolved"
    assert reports[0]["report"].count("## Token Usage") == 1
    assert all(TEST_SECRETS["llm_api_key"] not in line for line in map(str, lines))


async def test_dependencies_show_what_the_run_saw(make_settings: SettingsFactory) -> None:
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    llm = FakeLLM(script=[tools(status), say("ok")])
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", generic())
        await stack.idle()
        rows = (await stack.client.get("/ops/dependencies")).json()["dependencies"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["llm"]["status"] == "ok"
    assert by_name["worker"]["status"] == "ok"
    assert by_name["worker"]["detail"] == "HTTP 200 from /ops/status"
    assert by_name["api"]["status"] == "unknown"  # never called


async def test_pagerduty_failure_is_stated_atop_the_report_and_counted(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[tools(Call("escalate_pagerduty", {"summary": "db down"})), say("paged")])
    async with running_stack(make_settings, llm) as stack:
        stack.pagerduty.events_default = Scripted(500, headers={"Retry-After": "0"})
        await stack.webhook("generic", generic())
        await stack.idle()
        report = (await stack.client.get("/alerts/generic:inc-1/report")).text
        errors = (await stack.client.get("/ops/errors")).json()["errors"]
        rows = (await stack.client.get("/ops/dependencies")).json()["dependencies"]
    assert report.startswith("> **PagerDuty trigger FAILED** after 6 attempt(s)")
    assert [e["kind"] for e in errors] == ["PagerDutyError"]
    assert {r["name"]: r["status"] for r in rows}["pagerduty"] == "failing"


async def test_running_agent_is_told_of_repeats_and_resolution_at_its_next_turn(
    make_settings: SettingsFactory,
) -> None:
    first_turn = asyncio.Event()
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    llm = FakeLLM(script=[tools(status, hold=first_turn), say("Resolved upstream; done.")])
    async with running_stack(make_settings, llm) as stack:
        await stack.webhook("generic", generic())
        await llm.wait_for_requests(1)
        repeat = await stack.webhook("generic", generic(summary="Error rate above 9%"))
        resolved = await stack.webhook("generic", generic(state="resolved"))
        first_turn.set()
        await stack.idle()
    assert repeat.json()["alerts"][0]["status"] == "deduplicated"
    assert resolved.json()["alerts"][0]["reason"] == "running"
    update = llm.requests[1]["messages"][-1]
    assert update["role"] == "user"
    assert "PLATFORM_UPDATE" in update["content"]
    assert "1 repeat notification(s) arrived; latest: Error rate above 9%" in update["content"]
    assert "reports this incident as resolved" in update["content"]


async def test_spent_hourly_budget_escalates_new_alerts_without_diagnosis(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[say("done", prompt_tokens=150, completion_tokens=10)])
    async with running_stack(make_settings, llm, max_tokens_per_hour=100) as stack:
        await stack.webhook("generic", generic("first"))
        await stack.idle()
        second = await stack.webhook("generic", generic("second"))
        await stack.idle()
    assert second.json()["alerts"][0]["status"] == "escalated"
    assert second.json()["alerts"][0]["reason"] == "hourly_token_budget"
    assert len(llm.requests) == 1  # the second alert never reached the model
    assert stack.pagerduty.event_actions() == ["trigger"]


async def test_separate_webhook_token_guards_webhooks_only(make_settings: SettingsFactory) -> None:
    async with running_stack(
        make_settings, FakeLLM(), webhook_auth_token="hook-secret-42"
    ) as stack:
        with_ops_token = await stack.webhook("generic", generic())
        with_hook_token = await stack.client.post(
            "/webhook/generic", json=generic(), params={"auth_token": "hook-secret-42"}
        )
        alerts_with_hook_token = await stack.client.get(
            "/alerts", headers={"Authorization": "Bearer hook-secret-42"}
        )
        await stack.idle()
    assert with_ops_token.status_code == 401
    assert with_hook_token.status_code == 202
    assert alerts_with_hook_token.status_code == 401
