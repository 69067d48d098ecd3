"""One scenario run through the real runtime, on loopback.

The runner only wires: it serves the scenario's services, a PagerDuty capture and (for a
scripted policy) the fake LLM; builds the runtime with `main.create_app` from settings made
here (never from the caller's environment); posts the scenario's alert to
`POST /webhook/{provider}` over HTTP; waits until intake is idle; and reads what happened
back from the runtime's API (`/alerts/{id}`, its report and transcript), the PagerDuty
capture and the services' request logs. Judging it is `eval.scoring`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from starlette.types import ASGIApp

from config import ConfigError, Settings, describe_errors
from demo.simulators.llm import FakeLLM, Policy
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import free_port, serve
from eval.scenario import Scenario
from eval.scoring import Happened, Tokens
from eval.services import ScenarioService, asked, under_prefixes
from main import create_app
from main.deps import Runtime
from telemetry import json_handler

PolicyFactory = Callable[[Scenario], Policy]


class ScenarioRunError(Exception):
    """The scenario could not be replayed (e.g. the runtime refused its alert)."""


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """The model a run talks to: a real API (`base_url`), or a scripted `policy` served
    through the fake OpenAI-compatible server (`demo.simulators.llm.FakeLLM`)."""

    name: str
    api_key: str
    base_url: str | None = None
    policy: PolicyFactory | None = None

    @property
    def scripted(self) -> bool:
        return self.policy is not None


@dataclass(slots=True)
class RunRecord:
    """What one run left: the observation to score, and the runtime's own view of it."""

    happened: Happened
    details: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


class _KeywordSettings(Settings):
    """The runtime's settings from keywords only: no variable of the caller's environment
    (a stray MAX_TOKENS_PER_INCIDENT, an AGENT_MODE=shadow) can change an evaluation."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def runtime_settings(**values: Any) -> Settings:
    """Settings from `values`, the contract's defaults for the rest."""
    try:
        return _KeywordSettings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


@contextlib.contextmanager
def logs_into(stream: IO[str]) -> Iterator[Callable[[Settings], None]]:
    """While open, runtime logs go to `stream` (not stdout): call the yielded function after
    each `create_app`, which installs its own stdout handler. Restores logging on exit."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def redirect(settings: Settings) -> None:
        root.handlers[:] = [json_handler(stream, secrets=settings.secret_values())]

    try:
        yield redirect
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def run_scenario(
    scenario: Scenario,
    *,
    model: ModelTarget,
    prompt: Path,
    workdir: Path,
    on_app: Callable[[Settings], None] = lambda _settings: None,
) -> RunRecord:
    """Replay `scenario` once; `workdir` receives the runtime's incident reports."""
    token = secrets.token_urlsafe(24)
    async with contextlib.AsyncExitStack() as stack:
        services = _services(scenario, token)
        pd_app, pagerduty = make_fake_pagerduty()
        apps: dict[str, ASGIApp] = {f"/svc/{n}": s.app() for n, s in services.items()}
        apps["/pagerduty"] = pd_app
        if model.policy is not None:
            apps["/llm"] = FakeLLM(policy=model.policy(scenario)).app()
        url = await stack.enter_async_context(serve(under_prefixes(apps), lifespan="off"))
        pd_url = f"{url}/pagerduty"
        llm_url = f"{url}/llm" if model.policy is not None else model.base_url
        settings = runtime_settings(
            llm_api_key=model.api_key,
            llm_api_base_url=llm_url,
            llm_model=model.name,
            pagerduty_api_token=secrets.token_urlsafe(16),
            pagerduty_routing_key=secrets.token_hex(16),
            pagerduty_events_url=f"{pd_url}/v2/enqueue",
            pagerduty_api_url=pd_url,
            ops_auth_token=token,
            service_registry=_registry(scenario, url, services),
            scaling_limits=scenario.scaling_limits,
            sre_prompt_path=prompt,
            incidents_dir=workdir / "incidents",
            **_turns(scenario),
        )
        app = create_app(settings)
        on_app(settings)
        base_url = await stack.enter_async_context(serve(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
        )
        runtime: Runtime = app.state.runtime
        started = time.perf_counter()
        incident_ids = await _deliver(client, scenario)
        for later in scenario.during_run:  # e.g. the platform resolves it mid-run
            await _first(asked(services, later.after_requests), runtime.intake.wait_idle())
            await _post(client, scenario, later.payload)
        await runtime.intake.wait_idle()
        seconds = time.perf_counter() - started
        record = await _read_back(client, incident_ids)
        record.happened = _happened(record, services, pagerduty, scenario, seconds)
        return record


def _services(scenario: Scenario, token: str) -> dict[str, ScenarioService]:
    """One simulated service per `services` entry, under its registry name."""
    names = {name.lower(): name for name in scenario.entries()}
    shared = asyncio.Event()  # any request to any of them (`eval.services.asked`)
    return {
        names[name.lower()]: ScenarioService(
            names[name.lower()], token, dict(answers), asked=shared
        )
        for name, answers in scenario.services.items()
    }


def _registry(scenario: Scenario, url: str, services: dict[str, ScenarioService]) -> str:
    """The scenario's registry, each placeholder URL replaced by its simulated service; a
    registered service the scenario gives no `services` entry is unreachable (a closed
    loopback port), like a service whose host is down."""
    entries = []
    for name, entry in scenario.entries().items():
        base = f"{url}/svc/{name}" if name in services else f"http://127.0.0.1:{free_port()}"
        entries.append(f"{name}|{base}|{str(entry.critical).lower()}")
    return ",".join(entries)


def _turns(scenario: Scenario) -> dict[str, int]:
    """`expect.max_turns` bounds the run like AGENT_MAX_TURNS (over it, the runtime escalates)."""
    turns = scenario.expect.max_turns
    return {"agent_max_turns": turns} if turns else {}


async def _first(*waits: Coroutine[Any, Any, None]) -> None:
    """Return when the first of `waits` is done (the others are cancelled and awaited): a
    later delivery is sent once its services were asked, or once the run is over if the
    agent never asked them."""
    one_done = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(wait) for wait in waits]
        for task in tasks:
            task.add_done_callback(lambda _task: one_done.set())
        await one_done.wait()
        for task in tasks:
            task.cancel()


async def _deliver(client: httpx.AsyncClient, scenario: Scenario) -> list[str]:
    """Post the alert as the platform would; the incident ids the runtime accepted."""
    response = await _post(client, scenario, scenario.alert.payload)
    return [str(result["incident_id"]) for result in response.json()["alerts"]]


async def _post(
    client: httpx.AsyncClient, scenario: Scenario, payload: dict[str, Any] | list[Any]
) -> httpx.Response:
    """One notification to the scenario's webhook; anything but a 202 stops the run."""
    provider = scenario.alert.provider.value
    response = await client.post(f"/webhook/{provider}", json=payload)
    if response.status_code != 202:
        raise ScenarioRunError(
            f"POST /webhook/{provider} answered {response.status_code}: {response.text[:500]}"
        )
    return response


async def _read_back(client: httpx.AsyncClient, incident_ids: list[str]) -> RunRecord:
    record = RunRecord(happened=_NOTHING)
    for incident_id in dict.fromkeys(incident_ids):
        detail = await client.get(f"/alerts/{incident_id}")
        if detail.status_code != 200:
            continue
        record.details.append(detail.json())
        report = await client.get(f"/alerts/{incident_id}/report")
        if report.status_code == 200:
            record.reports.append(report.text)
        transcript = await client.get(f"/alerts/{incident_id}/transcript")
        if transcript.status_code == 200:
            record.transcripts.append(transcript.json())
    return record


_NOTHING = Happened(escalated=False, actions=(), report="", tokens=Tokens(), turns=0, seconds=0)


def _happened(
    record: RunRecord,
    services: dict[str, ScenarioService],
    pagerduty: FakePagerDuty,
    scenario: Scenario,
    seconds: float,
) -> Happened:
    triggered = any(e.json.get("event_action") == "trigger" for e in pagerduty.events if e.json)
    outcomes = {d.get("outcome") or d.get("status") for d in record.details}
    turns = [t for transcript in record.transcripts for t in transcript["turns"]]
    return Happened(
        escalated=triggered or "escalated" in outcomes,
        actions=tuple(_actions(record, services, scenario)),
        report="\n\n".join(_model_text(d, record.transcripts) for d in record.details).strip(),
        tokens=Tokens(
            input=sum(t["usage"]["input"] for t in turns),
            output=sum(t["usage"]["output"] for t in turns),
            cached=sum(t["usage"].get("cached") or 0 for t in turns),
        ),
        turns=len(turns),
        seconds=round(seconds, 3),
        service=next((d["service"] for d in record.details if d.get("service")), None),
    )


def _actions(
    record: RunRecord, services: dict[str, ScenarioService], scenario: Scenario
) -> list[str]:
    """Requests the services got, then every scaling attempt (refused ones too: the model
    decided to scale; that the runtime's bounds caught it is not to the model's credit)."""
    names = {name.lower(): name for name in scenario.entries()}
    actions = [action for service in services.values() for action in service.actions()]
    for detail in record.details:
        for call in detail["tool_calls"]:
            arguments = call.get("arguments")
            if call["name"] == "scale_service" and isinstance(arguments, dict):
                service = str(arguments.get("service", ""))
                actions.append(f"scale {names.get(service.lower(), service)}")
    return actions


def _model_text(detail: dict[str, Any], transcripts: list[dict[str, Any]]) -> str:
    """What the model itself wrote for this incident, as the runtime puts it first in the
    report: its last report written, else its last words."""
    for call in reversed(detail["tool_calls"]):
        arguments = call.get("arguments")
        if call["name"] == "write_incident_report" and call["ok"] and isinstance(arguments, dict):
            return str(arguments.get("content", ""))
    for transcript in transcripts:
        if transcript["incident_id"] != detail["incident_id"]:
            continue
        for turn in reversed(transcript["turns"]):
            if turn["response"].get("content"):
                return str(turn["response"]["content"])
    return ""
