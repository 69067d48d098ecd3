"""Runtime overhead of the agent loop, with an instant LLM and instant tools.

`Agent` is built as in production (main/__init__.py `_build`): an `LLM` around the real
`openai.AsyncOpenAI` and a `ToolExecutor`, both on `httpx.AsyncClient`s, but the clients'
transports are `httpx.MockTransport`s answering at once: so this measures our loop, the
OpenAI SDK (request build, response parse) and the tools' HTTP stack, not any network.

Scenario (demo-like, 10 turns): the model calls `/ops/status`, `/metrics`, `/errors`,
`/health`, `/dependencies`, `/config`, POSTs `/ops/restart`, re-checks `/ops/status`, writes
the report, then concludes. A turn is timed between two consecutive LLM requests (it spans
parsing the completion, running the tool, building the next request, and the mock's own
JSON work); an incident from `agent(record)` to its return (report written).

Prompt size: characters of every chat request's `messages` and `tools` (the whole
conversation and the tool schemas are re-sent each turn), and ~tokens = characters / 4.
Then the same incident with a 60 KB `/ops/metrics` body under TOOL_OUTPUT_MAX_CHARS
2,000 / 8,000 / 100,000.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import openai.resources.chat.completions.completions as sdk_completions

from agent import LLM, Agent, ReportWriter
from bench._common import gcp_payload, met, percentile, settings_values, write_result
from config import Settings, load_settings
from intake import AlertRecord
from intake.parsers import parse_webhook
from models import Alert, AlertStatus, Provider
from tools import PagerDutyClient, Redactor, ToolExecutor

INCIDENTS = 200
WARMUP = 10
TURN_TARGET_MS = 2.0
CAPS = (2_000, 8_000, 100_000)
SERVICE = "checkout"

SCRIPT: list[tuple[str, dict[str, Any]] | None] = [
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/status"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/metrics"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/errors"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/health"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/dependencies"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/config"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/restart", "method": "POST"}),
    ("call_ops_endpoint", {"service": SERVICE, "endpoint": "/ops/status"}),
    ("write_incident_report", {"content": "# Checkout errors\nRestarted; healthy again.\n"}),
    None,  # final answer
]


class TransformTimer:
    """Times the OpenAI SDK's client-side request transform (`async_maybe_transform`, a
    recursive walk of messages + tools against the params' TypedDicts) inside each turn."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = sdk_completions.async_maybe_transform

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def install(self) -> None:
        sdk_completions.async_maybe_transform = self  # type: ignore[assignment]

    def remove(self) -> None:
        sdk_completions.async_maybe_transform = self._original


def small_bodies() -> dict[str, Any]:
    """Plausible /ops/* answers, the size the simulated services of demo/simulators give."""
    return {
        "/ops/status": {"service": SERVICE, "status": "degraded", "error_rate": 0.23},
        "/ops/metrics": {"latency_ms": {"p50": 40, "p95": 800, "p99": 2400}, "error_rate": 0.2},
        "/ops/errors": {"errors": [{"type": "TimeoutError", "count": 57, "last_message": "db"}]},
        "/ops/health": {"status": "degraded", "checks": {"database": {"status": "slow"}}},
        "/ops/dependencies": {"database": {"status": "degraded"}},
        "/ops/config": {"service": SERVICE, "pool_size": 10, "log_level": "INFO"},
    }


def large_metrics() -> dict[str, Any]:
    """~60 KB: per-route latency histograms of a big service."""
    routes = {
        f"/api/v1/resource{i:03d}": {
            "count": 1000 + i,
            "latency_ms": {"p50": 12.5, "p90": 80.25, "p95": 140.5, "p99": 900.75},
            "errors": {"5xx": i % 7, "4xx": i % 11},
        }
        for i in range(400)
    }
    return {"window_seconds": 60, "routes": routes}


@dataclass
class FakeWorld:
    """The MockTransport handlers: a scripted LLM and one service."""

    bodies: dict[str, Any]
    arrivals: list[float] = field(default_factory=list)
    prompt_chars: list[int] = field(default_factory=list)
    # The fakes' own time (JSON work, prompt bookkeeping), as of each LLM arrival: subtracted
    # from a turn to give the runtime's overhead alone.
    fake_seconds: float = 0.0
    fake_at_arrival: list[float] = field(default_factory=list)

    def llm(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        self.arrivals.append(started)
        self.fake_at_arrival.append(self.fake_seconds)
        body = json.loads(request.content)
        messages = body["messages"]
        tools = body.get("tools") or []
        self.prompt_chars.append(len(json.dumps([messages, tools], ensure_ascii=False)))
        turn = sum(m["role"] == "assistant" for m in messages)
        step = SCRIPT[min(turn, len(SCRIPT) - 1)]
        response = httpx.Response(200, json=completion(turn, step))
        self.fake_seconds += time.perf_counter() - started
        return response

    def service(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        if request.method == "POST":
            response = httpx.Response(200, json={"ok": True, "action": request.url.path})
        else:
            body = self.bodies.get(request.url.path, {"error": "none"})
            response = httpx.Response(200, json=body)
        self.fake_seconds += time.perf_counter() - started
        return response


def completion(turn: int, step: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if step is None:
        message["content"] = "Checkout was degraded by DB timeouts; restarted, healthy again."
    else:
        name, arguments = step
        message["tool_calls"] = [
            {
                "id": f"call_{turn}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
    return {
        "id": f"chatcmpl-{turn}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "stop" if step is None else "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050},
    }


def make_settings(workdir: Path, cap: int) -> Settings:
    return load_settings(
        **settings_values(
            registry=f"{SERVICE}|http://{SERVICE}.internal:8080|false",
            incidents_dir=workdir / "incidents",
            llm_api_base_url="http://llm.internal/v1",
            tool_output_max_chars=cap,
        )
    )


def build_agent(settings: Settings, world: FakeWorld) -> tuple[Agent, list[httpx.AsyncClient]]:
    llm_http = httpx.AsyncClient(transport=httpx.MockTransport(world.llm))
    ops_http = httpx.AsyncClient(transport=httpx.MockTransport(world.service))
    redactor = Redactor(settings.secret_values())
    pagerduty = PagerDutyClient(http=ops_http, settings=settings)
    client = openai.AsyncOpenAI(
        base_url=settings.llm_api_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        http_client=llm_http,
        max_retries=0,
    )
    agent = Agent(
        llm=LLM(client=client, model=settings.llm_model),
        tools=ToolExecutor(
            http=ops_http, settings=settings, pagerduty=pagerduty, redactor=redactor
        ),
        reports=ReportWriter(directory=settings.incidents_dir, redactor=redactor),
        settings=settings,
        redactor=redactor,
    )
    return agent, [llm_http, ops_http]


def the_alert(settings: Settings) -> Alert:
    item = parse_webhook(
        Provider.GCP, gcp_payload("0.agentbench", SERVICE), registry=settings.service_registry
    )[0]
    assert isinstance(item, Alert)
    return item


async def one_incident(
    agent: Agent, alert: Alert, world: FakeWorld
) -> tuple[float, list[float], list[float]]:
    """(incident seconds, turn seconds, turn seconds less the fakes' own time) of one run."""
    world.arrivals.clear()
    world.prompt_chars.clear()
    world.fake_at_arrival.clear()
    record = AlertRecord(alert=alert, trace_id="bench-trace", enqueued_at=0.0, seq=1)
    started = time.perf_counter()
    status = await agent(record)
    elapsed = time.perf_counter() - started
    assert status is AlertStatus.RESOLVED, status
    assert record.turns == len(SCRIPT), record.turns
    turns = [b - a for a, b in zip(world.arrivals, world.arrivals[1:], strict=False)]
    fakes = world.fake_at_arrival
    own = [t - (b - a) for t, a, b in zip(turns, fakes, fakes[1:], strict=False)]
    return elapsed, turns, own


async def timing(workdir: Path) -> dict[str, Any]:
    settings = make_settings(workdir, 8_000)
    world = FakeWorld(small_bodies())
    agent, clients = build_agent(settings, world)
    alert = the_alert(settings)
    incidents: list[float] = []
    turns: list[float] = []
    own_turns: list[float] = []
    sdk_share: list[float] = []
    timer = TransformTimer()
    timer.install()
    try:
        for n in range(WARMUP + INCIDENTS):
            timer.seconds = 0.0
            elapsed, turn_times, own_times = await one_incident(agent, alert, world)
            if n >= WARMUP:
                incidents.append(elapsed)
                turns.extend(turn_times)
                own_turns.extend(own_times)
                sdk_share.append(timer.seconds / len(SCRIPT))
    finally:
        timer.remove()
    prompt = sum(world.prompt_chars)
    for client in clients:
        await client.aclose()
    return {
        "incidents": INCIDENTS,
        "turns_per_incident": len(SCRIPT),
        "turn_ms": {"median": ms(statistics.median(turns)), "p99": ms(percentile(turns, 99))},
        "runtime_turn_ms": {
            "median": ms(statistics.median(own_turns)),
            "p99": ms(percentile(own_turns, 99)),
        },
        "sdk_request_transform_ms_per_turn": {"median": ms(statistics.median(sdk_share))},
        "incident_ms": {
            "median": ms(statistics.median(incidents)),
            "p99": ms(percentile(incidents, 99)),
        },
        "prompt_chars_per_incident": prompt,
        "approx_input_tokens_per_incident": prompt // 4,
        "largest_request_chars": max(world.prompt_chars),
    }


async def capping(workdir: Path) -> list[dict[str, Any]]:
    bodies = {**small_bodies(), "/ops/metrics": large_metrics()}
    metrics_chars = len(json.dumps(bodies["/ops/metrics"]))
    rows = []
    for cap in CAPS:
        settings = make_settings(workdir, cap)
        world = FakeWorld(bodies)
        agent, clients = build_agent(settings, world)
        await one_incident(agent, the_alert(settings), world)
        for client in clients:
            await client.aclose()
        total = sum(world.prompt_chars)
        rows.append(
            {
                "tool_output_max_chars": cap,
                "metrics_body_chars": metrics_chars,
                "prompt_chars_per_incident": total,
                "approx_input_tokens_per_incident": total // 4,
                "largest_request_chars": max(world.prompt_chars),
            }
        )
    return rows


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sre-bench-agent-") as tmp:
        workdir = Path(tmp)
        return {"timing": await timing(workdir), "capping": await capping(workdir)}


def main() -> None:
    result = run_and_check()
    timing_result, caps = result["timing"], result["capping"]
    turn, own = timing_result["turn_ms"], timing_result["runtime_turn_ms"]
    path = write_result("agent_overhead", result)
    sizes = ", ".join(
        f"{row['tool_output_max_chars']:,}: ~{row['approx_input_tokens_per_incident']:,} tok"
        for row in caps
    )
    print(
        f"agent_overhead: runtime per turn median {own['median']:.2f} ms p99 {own['p99']:.2f} ms "
        f"({met(own['median'] <= TURN_TARGET_MS)} <= {TURN_TARGET_MS} ms) | with the fakes' own "
        f"work median {turn['median']:.2f} ms p99 {turn['p99']:.2f} ms | 10-turn incident "
        f"median {timing_result['incident_ms']['median']:.1f} ms "
        f"p99 {timing_result['incident_ms']['p99']:.1f} ms | demo-like incident "
        f"~{timing_result['approx_input_tokens_per_incident']:,} input tokens | "
        f"60 KB /ops/metrics by cap {sizes} -> {path.relative_to(path.parents[2])}"
    )


def run_and_check() -> dict[str, Any]:
    result = asyncio.run(run())
    own = result["timing"]["runtime_turn_ms"]["median"]
    result["targets"] = {"runtime turn median <= 2 ms": own <= TURN_TARGET_MS}
    return result


if __name__ == "__main__":
    main()
