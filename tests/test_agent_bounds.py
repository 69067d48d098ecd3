"""The agent loop's bounds on what the model sends (CONTRACT §2 MAX_TOOL_CALLS_PER_TURN, §4).

A real `Agent`, `LLM` and `ToolExecutor`; the LLM API and the monitored services
are `httpx.MockTransport`s, so every byte the model "sends" goes through the real parsing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from agent import LLM, Agent, ReportWriter
from agent.completion import TOO_DEEP
from agent.loop import MAX_PARALLEL_TOOLS
from config import Settings
from demo.simulators.llm import deep_answer
from intake import AlertRecord
from models import AlertStatus
from tests.conftest import SettingsFactory
from tests.fakes.contexts import run_context
from tools import PagerDutyClient, Redactor, ToolExecutor
from tools.executor import MAX_ARGUMENT_CHARS

Answer = dict[str, Any] | bytes
HOLD_YIELDS = 100  # event-loop passes a call stays in flight: far more than a call needs to start


def text(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def calls(*arguments: str, name: str = "call_ops_endpoint") -> dict[str, Any]:
    tool_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": a}}
        for i, a in enumerate(arguments)
    ]
    return {
        "choices": [{"message": {"role": "assistant", "content": None, "tool_calls": tool_calls}}]
    }


def probe(index: int) -> str:
    """Distinct reads: identical ones would be answered from the run's read cache."""
    return json.dumps({"service": "worker", "endpoint": f"/ops/probe-{index}"})


@dataclass
class Model:
    """The LLM API: answers each request with the next scripted body, then plain text."""

    answers: list[Answer]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        answer = self.answers.pop(0) if self.answers else text("Done.")
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        return httpx.Response(200, json=answer)

    def messages(self, request: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.requests[request]["messages"]
        return messages


@dataclass
class Services:
    """The monitored services: count the calls and how many ran at once.

    Each call waits until `crowd` calls are in flight together, so a loop without a bound
    on parallelism would show all its calls in flight at once.
    """

    crowd: int
    paths: list[str] = field(default_factory=list)
    in_flight: int = 0
    most: int = 0
    together: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.crowd:
            self.together.set()
        await self.together.wait()
        for _ in range(HOLD_YIELDS):  # stay in flight while the loop runs every other task
            await asyncio.sleep(0)
        self.in_flight -= 1
        return httpx.Response(200, json={"path": request.url.path})


@dataclass
class World:
    model: Model
    services: Services
    agent: Agent
    settings: Settings

    async def run(self) -> tuple[AlertStatus, AlertRecord]:
        record = AlertRecord(run_context().alert, trace_id="t-1", enqueued_at=0.0, seq=1)
        status = await self.agent(record)
        return status, record


@pytest.fixture
async def world_of(make_settings: SettingsFactory) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def build(*answers: Answer, crowd: int = 1, **overrides: Any) -> World:
        settings = make_settings(**overrides)
        model, services = Model(list(answers)), Services(crowd)
        llm_http = httpx.AsyncClient(transport=httpx.MockTransport(model))
        http = httpx.AsyncClient(transport=httpx.MockTransport(services))
        clients.extend((llm_http, http))
        redactor = Redactor(settings.secret_values())
        pagerduty = PagerDutyClient(http=http, settings=settings)
        client = openai.AsyncOpenAI(
            base_url="http://llm.test/v1", api_key="k", http_client=llm_http, max_retries=0
        )
        agent = Agent(
            llm=LLM(client=client, model="m"),
            tools=ToolExecutor(http=http, settings=settings, pagerduty=pagerduty),
            reports=ReportWriter(directory=settings.incidents_dir, redactor=redactor),
            settings=settings,
            redactor=redactor,
        )
        return World(model, services, agent, settings)

    yield build
    for client in clients:
        await client.aclose()


def tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["role"] == "tool"]


# --- MAX_TOOL_CALLS_PER_TURN and the parallelism bound ---------------------------------------


async def test_calls_beyond_the_per_turn_limit_are_not_run_and_each_gets_an_error(
    world_of: Any,
) -> None:
    world = world_of(calls(*map(probe, range(40))), text("Resolved."), crowd=MAX_PARALLEL_TOOLS)
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    assert world.services.paths == [f"/ops/probe-{i}" for i in range(16)]
    answered = tool_messages(world.model.messages(1))
    assert [m["tool_call_id"] for m in answered] == [f"c{i}" for i in range(40)]
    assert all(f"/ops/probe-{i}" in m["content"] for i, m in enumerate(answered[:16]))
    assert all(
        "not run: a message may make at most 16 tool calls" in m["content"] for m in answered[16:]
    )
    entries = record.tool_calls
    assert len(entries) == 40
    assert all(e.ok for e in entries[:16])
    assert all(not e.ok and e.error and e.error.startswith("not run") for e in entries[16:])
    assert [e.arguments["endpoint"] for e in entries] == [f"/ops/probe-{i}" for i in range(40)]


async def test_the_per_turn_limit_comes_from_the_settings(world_of: Any) -> None:
    world = world_of(calls(*map(probe, range(5))), max_tool_calls_per_turn=2)
    _, record = await world.run()
    assert world.services.paths == ["/ops/probe-0", "/ops/probe-1"]
    assert [e.ok for e in record.tool_calls] == [True, True, False, False, False]


async def test_at_most_eight_calls_of_one_message_run_at_once(world_of: Any) -> None:
    world = world_of(calls(*map(probe, range(16))), crowd=MAX_PARALLEL_TOOLS)
    await world.run()
    assert MAX_PARALLEL_TOOLS == 8
    assert world.services.most == MAX_PARALLEL_TOOLS
    assert len(world.services.paths) == 16


# --- nesting ---------------------------------------------------------------------------------


async def test_answer_too_deep_to_decode_is_told_to_the_model_and_the_turn_counts(
    world_of: Any,
) -> None:
    world = world_of(deep_answer(100_000), text("Recovered: the service is healthy."))
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    assert record.turns == 2
    last = world.model.messages(1)[-1]
    assert last == {"role": "user", "content": json.dumps({"error": TOO_DEEP.reason})}


async def test_answer_nested_past_64_levels_but_decodable_is_refused_the_same_way(
    world_of: Any,
) -> None:
    world = world_of(deep_answer(200), text("Fine."))
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    assert record.turns == 2
    assert "nested deeper than 64 levels" in world.model.messages(1)[-1]["content"]


async def test_unreadable_answer_on_the_last_turn_ends_the_run_on_max_turns(
    world_of: Any,
) -> None:
    world = world_of(deep_answer(100_000), agent_max_turns=1)
    _, record = await world.run()
    assert len(world.model.requests) == 1
    assert record.turns == 1
    assert record.reason == "max_turns"


@pytest.mark.parametrize("depth", [100, 30_000])
async def test_deeply_nested_tool_arguments_are_an_error_result_not_a_failed_run(
    world_of: Any, depth: int
) -> None:
    arguments = '{"service": "worker", "endpoint": "status", "body": ' + "[" * depth + "]" * depth
    world = world_of(calls(arguments + "}"), text("Done."))
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    assert world.services.paths == []
    (answered,) = tool_messages(world.model.messages(1))
    assert "arguments for call_ops_endpoint are nested deeper than 64 levels" in answered["content"]
    (entry,) = record.tool_calls
    assert not entry.ok
    assert isinstance(entry.arguments, str)  # kept as text, never decoded past the bound
    assert len(entry.arguments) <= 4096


# --- text and argument sizes -----------------------------------------------------------------


async def test_oversized_arguments_are_refused_and_not_echoed_back(world_of: Any) -> None:
    arguments = json.dumps({"service": "worker", "endpoint": "status", "pad": "p" * 200_000})
    world = world_of(calls(arguments), text("Done."))
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    assert world.services.paths == []
    history = world.model.messages(1)
    (echoed,) = [m for m in history if m["role"] == "assistant"][0]["tool_calls"]
    omitted = json.loads(echoed["function"]["arguments"])
    note = f"{len(arguments)} characters of arguments, over the limit of {MAX_ARGUMENT_CHARS}"
    assert omitted == {"omitted": note}
    assert f"at most {MAX_ARGUMENT_CHARS} are accepted" in tool_messages(history)[0]["content"]
    assert len(json.dumps(world.model.requests[1])) < 20_000


async def test_model_text_in_the_history_and_the_report_is_capped(world_of: Any) -> None:
    world = world_of(text("z" * 5_000_000))
    status, record = await world.run()
    assert status is AlertStatus.RESOLVED
    report = (world.settings.incidents_dir / record.report_file).read_text(encoding="utf-8")
    assert len(report) < 256 * 1024
    assert "…[truncated " in report
    assert "## Token Usage" in report  # the runtime's own sections survive the model's text
