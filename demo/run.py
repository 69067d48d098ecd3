"""The demo, start to finish, as one coroutine: `run_demo(out, llm_api_key=...)`.

Starts everything on free loopback ports in this process (the runtime under uvicorn, the
two demo services, a local PagerDuty capture and, without an API key, the scripted LLM),
fires one GCP alert per service, follows each incident as the agent works, prints its
report, and stops everything again, also when cancelled (Ctrl-C).

With `approve`, the runtime runs in `AGENT_MODE=approve`: each remediation write the agent
proposes waits for a decision, made by the demo or by a person in the console
(`demo.approvals`). With `keep`, everything stays up after the demo until `keep` returns.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from config import Settings, load_settings
from demo import alerts
from demo.approvals import ApprovalWatch, ApproveMode, decision, not_as_planned, tally
from demo.console import Console, describe_call
from demo.incidents import IncidentResult, Session, incident
from demo.runtime import logs_into, loopback_socket, runtime, saved_logging, url_of
from demo.scripted_llm import LABEL as SCRIPTED_LABEL
from demo.scripted_llm import paced, scripted_llm
from demo.services import CheckoutService, PaymentsService
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import serve

__all__ = ["ApproveMode", "DemoResult", "IncidentResult", "run_demo"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = ROOT / "demo" / ".run"
DEFAULT_LLM_BASE_URL = "https://models.inference.ai.azure.com"
DEFAULT_LLM_MODEL = "gpt-4o"
APPROVAL_TIMEOUT_SECONDS = 300.0  # how long a proposed write waits for a decision

# `keep(ready)`: calls `ready()` once it listens for the stop (Ctrl-C), returns at the stop
Hold = Callable[[Callable[[], None]], Awaitable[None]]


@dataclass(slots=True)
class LLMChoice:
    """Which model the runtime talks to, and how the demo names it."""

    label: str
    api_key: str
    base_url: str | None  # None: the scripted server, whose URL is known once it runs
    model: str
    scripted: bool


@dataclass(slots=True)
class DemoResult:
    llm_label: str
    scripted: bool
    checkout: CheckoutService
    payments: PaymentsService
    pagerduty: FakePagerDuty
    incidents_dir: Path
    log_file: Path
    approve: ApproveMode
    console_url: str = ""  # the runtime's console, once it runs
    incidents: list[IncidentResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def approvals(self) -> list[dict[str, Any]]:
        """Every write the agent proposed in approve mode, with its decision."""
        return [a for i in self.incidents for a in i.approvals]

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
    approve: ApproveMode = ApproveMode.OFF,
    keep: Hold | None = None,
) -> DemoResult:
    """Run the whole demo, printing to `out`; everything is stopped when it returns.

    `think_seconds` slows the scripted LLM's answers down to a pace a person can follow.
    `approve` runs the runtime in approve mode, and says who decides (`ApproveMode`).
    `keep`: once the demo is over, everything keeps running until `keep(ready)` returns.
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
        approve=approve,
    )
    _banner(console, llm, approve)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(saved_logging())
        to_log_file = stack.enter_context(logs_into(result.log_file))
        urls = {
            s.name: await stack.enter_async_context(serve(s.app()))
            for s in (result.checkout, result.payments)
        }
        pd_url = await stack.enter_async_context(serve(pagerduty_app))
        if llm.base_url is None:
            scripted = paced(scripted_llm().app(), think_seconds)
            llm.base_url = await stack.enter_async_context(serve(scripted))
        sock = stack.enter_context(loopback_socket())
        result.console_url = f"{url_of(sock)}/console"
        settings = _settings(llm, tokens, urls, pd_url, result, public_url=url_of(sock))
        client = await stack.enter_async_context(
            runtime(settings, sock, to_log_file=to_log_file, ops_token=tokens.ops)
        )
        _started(console, urls, pd_url, llm, result, tokens, kept=keep is not None)
        await _scenarios(console, client, settings, result)
        _summary(console, result)
        if keep is not None:
            await keep(lambda: _kept(console, result))
    return result


def _kept(console: Console, result: DemoResult) -> None:
    console.line()
    console.line(
        f"Everything is still running; the console is at {result.console_url}. "
        "Press Ctrl-C to stop.",
        "bold",
    )


def _settings(
    llm: LLMChoice,
    tokens: Tokens,
    urls: dict[str, str],
    pd_url: str,
    result: DemoResult,
    *,
    public_url: str,
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
        agent_mode="live" if result.approve is ApproveMode.OFF else "approve",
        approval_timeout_seconds=APPROVAL_TIMEOUT_SECONDS,
        public_url=public_url,
        cloud_provider="none",
        agent_max_turns=12,
        agent_timeout_seconds=180,
        shutdown_grace_seconds=2,
        log_level="INFO",
        otel_exporter_otlp_endpoint=None,
    )


# -- the two incidents ---------------------------------------------------------------------


async def _scenarios(
    console: Console, client: httpx.AsyncClient, settings: Settings, result: DemoResult
) -> None:
    token = settings.webhook_token.get_secret_value()
    watch_approvals = ApprovalWatch(
        console,
        client,
        result.approve,
        console_link=lambda incident_id: settings.console_url(incident_id) or "",
        timeout_seconds=settings.approval_timeout_seconds,
    )
    session = Session(console, client, token, settings.incidents_dir, watch_approvals)
    checkout = alerts.checkout_latency(result.checkout.p99_ms)
    payments = alerts.payments_errors(0.92)
    for number, (watch, expected) in enumerate(((checkout, "resolved"), (payments, "escalated"))):
        console.heading(f"Incident {number + 1}: {watch.service} — {watch.policy}")
        ended = await incident(session, watch, expected)
        result.incidents.append(ended)
        _judge(console, result, ended)
    _pagerduty_events(console, result.pagerduty)


def _judge(console: Console, result: DemoResult, incident: IncidentResult) -> None:
    if withheld := not_as_planned(incident.approvals):  # a person's call, not a failure
        what = "; ".join(
            f"{describe_call(a['tool'], a['arguments'])} ({decision(a)})" for a in withheld
        )
        console.line(
            f"Outcome: {incident.status} — not sent: {what}. "
            f"(With the write approved, the demo expects {incident.expected}.)",
            "yellow",
        )
        return
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
        for name in ("severity", "summary"):  # a trigger's; an acknowledge or resolve has none
            if name in payload:
                console.line(f"  {name + ':':<11} {payload[name]}")


# -- before and after ----------------------------------------------------------------------

_MODES = {
    ApproveMode.OFF: "live: the agent's remediation writes are sent at once "
    "(--approve: each one waits for a decision)",
    ApproveMode.AUTO: "approve: each remediation write waits for a decision; "
    "the demo approves it through the API (--auto-approve, or no terminal)",
    ApproveMode.CONSOLE: "approve: each remediation write waits for YOUR decision in the console",
}


def _banner(console: Console, llm: LLMChoice, approve: ApproveMode) -> None:
    console.line("SRE Agent Runtime — demo", "bold")
    console.line(f"LLM: {llm.label}", "yellow" if llm.scripted else "green")
    console.line(f"Mode: {_MODES[approve]}")


def _started(
    console: Console,
    urls: dict[str, str],
    pd_url: str,
    llm: LLMChoice,
    result: DemoResult,
    tokens: Tokens,
    *,
    kept: bool,
) -> None:
    console.heading("Started (all on loopback, in this process)")
    rows = [
        ("runtime", result.console_url.removesuffix("/console"), "uvicorn main:create_app"),
        ("checkout", urls["checkout"], "demo service: leaking DB connection pool"),
        ("payments", urls["payments"], "demo service: its database is down"),
        ("pagerduty", pd_url, "local capture server (nothing leaves this machine)"),
    ]
    if llm.scripted:
        rows.append(("llm", str(llm.base_url), "scripted local OpenAI-compatible server"))
    console.table(("component", "url", "what"), rows)
    console.line()
    # The ops token is made for this run only and dies with it: printing it is safe, and
    # it is what the console's sign-in page asks for.
    console.line(
        f"Console: {result.console_url}  (sign in with the token: {tokens.ops})", "bold", "green"
    )
    if not kept:
        console.line(
            "  (the demo stops everything at the end: add --keep to look around afterwards)", "dim"
        )
    console.line(f"Runtime logs (JSON lines) go to {result.log_file}", "dim")


def _summary(console: Console, result: DemoResult) -> None:
    console.heading("Summary")
    approve = result.approve is not ApproveMode.OFF
    rows = [
        (
            i.incident_id,
            i.service,
            i.status,
            str(len(i.tool_calls)),
            *([_approvals_cell(i.approvals)] if approve else []),
            str(i.tokens),
            i.report_file.name if i.report_file else "-",
        )
        for i in result.incidents
    ]
    header = ("incident", "service", "outcome", "tool calls", "approvals", "tokens", "report file")
    console.table([h for h in header if approve or h != "approvals"], rows)
    console.line()
    if approve:
        console.line(f"Approvals: {tally(result.approvals)}", "bold")
        for approval in result.approvals:
            what = describe_call(approval["tool"], approval["arguments"])
            console.line(f"  {approval['approval_id']}  {what}: {decision(approval)}")
        console.line()
    console.line("Where the files are:", "bold")
    console.line(f"  incident reports: {result.incidents_dir}/")
    console.line(f"  runtime log:      {result.log_file}")
    for problem in result.problems:
        console.line(f"PROBLEM: {problem}", "red")


def _approvals_cell(approvals: list[dict[str, Any]]) -> str:
    return ", ".join(sorted(a["status"] for a in approvals)) or "-"
