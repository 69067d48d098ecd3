"""Telemetry end to end: one alert through the real app, exported over OTLP/HTTP to a local
receiver. This is the only test that installs the process-wide OpenTelemetry providers."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from demo.simulators.llm import Call, FakeLLM, say, tools
from demo.simulators.server import serve
from tests.conftest import SettingsFactory
from tests.fakes.otlp import OtlpReceiver
from tests.fakes.stack import running_stack

CHAIN = [
    "sre_agent.tool.call_ops_endpoint",
    "sre_agent.tool.execute",
    "sre_agent.agent.turn",
    "sre_agent.process_alert",
]


def all_spans(receiver: OtlpReceiver) -> list[Span]:
    return [
        span
        for request in receiver.traces
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def ancestors(span: Span, by_id: dict[bytes, Span]) -> list[str]:
    names = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        names.append(span.name)
    return names


async def test_one_alert_exports_the_span_tree_metrics_and_exact_token_usage(
    make_settings: SettingsFactory,
) -> None:
    receiver = OtlpReceiver()
    status = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
    llm = FakeLLM(script=[tools(status, prompt_tokens=321), say("fine", completion_tokens=7)])
    metrics: dict[str, Any] = {}
    async with serve(receiver.app) as otlp_url:  # noqa: SIM117 - outlives the flush
        # Leaving the stack runs the lifespan shutdown, which flushes every exporter.
        async with running_stack(make_settings, llm, otel_exporter_otlp_endpoint=otlp_url) as stack:
            body = {"incident_id": "t-1", "summary": "slow", "service": "worker"}
            response = await stack.webhook("generic", body)
            await stack.idle()
            metrics = (await stack.client.get("/ops/metrics")).json()
    spans = all_spans(receiver)
    by_id = {span.span_id: span for span in spans}
    client_spans = [
        s for s in spans if s.kind == Span.SPAN_KIND_CLIENT and CHAIN[0] in ancestors(s, by_id)
    ]
    assert client_spans, sorted(receiver.span_names())
    chain = ancestors(client_spans[0], by_id)
    assert chain[: len(CHAIN)] == CHAIN
    webhook_server = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER and "/webhook" in s.name]
    assert webhook_server, "FastAPI server span missing"
    assert client_spans[0].trace_id == webhook_server[0].trace_id  # one trace, webhook to tool
    assert response.status_code == 202
    expected_metrics = {
        "sre_agent.webhooks.received",
        "sre_agent.webhooks.processed",
        "sre_agent.agent.runs.completed",
        "sre_agent.agent.run.duration",
        "sre_agent.intake.queued",
        "sre_agent.intake.queue_depth",  # observed from intake when exported
        "sre_agent.incidents.active",
        "sre_agent.tokens.input",
        "sre_agent.tokens.output",
        "sre_agent.tokens.per_run",
    }
    assert expected_metrics <= receiver.metric_names()
    tokens = metrics["token_usage"]
    assert tokens["input"] == llm.usage_served["prompt_tokens"] == 321 + 100
    assert tokens["output"] == llm.usage_served["completion_tokens"] == 20 + 7
    assert tokens["total"] == llm.total_tokens
