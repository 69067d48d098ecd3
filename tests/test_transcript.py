"""The run's transcript (agent/transcript.py): the conversation as sent and as received.

A real `Agent`, `LLM` (the `openai` client) and `ToolExecutor`; the LLM is the scripted fake
of demo/simulators/llm.py and the service a simulated `/ops/*` service, both on loopback, so
what the transcript shows can be compared with what the LLM API actually received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

import models
from agent import LLM, Agent, ReportWriter
from agent.completion import TOO_DEEP, parse_completion
from agent.transcript import Transcript
from config import Settings
from demo.simulators.llm import Call, FakeLLM, deep_answer, fail, say, tools, verbatim
from demo.simulators.ops_service import FakeOpsService, make_ops_service
from demo.simulators.server import serve
from intake import AlertRecord
from models import AlertStatus
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.contexts import run_context
from tools import PagerDutyClient, Redactor, ToolExecutor

# Not a credential the runtime recognizes: it reaches the conversation, and only `redact` hides it.
SECRET = "xyzzy-private-marker"
STATUS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/status"})
METRICS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/metrics"})
CONFIG = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/config"})


def keep(text: str) -> str:
    return text


@dataclass
class World:
    llm: FakeLLM
    service: FakeOpsService
    agent: Agent
    settings: Settings

    async def run(self, *notices: str) -> tuple[AlertStatus, AlertRecord]:
        record = AlertRecord(run_context().alert, trace_id="t-1", enqueued_at=0.0, seq=1)
        for notice in notices:
            record.notify(notice)
        status = await self.agent(record)
        return status, record

    def sent(self, request: int) -> list[dict[str, Any]]:
        """The messages of one request as the fake LLM API received them."""
        messages: list[dict[str, Any]] = self.llm.requests[request]["messages"]
        return messages


def transcript_of(record: AlertRecord) -> Transcript:
    assert record.transcript is not None
    return record.transcript


def view(record: AlertRecord, redact: Callable[[str], str] = keep) -> models.Transcript:
    return transcript_of(record).view(incident_id=record.incident_id, occurrence=1, redact=redact)


def as_sent(turn: models.TranscriptTurn) -> list[dict[str, Any]]:
    """A turn's request messages in their JSON form (as the API serves them)."""
    return [json.loads(json.dumps(m)) for m in turn.request.messages]


@pytest.fixture
async def world_of(make_settings: SettingsFactory) -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as stack:

        async def build(*script: Any, **overrides: Any) -> World:
            llm = FakeLLM(script=list(script))
            app, service = make_ops_service(name="worker", token=TEST_SECRETS["ops_auth_token"])
            llm_url = await stack.enter_async_context(serve(llm.app()))
            service_url = await stack.enter_async_context(serve(app))
            settings = make_settings(
                service_registry=f"worker|{service_url}|false", llm_model="fake-4o", **overrides
            )
            http = await stack.enter_async_context(httpx.AsyncClient())
            client = openai.AsyncOpenAI(
                base_url=llm_url, api_key="k", http_client=http, max_retries=0
            )
            redactor = Redactor(settings.secret_values())
            agent = Agent(
                llm=LLM(client=client, model=settings.llm_model, backoff_base=0.01),
                tools=ToolExecutor(
                    http=http,
                    settings=settings,
                    pagerduty=PagerDutyClient(http=http, settings=settings),
                ),
                reports=ReportWriter(directory=settings.incidents_dir, redactor=redactor),
                settings=settings,
                redactor=redactor,
            )
            return World(llm, service, agent, settings)

        yield build


# --- what was sent ------------------------------------------------------------------------


async def test_turns_are_numbered_and_each_request_is_exactly_what_the_api_received(
    world_of: Any,
) -> None:
    world = await world_of(tools(STATUS), tools(METRICS, CONFIG), say("Worker is degraded."))
    started = datetime.now(UTC)
    status, record = await world.run()
    shown = view(record)
    assert status is AlertStatus.RESOLVED
    assert (shown.incident_id, shown.occurrence, shown.model) == ("generic:inc-42", 1, "fake-4o")
    assert [turn.turn for turn in shown.turns] == [1, 2, 3]
    assert [as_sent(turn) for turn in shown.turns] == [world.sent(i) for i in range(3)]
    times = [turn.at for turn in shown.turns]
    assert times == sorted(times)
    assert started <= times[0]
    assert all(t.tzinfo is UTC for t in times)


async def test_each_request_starts_with_the_system_prompt_and_is_a_prefix_of_the_next(
    world_of: Any,
) -> None:
    world = await world_of(tools(STATUS), tools(METRICS), say("Done."))
    _, record = await world.run()
    turns = view(record).turns
    system = world.settings.sre_prompt_path.read_text(encoding="utf-8")
    for turn, after in zip(turns, turns[1:], strict=False):
        assert turn.request.messages[0] == {"role": "system", "content": system}
        assert after.request.messages[: len(turn.request.messages)] == turn.request.messages
        assert len(after.request.messages) > len(turn.request.messages)


async def test_tools_offered_are_named_each_turn_and_none_on_the_last_allowed_turn(
    world_of: Any,
) -> None:
    world = await world_of(tools(STATUS), tools(METRICS), agent_max_turns=2)
    _, record = await world.run()
    first, last = view(record).turns
    offered = [tool["function"]["name"] for tool in world.llm.requests[0]["tools"]]
    assert first.request.tools == offered
    assert "call_ops_endpoint" in offered
    assert last.request.tools == []
    assert "tools" not in world.llm.requests[1]
    assert [call["function"]["name"] for call in last.response.tool_calls] == ["call_ops_endpoint"]
    assert last.tool_results == []  # called without tools on offer: not run
    assert record.reason == "max_turns"


async def test_notices_and_the_error_for_an_unreadable_answer_are_recorded_as_sent(
    world_of: Any,
) -> None:
    world = await world_of(verbatim(deep_answer(100_000)), say("Recovered."))
    _, record = await world.run("the platform resolved this incident")
    first, second = view(record).turns
    assert "the platform resolved this incident" in first.request.messages[-1]["content"]
    assert first.response == models.TranscriptResponse(content=None, tool_calls=[])
    error = {"role": "user", "content": json.dumps({"error": TOO_DEEP.reason})}
    assert second.request.messages[-1] == error
    assert as_sent(second) == world.sent(1)


# --- what came back -----------------------------------------------------------------------


async def test_tool_results_follow_the_calls_in_order_with_their_ok_flags(
    world_of: Any,
) -> None:
    broken = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/errors"})
    unknown = Call("no_such_tool", {})
    world = await world_of(tools(STATUS, unknown, broken), say("Done."))
    world.service.status_codes["/ops/errors"] = 500
    _, record = await world.run()
    first = view(record).turns[0]
    calls = first.response.tool_calls
    assert [c["function"]["name"] for c in calls] == [
        "call_ops_endpoint",
        "no_such_tool",
        "call_ops_endpoint",
    ]
    assert [r.tool_call_id for r in first.tool_results] == [c["id"] for c in calls]
    assert [r.name for r in first.tool_results] == [c["function"]["name"] for c in calls]
    assert [r.ok for r in first.tool_results] == [True, False, False]
    given_back = [m for m in world.sent(1) if m["role"] == "tool"]
    assert [r.content for r in first.tool_results] == [m["content"] for m in given_back]


async def test_response_is_the_assistant_message_as_the_history_keeps_it(
    world_of: Any,
) -> None:
    world = await world_of(tools(STATUS, text="Checking status."), say("All good."))
    _, record = await world.run()
    first, last = view(record).turns
    echoed = next(m for m in world.sent(1) if m["role"] == "assistant")
    assert first.response.content == "Checking status."
    assert first.response.tool_calls == echoed["tool_calls"]
    assert last.response == models.TranscriptResponse(content="All good.", tool_calls=[])


async def test_usage_per_turn_reads_cached_tokens_when_the_api_reports_them(
    world_of: Any,
) -> None:
    world = await world_of(
        tools(STATUS, prompt_tokens=300, completion_tokens=30, cached_tokens=256),
        say("Done.", prompt_tokens=400, completion_tokens=10),
    )
    _, record = await world.run()
    first, last = view(record).turns
    assert first.usage == models.TranscriptUsage(input=300, output=30, cached=256)
    assert last.usage == models.TranscriptUsage(input=400, output=10, cached=None)


@pytest.mark.parametrize(
    ("details", "cached"),
    [
        ({"cached_tokens": 0}, 0),
        ({"cached_tokens": 1024, "audio_tokens": 0}, 1024),
        ({}, None),
        (None, None),
        ({"cached_tokens": "12"}, None),
        ({"cached_tokens": -1}, None),
        ({"cached_tokens": True}, None),
        ([1], None),
    ],
)
def test_cached_tokens_are_read_leniently(details: Any, cached: int | None) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": details}
    parsed = parse_completion({"choices": [], "usage": usage}).usage
    assert parsed is not None
    assert parsed.cached_tokens == cached


# --- redaction ----------------------------------------------------------------------------


async def test_redact_applies_to_every_string_and_leaves_the_record_as_sent(
    world_of: Any,
) -> None:
    leaky = Call("call_ops_endpoint", {"service": "worker", "endpoint": f"/ops/config?k={SECRET}"})
    world = await world_of(tools(CONFIG, leaky), say(f"The note says {SECRET}."))
    world.service.bodies["/ops/config"] = {"owner_note": SECRET}
    _, record = await world.run()
    assert any(SECRET in r["content"] for r in world.sent(1) if r["role"] == "tool")

    shown = view(record, redact=lambda text: text.replace(SECRET, "[gone]"))
    assert SECRET not in shown.model_dump_json()
    first, last = shown.turns
    assert "[gone]" in first.tool_results[0].content
    assert "[gone]" in first.response.tool_calls[1]["function"]["arguments"]
    assert last.response.content == "The note says [gone]."
    assert any("[gone]" in str(m.get("content")) for m in last.request.messages)
    # The recorder keeps the conversation as sent: a view never changes it.
    assert SECRET in view(record).model_dump_json()
    assert as_sent(view(record).turns[-1]) == world.sent(1)


# --- runs cut short -----------------------------------------------------------------------


async def test_a_run_cut_by_its_timeout_keeps_the_turn_it_sent(world_of: Any) -> None:
    hold = asyncio.Event()
    world = await world_of(tools(STATUS), say("late", hold=hold), agent_timeout_seconds=0.5)
    try:
        status, record = await world.run()
    finally:
        hold.set()
    assert status is AlertStatus.ESCALATED
    assert record.reason == "timeout"
    first, cut = view(record).turns
    assert cut.turn == 2
    assert as_sent(cut) == world.sent(1)
    assert cut.request.tools == first.request.tools
    assert cut.response == models.TranscriptResponse(content=None, tool_calls=[])
    assert cut.usage == models.TranscriptUsage(input=0, output=0, cached=None)
    assert cut.tool_results == []


async def test_a_turn_whose_completion_failed_keeps_what_was_sent(world_of: Any) -> None:
    world = await world_of(tools(STATUS), fail(400, "invalid_request_error"))
    status, record = await world.run()
    assert status is AlertStatus.ESCALATED
    assert record.reason == "llm_error: invalid_request_error"
    first, failed = view(record).turns
    assert as_sent(failed) == world.sent(1)
    assert failed.response == models.TranscriptResponse(content=None, tool_calls=[])
    assert [r.ok for r in first.tool_results] == [True]


async def test_the_conversation_is_stored_once_and_turns_refer_into_it(world_of: Any) -> None:
    world = await world_of(tools(STATUS), tools(METRICS), say("Done."))
    _, record = await world.run()
    transcript = transcript_of(record)
    assert transcript.messages[:-1] == world.sent(2)  # and the final answer
    for turn in transcript.turns:
        assert turn.reply is transcript.messages[turn.sent]
        assert all(
            result is transcript.messages[turn.sent + 1 + index]
            for index, result in enumerate(turn.results)
        )
