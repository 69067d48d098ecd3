"""The agent's bounds on the model's output, end to end over real HTTP (CONTRACT §2, §4):
1,000 tool calls in one answer, a 5 MB answer, answers and arguments nested too deeply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from demo.simulators.llm import Call, FakeLLM, deep_answer, say, tools, verbatim
from tests.conftest import SettingsFactory
from tests.fakes.stack import Stack, running_stack

NOT_RUN = "not run: a message may make at most 16 tool calls (MAX_TOOL_CALLS_PER_TURN)"


def generic(incident: str) -> dict[str, object]:
    return {"incident_id": incident, "summary": "Error rate above 5%", "service": "worker"}


def probe(index: int) -> Call:
    """Distinct reads: identical ones would be answered from the run's read cache."""
    return Call("call_ops_endpoint", {"service": "worker", "endpoint": f"/ops/probe-{index}"})


async def run_alert(stack: Stack, incident: str) -> dict[str, Any]:
    response = await stack.webhook("generic", generic(incident))
    assert response.status_code == 202
    await stack.idle()
    detail: dict[str, Any] = (await stack.client.get(f"/alerts/generic:{incident}")).json()
    return detail


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def log_lines(capsys: Any) -> list[str]:
    out: str = capsys.readouterr().out
    return [line for line in out.splitlines() if line.startswith("{")]


async def test_a_thousand_tool_calls_run_at_most_sixteen_and_the_next_alert_still_pages(
    make_settings: SettingsFactory,
) -> None:
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    llm = FakeLLM(
        script=[
            tools(*map(probe, range(1000))),
            say("Probed what I could; the worker is fine."),
            tools(status, Call("escalate_pagerduty", {"summary": "worker needs a human"})),
            say("Worker status checked; escalated."),
        ]
    )
    async with running_stack(make_settings, llm) as stack:
        first = await run_alert(stack, "flood-1")
        probes = stack.services["worker"].paths()
        answered = tool_messages(llm.requests[1])
        second = await run_alert(stack, "after-1")
        after = stack.services["worker"].paths()[len(probes) :]
    assert len(probes) <= 16
    assert sorted(probes) == sorted(f"/ops/probe-{i}" for i in range(16))
    assert [m["tool_call_id"] for m in answered] == [f"call_0_{i}" for i in range(1000)]
    assert all(NOT_RUN in m["content"] for m in answered[16:])
    assert not any(NOT_RUN in m["content"] for m in answered[:16])
    assert first["status"] == "resolved"
    assert len(first["tool_calls"]) == 1000
    assert all(c["error"].startswith("not run") for c in first["tool_calls"][16:])
    assert second["status"] == "escalated"
    calls = [(c["name"], c["ok"]) for c in second["tool_calls"]]
    assert calls == [("call_ops_endpoint", True), ("escalate_pagerduty", True)]
    assert after == ["/ops/status"]
    # the clients survived the flood's cancellations: the page went out
    assert [e.json["dedup_key"] for e in stack.pagerduty.events] == ["generic:after-1"]


async def test_a_five_megabyte_answer_gives_a_bounded_report_file_and_log_line(
    make_settings: SettingsFactory, capsys: Any
) -> None:
    llm = FakeLLM(script=[say("x" * 5_000_000)])
    async with running_stack(make_settings, llm) as stack:
        detail = await run_alert(stack, "huge-1")
        report_file = stack.settings.incidents_dir / detail["report_file"]
    lines = log_lines(capsys)
    (logged,) = [json.loads(line) for line in lines if '"INCIDENT_REPORT"' in line]
    assert detail["status"] == "resolved"
    assert report_file.stat().st_size < 300_000
    assert "…[truncated " in report_file.read_text(encoding="utf-8")
    assert len(logged["report"]) < 300_000
    assert "## Token Usage" in logged["report"]
    assert max(map(len, lines)) < 300_000  # no other line carries the whole answer either


async def test_a_report_tool_call_over_the_argument_bound_is_refused_and_the_run_goes_on(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(
        script=[
            tools(Call("write_incident_report", {"content": "r" * 5_000_000})),
            say("Report too long; summarised here instead."),
        ]
    )
    async with running_stack(make_settings, llm) as stack:
        detail = await run_alert(stack, "huge-2")
        report = (await stack.client.get("/alerts/generic:huge-2/report")).text
    (answered,) = tool_messages(llm.requests[1])
    assert "at most 65536 are accepted" in answered["content"]
    assert detail["status"] == "resolved"
    assert report.startswith("Report too long")
    assert len(json.dumps(llm.requests[1])) < 100_000  # the 5 MB is not sent back


async def test_an_answer_nested_100000_levels_is_answered_and_the_run_goes_on(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(script=[verbatim(deep_answer(100_000)), say("Recovered; the worker is fine.")])
    async with running_stack(make_settings, llm) as stack:
        detail = await run_alert(stack, "deep-1")
        report = (await stack.client.get("/alerts/generic:deep-1/report")).text
    told = llm.requests[1]["messages"][-1]
    assert told["role"] == "user"
    assert "nested deeper than 64 levels" in json.loads(told["content"])["error"]
    assert detail["status"] == "resolved"
    assert report.startswith("Recovered")


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_tool_arguments_nested_too_deeply_are_an_error_result(
    make_settings: SettingsFactory, depth: int
) -> None:
    body = "[" * depth + "]" * depth
    arguments = '{"service": "worker", "endpoint": "/ops/restart", "method": "POST", "body": '
    llm = FakeLLM(
        script=[tools(Call("call_ops_endpoint", arguments + body + "}")), say("Did nothing.")]
    )
    async with running_stack(make_settings, llm) as stack:
        detail = await run_alert(stack, "deep-2")
        reached = stack.services["worker"].requests
    (answered,) = tool_messages(llm.requests[1])
    assert detail["status"] == "resolved"
    assert reached == []
    expected = (
        "are nested deeper than 64 levels"
        if depth < 1000
        else "characters long; at most 65536 are accepted"
    )
    assert expected in answered["content"]
    assert detail["tool_calls"][0]["ok"] is False
