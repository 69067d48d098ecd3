"""The HTTP application.

`create_app(settings)` builds an app; its lifespan builds every long-lived component once
(in an `AsyncExitStack`, so shutdown runs in reverse) and hands them to handlers as
`app.state.runtime`. `uvicorn main:app` asks for `app`, which is built on first access
from the environment: importing this package reads nothing and starts nothing.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import openai
from fastapi import FastAPI

from agent import LLM, Agent, Finalizer, ReportWriter
from config import ConfigError, Settings, load_settings
from intake import Intake, Limits
from main import alerts, errors, ops, webhooks
from main.deps import Runtime
from main.middleware import TraceMiddleware
from state import RuntimeState
from telemetry import configure_logging, setup_telemetry
from tools import PagerDutyClient, Redactor, ToolExecutor
from tools.cloud import cloud_tools_for

VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: validated from the environment)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, secrets=settings.secret_values())
    app = FastAPI(
        title="SRE Agent Runtime",
        version=VERSION,
        summary="Receives monitoring alerts and runs a bounded LLM diagnostic agent over /ops/*.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.add_middleware(TraceMiddleware)
    errors.install(app)
    app.add_api_route("/health", health, methods=["GET"], tags=["health"])
    for router in (webhooks.router, alerts.router, ops.router):
        app.include_router(router)
    return app


async def health() -> dict[str, str]:
    """Liveness: 200 while the process can serve. Touches no dependency."""
    return {"status": "ok"}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        telemetry = setup_telemetry(
            otlp_endpoint=settings.otel_exporter_otlp_endpoint,
            service_name=settings.otel_service_name,
        )
        stack.push_async_callback(telemetry.aclose)
        telemetry.instrument_app(app)
        http = await stack.enter_async_context(_http_client(settings))
        telemetry.instrument_httpx(http)
        runtime = _build(settings, http)
        await stack.enter_async_context(runtime.intake)
        stack.push_async_callback(
            runtime.intake.close, grace_seconds=settings.shutdown_grace_seconds
        )
        app.state.runtime = runtime
        yield


def _http_client(settings: Settings) -> httpx.AsyncClient:
    """The one outbound client: /ops/*, PagerDuty, cloud APIs and the LLM share its pool."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.ops_timeout_seconds, connect=5.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )


def _build(settings: Settings, http: httpx.AsyncClient) -> Runtime:
    state = RuntimeState()
    cloud = cloud_tools_for(settings, http)  # one instance: its token cache is shared
    redactor = Redactor(settings.secret_values())
    pagerduty = PagerDutyClient(http=http, settings=settings)
    reports = ReportWriter(directory=settings.incidents_dir, redactor=redactor)
    client = openai.AsyncOpenAI(
        base_url=settings.llm_api_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        http_client=http,
        max_retries=0,
    )
    agent = Agent(
        llm=LLM(client=client, model=settings.llm_model),
        tools=ToolExecutor(
            http=http,
            settings=settings,
            pagerduty=pagerduty,
            redactor=redactor,
            observer=state,
            cloud=cloud,
        ),
        pagerduty=pagerduty,
        reports=reports,
        settings=settings,
        redactor=redactor,
        observer=state,
    )
    intake = Intake(
        runner=agent,
        finalize=Finalizer(pagerduty=pagerduty, reports=reports, settings=settings, observer=state),
        limits=Limits(
            concurrency=settings.max_concurrent_alerts,
            queue_size=settings.max_queue_size,
            ttl_seconds=settings.alert_queue_ttl_seconds,
            dedup_window_seconds=settings.dedup_window_seconds,
        ),
        budget_exhausted=functools.partial(_hourly_budget_spent, settings, state),
        metrics=state,
    )
    state.watch_active(intake.counts)
    return Runtime(
        settings=settings,
        http=http,
        state=state,
        intake=intake,
        pagerduty=pagerduty,
        reports=reports,
        cloud=cloud,
        redactor=redactor,
    )


def _hourly_budget_spent(settings: Settings, state: RuntimeState) -> bool:
    ceiling = settings.max_tokens_per_hour
    return ceiling > 0 and state.tokens_last_hour() >= ceiling


@functools.cache
def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        sys.stderr.write(f"sre-agent: {exc}\n")
        raise SystemExit(2) from None


def __getattr__(name: str) -> FastAPI:
    """`main.app`, built on first access (this is what `uvicorn main:app` asks for)."""
    if name == "app":
        return _app_from_environment()
    raise AttributeError(f"module 'main' has no attribute {name!r}")
