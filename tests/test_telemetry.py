"""Telemetry: RuntimeState moves the §7 instruments, OTLP export works, logs carry span ids.

Providers are injected (never set globally), so tests stay independent of OTel's
set-once global providers.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from demo.simulators.server import serve
from state import RuntimeState
from telemetry import (
    ALL_METRICS,
    METRIC_INCIDENTS_ACTIVE,
    METRIC_INTAKE_QUEUE_DEPTH,
    METRIC_RUN_DURATION,
    METRIC_RUNS_COMPLETED,
    METRIC_RUNS_FAILED,
    METRIC_TOKENS_INPUT,
    METRIC_TOKENS_OUTPUT,
    METRIC_TOKENS_PER_RUN,
    METRIC_WEBHOOKS_RECEIVED,
    SPAN_PROCESS_ALERT,
    json_handler,
    setup_telemetry,
    trace_id_var,
)
from tests.fakes.otlp import OtlpReceiver


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def state(reader: InMemoryMetricReader) -> Iterator[RuntimeState]:
    provider = MeterProvider(metric_readers=[reader])
    yield RuntimeState(meter=provider.get_meter("test"))
    provider.shutdown()


def readings(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name -> summed value (sums) or (count, sum) (histograms)."""
    data = reader.get_metrics_data()
    result: dict[str, Any] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if hasattr(points[0], "bucket_counts"):
                    result[metric.name] = (sum(p.count for p in points), sum(p.sum for p in points))
                else:
                    result[metric.name] = sum(p.value for p in points)
    return result


# ---------------------------------------------------------------- instruments


@pytest.mark.parametrize("outcome", ["received", "processed", "ignored", "failed"])
def test_record_webhook_moves_its_counter(
    state: RuntimeState, reader: InMemoryMetricReader, outcome: str
) -> None:
    state.record_webhook(outcome, 2)
    assert readings(reader) == {f"sre_agent.webhooks.{outcome}": 2}


@pytest.mark.parametrize("event", ["queued", "deduplicated", "expired"])
def test_record_intake_moves_its_counter(
    state: RuntimeState, reader: InMemoryMetricReader, event: str
) -> None:
    state.record_intake(event)
    assert readings(reader) == {f"sre_agent.intake.{event}": 1}


def test_record_run_moves_run_counters_and_histograms(
    state: RuntimeState, reader: InMemoryMetricReader
) -> None:
    state.record_run(ok=True, duration_s=12.0, tokens=4_000)
    state.record_run(ok=False, duration_s=3.0, tokens=1_000)
    values = readings(reader)
    assert values[METRIC_RUNS_COMPLETED] == 1
    assert values[METRIC_RUNS_FAILED] == 1
    assert values[METRIC_RUN_DURATION] == (2, 15.0)
    assert values[METRIC_TOKENS_PER_RUN] == (2, 5_000)


def test_record_tokens_moves_input_and_output(
    state: RuntimeState, reader: InMemoryMetricReader
) -> None:
    state.record_tokens(input_tokens=300, output_tokens=40)
    state.record_tokens(input_tokens=200, output_tokens=10)
    assert readings(reader) == {METRIC_TOKENS_INPUT: 500, METRIC_TOKENS_OUTPUT: 50}


def test_active_gauges_read_the_watched_source_when_collected(
    state: RuntimeState, reader: InMemoryMetricReader
) -> None:
    assert readings(reader) == {}  # nothing to report before intake exists
    counts = [(3, 10)]
    state.watch_active(lambda: counts[-1])
    assert readings(reader) == {METRIC_INCIDENTS_ACTIVE: 3, METRIC_INTAKE_QUEUE_DEPTH: 10}
    counts.append((1, 4))
    assert readings(reader) == {METRIC_INCIDENTS_ACTIVE: 1, METRIC_INTAKE_QUEUE_DEPTH: 4}


def test_record_request_touches_no_instrument(
    state: RuntimeState, reader: InMemoryMetricReader
) -> None:
    state.record_request(route="/health", status=200, duration_s=0.001)
    assert readings(reader) == {}


def test_instrument_names_are_the_contract_vocabulary() -> None:
    assert len(set(ALL_METRICS)) == 15
    assert all(name.startswith("sre_agent.") for name in ALL_METRICS)


# ---------------------------------------------------------------- setup


def test_without_endpoint_setup_is_a_no_op() -> None:
    handlers = list(logging.getLogger().handlers)
    result = setup_telemetry(otlp_endpoint=None, service_name="sre-agent")
    app = FastAPI()
    client = httpx.AsyncClient()
    result.instrument_app(app)
    result.instrument_httpx(client)
    assert not result.enabled
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert logging.getLogger().handlers == handlers
    result.shutdown()
    result.shutdown()


async def test_spans_metrics_and_logs_reach_an_otlp_receiver() -> None:
    receiver = OtlpReceiver()
    async with serve(receiver.app) as base_url:
        telemetry = setup_telemetry(
            otlp_endpoint=base_url + "/", service_name="sre-agent-test", set_global=False
        )
        assert telemetry.tracer_provider is not None
        assert telemetry.meter_provider is not None
        tracer = telemetry.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span(SPAN_PROCESS_ALERT) as span:
            logging.getLogger("sre_agent.test").warning("inside the span")
        state = RuntimeState(meter=telemetry.meter_provider.get_meter("state"))
        state.record_webhook("received")
        await _request_through_instrumented_app_and_client(telemetry)
        assert len(_log_bridges()) == 1
        await telemetry.aclose()
    assert _log_bridges() == []
    assert telemetry.logger_provider is not None
    assert {SPAN_PROCESS_ALERT, "GET /ping"} <= receiver.span_names()
    assert receiver.service_names() == {"sre-agent-test"}
    assert METRIC_WEBHOOKS_RECEIVED in receiver.metric_names()
    context = span.get_span_context()
    expected = (
        "inside the span",
        context.trace_id.to_bytes(16, "big"),
        context.span_id.to_bytes(8, "big"),
    )
    assert expected in receiver.log_records()


def _log_bridges() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__name__ == "LoggingHandler"]


async def _request_through_instrumented_app_and_client(telemetry: Any) -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    telemetry.instrument_app(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        telemetry.instrument_httpx(client)
        response = await client.get("/ping")
    assert response.json() == {"pong": "yes"}


# ---------------------------------------------------------------- JSON log lines


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("sre_agent.test_json")
    handler = json_handler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_json_logs_carry_our_trace_id_and_the_otel_span(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_lines
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    token = trace_id_var.set("req-123")
    try:
        with provider.get_tracer("test").start_as_current_span("work") as span:
            logger.info("inside")
        logger.info("outside")
    finally:
        trace_id_var.reset(token)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == "req-123"
    assert inside["otel_trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
    assert inside["level"] == "INFO"
    assert "otel_trace_id" not in outside
    assert "span_id" not in outside
