"""The HTTP application.

`create_app(settings)` builds an app; its lifespan builds every long-lived component once
(in an `AsyncExitStack`, so shutdown runs in reverse) and hands them to handlers as
`app.state.runtime`. `uvicorn main:app` asks for `app`, which is built on first access
from the environment: importing this package reads nothing and starts nothing.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import openai
from fastapi import FastAPI

from agent import LLM, Agent, Approvals, Finalizer, ReportWriter, resume
from agent.transcript import Transcript
from config import ConfigError, Settings, load_settings
from intake import AlertRecord, Intake, Limits
from intake.approvals import ApprovalDesk, Desk
from intake.pg.approvals import PgApprovalDesk
from intake.pg.service import PgIntake
from intake.service import IntakeService, MemoryIntake
from intake.workers import Runner
from main import alerts, approvals, console, errors, ops, server, webhooks
from main.deps import Runtime
from main.middleware import TraceMiddleware
from main.session import Sessions
from models import AlertStatus
from state import RuntimeState
from telemetry import configure_logging, setup_telemetry
from tools import Pager, PagerDutyClient, Redactor, ToolExecutor
from tools.cloud import cloud_tools_for
from tools.outbound import new_client
from tools.pager import WORKERS

VERSION = "0.1.0"
OPS_CONNECTIONS = 100
REPORT_THREADS = 4  # more only contend for the GIL: the writes are not disk-bound
# SIGTERM: the process is gone within SHUTDOWN_GRACE_SECONDS + 10 s (CONTRACT §3). uvicorn
# first waits up to 2 s for requests in flight (main.server.GRACEFUL_SHUTDOWN_SECONDS); then
# this lifespan takes the grace plus this margin, of which the pager may use all but
# REPORT_RESERVE_SECONDS, which the reports written last keep; 0.5 s is left for the exit.
SHUTDOWN_MARGIN_SECONDS = 7.5
REPORT_RESERVE_SECONDS = 3.0


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
    for router in (webhooks.router, approvals.router, alerts.router, ops.router, console.router):
        app.include_router(router)
    return app


async def health() -> dict[str, str]:
    """Liveness: 200 while the process can serve. Touches no dependency."""
    return {"status": "ok"}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    server.adopt_running_server()  # under a bare `uvicorn main:app`: the request deadlines
    async with AsyncExitStack() as stack:
        telemetry = setup_telemetry(
            otlp_endpoint=settings.otel_exporter_otlp_endpoint,
            service_name=settings.otel_service_name,
        )
        stack.push_async_callback(telemetry.aclose)
        telemetry.instrument_app(app)
        clients = [await stack.enter_async_context(client) for client in _http_clients(settings)]
        for client in clients:
            telemetry.instrument_httpx(client)
        files = stack.enter_context(ThreadPoolExecutor(REPORT_THREADS, "reports"))
        runtime = _build(settings, *clients, files=files)
        await stack.enter_async_context(runtime.pager)
        await stack.enter_async_context(runtime.intake)
        stack.push_async_callback(_shutdown, runtime)
        app.state.runtime = runtime
        _freeze_startup_objects()
        yield


def _freeze_startup_objects() -> None:
    """Exempt what startup built (the app, its routes and schemas, settings, clients: about
    190,000 objects) from the cyclic garbage collector's full passes.

    Under load many short-lived objects (a request's, a transaction's) outlive two young
    collections, and each 25 % of the old generation's size that they add triggers a full
    collection over everything. At 1,000 webhooks/s that was one a second, stopping the event
    loop ~125 ms each time: the webhooks' p99 latency. Frozen, the startup objects are no
    longer traversed (they stay reference-counted); startup's own garbage is collected first."""
    gc.collect()
    gc.freeze()


def _http_clients(settings: Settings) -> tuple[httpx.AsyncClient, ...]:
    """One client per kind of traffic, so none can starve or break another: monitored
    services and cloud APIs; the LLM; PagerDuty (only the pager's workers use it)."""
    ops_timeout = httpx.Timeout(settings.ops_timeout_seconds, connect=5.0)
    return (
        new_client(timeout=ops_timeout, max_connections=OPS_CONNECTIONS, max_keepalive=20),
        new_client(timeout=httpx.Timeout(120.0, connect=10.0), max_connections=20),
        new_client(timeout=httpx.Timeout(10.0, connect=5.0), max_connections=WORKERS + 2),
    )


async def _shutdown(runtime: Runtime) -> None:
    """SIGTERM (the lifespan's end), within SHUTDOWN_GRACE_SECONDS + SHUTDOWN_MARGIN_SECONDS:
    queued alerts are escalated at once and runs get the grace, cut-offs are escalated;
    pages and reports then get the margin. A page still undelivered when only
    REPORT_RESERVE_SECONDS are left is given up, and its report (written last) says so."""
    grace = runtime.settings.shutdown_grace_seconds
    end = time.monotonic() + grace + SHUTDOWN_MARGIN_SECONDS

    def left() -> float:
        return max(end - time.monotonic(), 0.0)

    runtime.pager.hurry()
    runtime.reports.defer_sync()
    await runtime.intake.stop(grace_seconds=grace, cleanup_seconds=REPORT_RESERVE_SECONDS)
    await runtime.intake.settle(seconds=left() - REPORT_RESERVE_SECONDS)
    await runtime.pager.close(seconds=0)
    await runtime.intake.close(grace_seconds=0, cleanup_seconds=left())
    await runtime.reports.sync()


def _build(
    settings: Settings,
    http: httpx.AsyncClient,
    llm_http: httpx.AsyncClient,
    pager_http: httpx.AsyncClient,
    *,
    files: ThreadPoolExecutor,
) -> Runtime:
    state = RuntimeState()
    cloud = cloud_tools_for(settings, http)  # one instance: its token cache is shared
    redactor = Redactor(settings.secret_values())
    pager = Pager(
        client=PagerDutyClient(http=pager_http, settings=settings),
        max_per_minute=settings.pagerduty_max_events_per_minute,
    )
    reports = ReportWriter(directory=settings.incidents_dir, redactor=redactor, files=files)
    client = openai.AsyncOpenAI(
        base_url=settings.llm_api_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        http_client=llm_http,
        max_retries=0,
    )
    finalize = Finalizer(pager=pager, reports=reports, settings=settings, observer=state)
    limits = Limits(
        concurrency=settings.max_concurrent_alerts,
        queue_size=settings.max_queue_size,
        ttl_seconds=settings.alert_queue_ttl_seconds,
        dedup_window_seconds=settings.dedup_window_seconds,
        resolve_grace_seconds=settings.resolve_grace_seconds,
        auto_resolve=settings.pagerduty_auto_resolve,
    )

    async def run(record: AlertRecord) -> AlertStatus:
        return await agent(record)  # the agent is made below: it needs the backend's parts

    durable = _durable(settings, run, finalize, limits)
    desk: Desk
    if durable is not None:
        desk = PgApprovalDesk(durable, timeout_seconds=settings.approval_timeout_seconds)
        reports.keep_in(durable)
    else:
        desk = ApprovalDesk(timeout_seconds=settings.approval_timeout_seconds)
    agent = Agent(
        llm=LLM(client=client, model=settings.llm_model),
        tools=ToolExecutor(
            http=http,
            settings=settings,
            pagerduty=pager,
            redactor=redactor,
            observer=state,
            cloud=cloud,
        ),
        reports=reports,
        settings=settings,
        redactor=redactor,
        observer=state,
        approvals=Approvals(desk=desk, pager=pager),
        checkpoint=None if durable is None else durable.checkpoint,
    )
    intake: IntakeService = durable or MemoryIntake(
        Intake(
            runner=agent,
            finalize=finalize,
            limits=limits,
            budget_exhausted=functools.partial(_hourly_budget_spent, settings, state),
            metrics=state,
        ),
        reports.read,
    )
    state.watch_active(intake.counts)
    return Runtime(
        settings=settings,
        http=http,
        state=state,
        intake=intake,
        pager=pager,
        reports=reports,
        cloud=cloud,
        redactor=redactor,
        approvals=desk,
        sessions=Sessions(settings),
    )


def _durable(
    settings: Settings,
    run: Runner,
    finalize: Finalizer,
    limits: Limits,
) -> PgIntake | None:
    """STATE_BACKEND=postgres: intake on the database (None: in memory)."""
    if settings.state_backend != "postgres" or settings.database_url is None:
        return None
    return PgIntake(
        conninfo=settings.database_url.get_secret_value(),
        runner=run,
        finalize=finalize,
        limits=limits,
        lease_seconds=settings.run_lease_seconds,
        restore=resume.restore,
        saved=resume.saved,
        load_transcript=Transcript.load,
        max_tokens_per_hour=settings.max_tokens_per_hour,
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
