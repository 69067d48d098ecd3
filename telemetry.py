"""Logs and telemetry: JSON log lines carrying the trace and incident of the work at hand.

`trace_id_var` and `incident_id_var` are set by whoever starts a unit of work (the HTTP
middleware, the intake worker) and read by the log filter, so every line carries them.

OpenTelemetry: `setup_telemetry()` installs the SDK (traces, metrics, logs over OTLP/HTTP)
only when an OTLP endpoint is configured; otherwise it returns a no-op `Telemetry` and the
OTel API stays on its built-in no-op proxies, so instrumented code costs nothing. The names
of every span and instrument live here (CONTRACT §7), so there is one vocabulary.

Trace ids in log lines: `trace_id` stays *our* X-Trace-Id (the id operators grep for and that
reports carry); when an OTel span is active the line also gets `otel_trace_id` (32 hex) and
`span_id` (16 hex), so logs join traces in the backend without changing what `trace_id` means.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO

import httpx
from fastapi import FastAPI
from opentelemetry import _logs, metrics, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    ObservableUpDownCounter,
    Observation,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pythonjsonlogger.json import JsonFormatter

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
incident_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "incident_id", default=None
)

APP_LOGGERS = ("sre_agent", "main", "intake", "agent", "tools", "state", "telemetry", "config")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "sre-agent-json"

logger = logging.getLogger(__name__)


class ContextFilter(logging.Filter):
    """Stamp `trace_id`, `incident_id` and, inside an OTel span, `otel_trace_id`/`span_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI twin of `message`
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id_var.get()
        if getattr(record, "incident_id", None) is None:
            record.incident_id = incident_id_var.get()
        context = trace.get_current_span().get_span_context()
        if context.is_valid and getattr(record, "span_id", None) is None:
            record.otel_trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


# Webhook tokens travel in query strings (`?auth_token=`) and headers; access logs print both.
# Not a bare `token=`: SNS's SubscribeURL carries one the operator needs in order to confirm.
_CREDENTIALS = re.compile(
    r"((?:auth_token|api_key|apikey)=)[^&\s\"']+|(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)
REDACTED = "[REDACTED]"


class RedactFilter(logging.Filter):
    """Remove credentials from every log message: token query parameters, bearer/basic
    credentials, and the exact configured secrets (uvicorn's access log included)."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _CREDENTIALS.sub(_keep_prefix, message)
        for secret in self._secrets:
            cleaned = cleaned.replace(secret, REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _keep_prefix(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + REDACTED


def json_handler(stream: IO[str] | None = None, secrets: Sequence[str] = ()) -> logging.Handler:
    """A handler writing one JSON object per line (stdout unless `stream` is given)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.addFilter(RedactFilter(secrets))
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            timestamp=False,
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    return handler


def configure_logging(level: str, secrets: Sequence[str] = ()) -> None:
    """One JSON object per line on stdout: timestamp, level, message, trace_id, incident_id.

    Replaces the handler a previous call installed (others, e.g. a test runner's, stay) and
    routes uvicorn's own loggers, access log included, through the same redacting handler.
    """
    root = logging.getLogger()
    handler = json_handler(secrets=secrets)
    handler.set_name(_HANDLER_NAME)
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    set_log_level(level)


def set_log_level(level: str) -> None:
    """Change the root and the application's loggers at once (used by POST /ops/loglevel)."""
    logging.getLogger().setLevel(level)
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(level)


# One vocabulary for span and instrument names (CONTRACT §7).
SPAN_PROCESS_ALERT = "sre_agent.process_alert"
SPAN_AGENT_TURN = "sre_agent.agent.turn"
SPAN_TOOL_EXECUTE = "sre_agent.tool.execute"
SPAN_TOOL_CALL_OPS = "sre_agent.tool.call_ops_endpoint"
SPAN_TOOL_SCALE = "sre_agent.tool.scale_service"

METRIC_WEBHOOKS_RECEIVED = "sre_agent.webhooks.received"
METRIC_WEBHOOKS_PROCESSED = "sre_agent.webhooks.processed"
METRIC_WEBHOOKS_IGNORED = "sre_agent.webhooks.ignored"
METRIC_WEBHOOKS_FAILED = "sre_agent.webhooks.failed"
METRIC_RUNS_COMPLETED = "sre_agent.agent.runs.completed"
METRIC_RUNS_FAILED = "sre_agent.agent.runs.failed"
METRIC_RUN_DURATION = "sre_agent.agent.run.duration"
METRIC_INCIDENTS_ACTIVE = "sre_agent.incidents.active"
METRIC_INTAKE_DEDUPLICATED = "sre_agent.intake.deduplicated"
METRIC_INTAKE_QUEUED = "sre_agent.intake.queued"
METRIC_INTAKE_EXPIRED = "sre_agent.intake.expired"
METRIC_INTAKE_QUEUE_DEPTH = "sre_agent.intake.queue_depth"
METRIC_TOKENS_INPUT = "sre_agent.tokens.input"
METRIC_TOKENS_OUTPUT = "sre_agent.tokens.output"
METRIC_TOKENS_PER_RUN = "sre_agent.tokens.per_run"

ALL_METRICS = (
    METRIC_WEBHOOKS_RECEIVED,
    METRIC_WEBHOOKS_PROCESSED,
    METRIC_WEBHOOKS_IGNORED,
    METRIC_WEBHOOKS_FAILED,
    METRIC_RUNS_COMPLETED,
    METRIC_RUNS_FAILED,
    METRIC_RUN_DURATION,
    METRIC_INCIDENTS_ACTIVE,
    METRIC_INTAKE_DEDUPLICATED,
    METRIC_INTAKE_QUEUED,
    METRIC_INTAKE_EXPIRED,
    METRIC_INTAKE_QUEUE_DEPTH,
    METRIC_TOKENS_INPUT,
    METRIC_TOKENS_OUTPUT,
    METRIC_TOKENS_PER_RUN,
)


WEBHOOK_METRICS = {
    "received": METRIC_WEBHOOKS_RECEIVED,
    "processed": METRIC_WEBHOOKS_PROCESSED,
    "ignored": METRIC_WEBHOOKS_IGNORED,
    "failed": METRIC_WEBHOOKS_FAILED,
}
INTAKE_METRICS = {
    "queued": METRIC_INTAKE_QUEUED,
    "deduplicated": METRIC_INTAKE_DEDUPLICATED,
    "expired": METRIC_INTAKE_EXPIRED,
}


@dataclass(slots=True)
class Instruments:
    """The CONTRACT §7 instruments on one meter; `state.RuntimeState` moves them.

    `incidents.active` and `intake.queue_depth` are observed: `active()` returns the current
    (running, queued), or None before intake exists, when the reader collects, so keeping
    them exact costs intake nothing per alert.
    """

    webhooks: dict[str, Counter]
    intake: dict[str, Counter]
    runs_completed: Counter
    runs_failed: Counter
    run_duration: Histogram
    incidents_active: ObservableUpDownCounter
    queue_depth: ObservableUpDownCounter
    tokens_input: Counter
    tokens_output: Counter
    tokens_per_run: Histogram

    @classmethod
    def create(
        cls, meter: Meter, *, active: Callable[[], tuple[int, int] | None] = lambda: None
    ) -> Instruments:
        def observe(index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(_options: CallbackOptions) -> Iterable[Observation]:
                counts = active()
                return [] if counts is None else [Observation(counts[index])]

            return callback

        return cls(
            webhooks={k: meter.create_counter(n) for k, n in WEBHOOK_METRICS.items()},
            intake={k: meter.create_counter(n) for k, n in INTAKE_METRICS.items()},
            runs_completed=meter.create_counter(METRIC_RUNS_COMPLETED),
            runs_failed=meter.create_counter(METRIC_RUNS_FAILED),
            run_duration=meter.create_histogram(METRIC_RUN_DURATION, unit="s"),
            incidents_active=meter.create_observable_up_down_counter(
                METRIC_INCIDENTS_ACTIVE, callbacks=[observe(0)]
            ),
            queue_depth=meter.create_observable_up_down_counter(
                METRIC_INTAKE_QUEUE_DEPTH, callbacks=[observe(1)]
            ),
            tokens_input=meter.create_counter(METRIC_TOKENS_INPUT, unit="{token}"),
            tokens_output=meter.create_counter(METRIC_TOKENS_OUTPUT, unit="{token}"),
            tokens_per_run=meter.create_histogram(METRIC_TOKENS_PER_RUN, unit="{token}"),
        )


FLUSH_TIMEOUT_MILLIS = 5_000


class Telemetry:
    """The installed OTel SDK providers, or none at all (the no-op default).

    Built by `setup_telemetry()`. `shutdown()` (or `await aclose()`, which runs it off the
    event loop because the exporters block) flushes and closes everything it installed.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        log_handler: logging.Handler | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider
        self._log_handler = log_handler
        self._apps: list[FastAPI] = []
        self._clients: list[httpx.AsyncClient] = []
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None

    def instrument_app(self, app: FastAPI) -> None:
        """FastAPI server spans and metrics; does nothing when telemetry is off.

        Safe to call from the lifespan: the lifespan already runs inside the middleware stack
        Starlette built on the first call, so that stack is rebuilt to include OTel's.
        """
        if not self.enabled:
            return
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        if app.middleware_stack is not None:
            app.middleware_stack = app.build_middleware_stack()
        self._apps.append(app)

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        """Client spans (and trace propagation) for one shared client; no-op when off."""
        if not self.enabled:
            return
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        self._clients.append(client)

    def shutdown(self) -> None:
        """Detach, force-flush and shut down every provider. Idempotent; blocks on export."""
        if self._closed:
            return
        self._closed = True
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
        for app in self._apps:
            FastAPIInstrumentor.uninstrument_app(app)
        for client in self._clients:
            HTTPXClientInstrumentor.uninstrument_client(client)
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                provider.force_flush(FLUSH_TIMEOUT_MILLIS)
                provider.shutdown()

    async def aclose(self) -> None:
        """`shutdown()` in a worker thread, so a slow collector never stalls the loop."""
        await asyncio.to_thread(self.shutdown)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def setup_telemetry(
    *, otlp_endpoint: str | None, service_name: str, set_global: bool = True
) -> Telemetry:
    """Install traces, metrics and logs over OTLP/HTTP when `otlp_endpoint` is set.

    `otlp_endpoint` is the base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); each signal goes to
    `<base>/v1/{traces,metrics,logs}`. Headers, timeout, compression and TLS come from the
    standard `OTEL_EXPORTER_OTLP_*` variables, read by the exporters themselves. With
    `set_global` the providers become the process-wide OTel providers (possible once per
    process); tests pass `False` and use the providers on the returned object.
    Without an endpoint this returns a no-op `Telemetry` and installs nothing.
    """
    if not otlp_endpoint:
        return Telemetry()
    base = otlp_endpoint.rstrip("/")
    resource = Resource.create({SERVICE_NAME: service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
    )
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs"))
    )
    handler = _otel_log_handler(logger_provider)
    logging.getLogger().addHandler(handler)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _logs.set_logger_provider(logger_provider)
    logger.info("OpenTelemetry export enabled", extra={"otlp_endpoint": base})
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        log_handler=handler,
    )


def _is_not_otel_internal(record: logging.LogRecord) -> bool:
    # The exporters log their own failures; sending those back through OTLP would loop.
    return not record.name.startswith("opentelemetry")


def _otel_log_handler(logger_provider: LoggerProvider) -> logging.Handler:
    """Bridge stdlib logging to OTel logs; records carry the active span's trace/span ids."""
    with warnings.catch_warnings():
        # 1.45 deprecates the SDK handler in favour of opentelemetry-instrumentation-logging,
        # which is not a dependency yet; the handler itself still works as documented.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=logger_provider)
    handler.addFilter(ContextFilter())
    handler.addFilter(_is_not_otel_internal)
    return handler
