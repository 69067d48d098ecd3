"""The demo, start to finish, as one coroutine: `run_demo(out, llm_api_key=...)`.

Starts everything on free loopback ports in this process (the runtime under uvicorn, the
two demo services, a local PagerDuty capture and, without an API key, the scripted LLM),
fires one GCP alert per service, follows each incident as the agent works, prints its
report, and stops everything again, also when cancelled (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from config import Settings, load_settings
from demo import alerts
from demo.console import Console, describe_call, ok_mark
from demo.scripted_llm import LABEL as SCRIPTED_LABEL
from demo.scripted_llm import paced, scripted_llm
from demo.services import CheckoutService, PaymentsService
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import serve
from main import create_app
from telemetry import json_handler

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = ROOT / "demo" / ".run"
DEFAULT_LLM_BASE_URL = "https://models.inference.ai.azure.com"
DEFAULT_LLM_MODEL = "gpt-4o"
POLL_SECONDS = 0.2
INCIDENT_TIMEOUT_SECONDS = 240.0
TERMINAL = {"resolved", "escalated", "expired", "deduplicated", "ignored"}


@dataclass(slots=True)
class LLMChoice:
    """Which model the runtime talks to, and how the demo names it."""

    label: str
    api_key: str
    base_url: str | None  # None: the scripted server, whose URL is known once it runs
    model: str
    scripted: bool


@dataclass(slots=True)
class IncidentResult:
    """How one demo incident ended."""

    incident_id: str
    service: str
    expected: str
    status: str
    outcome: str | None
    tool_calls: list[dict[str, Any]]
    tokens: int
    report_file: Path | None
    report: str


@dataclass(slots=True)
class DemoResult:
    llm_label: str
    scripted: bool
    checkout: CheckoutService
    payments: PaymentsService
    pagerduty: FakePagerDuty
    incidents_dir: Path
    log_file: Path
    incidents: list[IncidentResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def incident(self, service: str) -> IncidentResult:
        return next(i for i in self.incidents if i.service == service)


@dataclass(slots=True)
class Tokens:
    """Secrets generated for this run only."""

    ops: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    webhook: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pagerduty_api: str = field(default_factory=lambda: secrets.token_urlsafe(20))
    routing_key: str = field(default_factory=lambda: secrets.token_hex(16))
    scripted_llm_key: str = field(default_factory=lambda: "demo-" + secrets.token_hex(16))


def choose_llm(
    api_key: str | None, base_url: str | None, model: str | None, tokens: Tokens
) -> LLMChoice:
    model = model or DEFAULT_LLM_MODEL
    if api_key:
        url = base_url or DEFAULT_LLM_BASE_URL
        return LLMChoice(f"real model {model} at {url}", api_key, url, model, scripted=False)
    return LLMChoice(SCRIPTED_LABEL, tokens.scripted_llm_key, None, "scripted-sre", scripted=True)


async def run_demo(
    out: TextIO,
    *,
    llm_api_key: str | None,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    run_dir: Path = DEFAULT_RUN_DIR,
    think_seconds: float = 0.0,
) -> DemoResult:
    """Run the whole demo, printing to `out`; everything is stopped when it returns.

    `think_seconds` slows the scripted LLM's answers down to a pace a person can follow.
    """
    console = Console(out)
    tokens = Tokens()
    llm = choose_llm(llm_api_key, llm_base_url, llm_model, tokens)
    pagerduty_app, pagerduty = make_fake_pagerduty(api_token=tokens.pagerduty_api)
    result = DemoResult(
        llm_label=llm.label,
        scripted=llm.scripted,
        checkout=CheckoutService(token=tokens.ops),
        payments=PaymentsService(token=tokens.ops),
        pagerduty=pagerduty,
        incidents_dir=run_dir / "incidents",
        log_file=run_dir / "runtime.log",
    )
    _banner(console, llm)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_saved_logging())
        to_log_file = stack.enter_context(_logs_into(result.log_file))
        urls = {
            s.name: await stack.enter_async_context(serve(s.app()))
            for s in (result.checkout, result.payments)
        }
        pd_url = await stack.enter_async_context(serve(pagerduty_app))
        if llm.base_url is None:
            scripted = paced(scripted_llm().app(), think_seconds)
            llm.base_url = await stack.enter_async_context(serve(scripted))
        settings = _settings(llm, tokens, urls, pd_url, result)
        client = await stack.enter_async_context(_runtime(settings, to_log_file, tokens))
        _started(console, urls, pd_url, llm, result, str(client.base_url))
        await _scenarios(console, client, settings, result)
    _summary(console, result)
    return result


def _settings(
    llm: LLMChoice,
    tokens: Tokens,
    urls: dict[str, str],
    pd_url: str,
    result: DemoResult,
) -> Settings:
    """Everything by keyword, so the caller's environment cannot change the demo."""
    return load_settings(
        llm_api_key=llm.api_key,
        llm_api_base_url=llm.base_url,
        llm_model=llm.model,
        pagerduty_api_token=tokens.pagerduty_api,
        pagerduty_routing_key=tokens.routing_key,
        pagerduty_events_url=f"{pd_url}/v2/enqueue",
        pagerduty_api_url=pd_url,
        pagerduty_escalation_policy_id=None,
        pagerduty_from_email=None,
        ops_auth_token=tokens.ops,
        webhook_auth_token=tokens.webhook,
        service_registry=",".join(f"{name}|{url}|true" for name, url in urls.items()),
        scaling_limits="checkout|2|6|application",
        sre_prompt_path=ROOT / "WINDSURF_SRE.md",
        incidents_dir=result.incidents_dir,
        agent_mode="live",
        cloud_provider="none",
        agent_max_turns=12,
        agent_timeout_seconds=180,
        shutdown_grace_seconds=2,
        log_level="INFO",
        otel_exporter_otlp_endpoint=None,
    )


@contextlib.asynccontextmanager
async def _runtime(
    settings: Settings, to_log_file: Callable[[], None], tokens: Tokens
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app under uvicorn; yields a client of its API."""
    app = create_app(settings)  # configures JSON logging on stdout...
    to_log_file()  # ...which goes to the log file instead
    async with serve(app) as base_url:
        headers = {"Authorization": f"Bearer {tokens.ops}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            yield client


@contextlib.contextmanager
def _saved_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _logs_into(path: Path) -> Iterator[Callable[[], None]]:
    """Send every log line to `path` now, and again whenever the returned function is called
    (after something else reconfigured logging)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:

        def redirect() -> None:
            logging.getLogger().handlers[:] = [json_handler(stream)]

        redirect()
        try:
            yield redirect
        finally:
            logging.getLogger().handlers[:] = []


# -- the two incidents ---------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """What each incident of the demo needs."""

    console: Console
    client: httpx.AsyncClient
    webhook_token: str
    incidents_dir: Path


async def _scenarios(
    console: Console, client: httpx.AsyncClient, settings: Settings, result: DemoResult
) -> None:
    token = settings.webhook_token.get_secret_value()
    session = Session(console, client, token, settings.incidents_dir)
    checkout = alerts.checkout_latency(result.checkout.p99_ms)
    payments = alerts.payments_errors(0.92)
    for number, (watch, expected) in enumerate(((checkout, "resolved"), (payments, "escalated"))):
        console.heading(f"Incident {number + 1}: {watch.service} — {watch.policy}")
        incident = await _incident(session, watch, expected)
        result.incidents.append(incident)
        _judge(console, result, incident)
    _pagerduty_events(console, result.pagerduty)


async def _incident(session: Session, watch: alerts.Threshold, expected: str) -> IncidentResult:
    console = session.console
    payload = alerts.gcp_incident(watch, incident_id=alerts.new_incident_id())
    console.line(f"POST /webhook/gcp  (GCP Cloud Monitoring, schema 1.2, service {watch.service})")
    console.line(f"  summary: {payload['incident']['summary']}", "dim")
    response = await session.client.post(
        "/webhook/gcp", params={"auth_token": session.webhook_token}, json=payload
    )
    console.line(f"  -> {response.status_code} {json.dumps(response.json())}")
    response.raise_for_status()
    incident_id = response.json()["alerts"][0]["incident_id"]
    console.line()
    console.line("The agent is working (polling GET /alerts/{id} every 0.2 s):", "bold")
    detail = await _follow(session, incident_id)
    return await _finish(session, detail, expected)


async def _follow(session: Session, incident_id: str) -> dict[str, Any]:
    """Print status changes and each new tool call until the incident has its report."""
    seen, status = 0, ""
    async with asyncio.timeout(INCIDENT_TIMEOUT_SECONDS):
        while True:
            detail = (await session.client.get(f"/alerts/{incident_id}")).json()
            for call in detail["tool_calls"][seen:]:
                _print_call(session.console, call)
            seen = len(detail["tool_calls"])
            if detail["status"] != status:
                status = detail["status"]
                session.console.line(f"  [{status}]", "yellow")
            if status in TERMINAL and detail["report_file"]:
                return detail
            await asyncio.sleep(POLL_SECONDS)


def _print_call(console: Console, call: dict[str, Any]) -> None:
    summary = describe_call(call["name"], call["arguments"])
    mark = ok_mark(console, call["ok"])
    error = f"  ({call['error']})" if call.get("error") else ""
    console.line(
        f"  turn {call['turn']:>2}  {call['name']:<22} {summary:<44} {mark} "
        f"{call['duration_ms']:>6.0f} ms{error}"
    )


async def _finish(session: Session, detail: dict[str, Any], expected: str) -> IncidentResult:
    incident_id = detail["incident_id"]
    report = (await session.client.get(f"/alerts/{incident_id}/report")).text
    path = session.incidents_dir / detail["report_file"]
    session.console.line()
    session.console.line(f"Incident report ({incident_id}):", "bold")
    session.console.block(report)
    session.console.line(f"Report file: {path}")
    return IncidentResult(
        incident_id=incident_id,
        service=detail["service"],
        expected=expected,
        status=detail["status"],
        outcome=detail["outcome"],
        tool_calls=detail["tool_calls"],
        tokens=detail["tokens"]["total"],
        report_file=path,
        report=report,
    )


def _judge(console: Console, result: DemoResult, incident: IncidentResult) -> None:
    if incident.status == incident.expected:
        console.line(f"Outcome: {incident.status} (as expected)", "green")
        return
    message = f"{incident.service}: expected {incident.expected}, got {incident.status}"
    if result.scripted:
        result.problems.append(message)
        console.line(f"Outcome: {message}", "red")
    else:
        console.line(f"Outcome: {message} — the model decided differently", "yellow")


def _pagerduty_events(console: Console, pagerduty: FakePagerDuty) -> None:
    console.heading("PagerDuty (local capture server)")
    if not pagerduty.events:
        console.line("No event was sent.")
    for event in pagerduty.events:
        body = event.json or {}
        payload = body.get("payload", {})
        console.line(f"event_action: {body.get('event_action')}")
        console.line(f"  dedup_key:  {body.get('dedup_key')}")
        console.line(f"  severity:   {payload.get('severity')}")
        console.line(f"  summary:    {payload.get('summary')}")


# -- before and after ----------------------------------------------------------------------


def _banner(console: Console, llm: LLMChoice) -> None:
    console.line("SRE Agent Runtime — demo", "bold")
    console.line(f"LLM: {llm.label}", "yellow" if llm.scripted else "green")


def _started(
    console: Console,
    urls: dict[str, str],
    pd_url: str,
    llm: LLMChoice,
    result: DemoResult,
    runtime_url: str,
) -> None:
    console.heading("Started (all on loopback, in this process)")
    rows = [
        ("runtime", runtime_url, "uvicorn main:create_app(settings)"),
        ("checkout", urls["checkout"], "demo service: leaking DB connection pool"),
        ("payments", urls["payments"], "demo service: its database is down"),
        ("pagerduty", pd_url, "local capture server (nothing leaves this machine)"),
    ]
    if llm.scripted:
        rows.append(("llm", str(llm.base_url), "scripted local OpenAI-compatible server"))
    console.table(("component", "url", "what"), rows)
    console.line()
    console.line(f"Runtime logs (JSON lines) go to {result.log_file}", "dim")


def _summary(console: Console, result: DemoResult) -> None:
    console.heading("Summary")
    rows = [
        (
            i.incident_id,
            i.service,
            i.status,
            str(len(i.tool_calls)),
            str(i.tokens),
            i.report_file.name if i.report_file else "-",
        )
        for i in result.incidents
    ]
    console.table(("incident", "service", "outcome", "tool calls", "tokens", "report file"), rows)
    console.line()
    console.line("Where the files are:", "bold")
    console.line(f"  incident reports: {result.incidents_dir}/")
    console.line(f"  runtime log:      {result.log_file}")
    for problem in result.problems:
        console.line(f"PROBLEM: {problem}", "red")
