"""This service's own `/ops/*` (CONTRACT §3): the same contract the monitored services offer.

GET endpoints need no auth and only read: the verdict and golden signals from `state`, deep
health checks (run concurrently, each under its own timeout, each recorded as a dependency),
the sanitized configuration, dependencies and recent errors. POST endpoints (`loglevel`,
`drain`) need `Authorization: Bearer OPS_AUTH_TOKEN`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import socket
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Response
from pydantic import SecretStr

from config import Settings
from main.auth import OpsAuth
from main.deps import Runtime, RuntimeDep
from main.ops_models import (
    CheckResult,
    ConfigResponse,
    DependenciesResponse,
    DependencyKind,
    DependencyStatus,
    DrainRequest,
    DrainResponse,
    ErrorEntry,
    ErrorsResponse,
    GoldenSignals,
    HealthResponse,
    HealthStatus,
    LatencyPercentiles,
    LogLevelRequest,
    LogLevelResponse,
    MetricsResponse,
    ScalingConfig,
    ServiceConfig,
    StatusResponse,
)
from models import ErrorResponse
from state import DEP_LLM, DEP_PAGERDUTY, cloud_dependency, service_dependency
from telemetry import set_log_level
from tools import Redactor

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/ops", tags=["ops"])

CHECK_TIMEOUT_SECONDS = 3.0
# Without these the runtime cannot do its job at all; remote checks only degrade it.
# Without these the runtime cannot take alerts at all: failing, not degraded.
LOCAL_CHECKS = frozenset({"prompt", "incidents_dir", "database"})
_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {401: {"model": ErrorResponse}}


class CheckFailed(Exception):
    """A health check ran and found a problem; the message is safe to show."""


# ---------------------------------------------------------------- status & metrics


@router.get("/status", response_model=StatusResponse)
async def get_status(runtime: RuntimeDep) -> StatusResponse:
    """Healthy / degraded / unhealthy, the reasons, and the golden signals."""
    stats = runtime.intake.stats()
    verdict, reasons = runtime.state.verdict(
        running=stats["running"],
        queued=stats["queued"],
        limit=stats["limit"],
        queue_max=stats["queue_max"],
        budget=runtime.settings.max_tokens_per_hour,
    )
    if stats["draining"]:
        reasons.append("draining: new webhooks are refused")
        verdict = "degraded" if verdict == "healthy" else verdict
    return StatusResponse(
        status=verdict,
        reasons=reasons,
        version=service_version(),
        uptime_seconds=round(runtime.state.uptime_seconds(), 3),
        mode=runtime.settings.agent_mode,
        draining=stats["draining"],
        golden_signals=_golden_signals(_metrics(runtime, stats)),
    )


@router.get("/metrics", response_model=MetricsResponse)
async def get_metrics(runtime: RuntimeDep) -> MetricsResponse:
    """Latency percentiles, traffic, errors, saturation, counters and token usage."""
    return MetricsResponse.model_validate(_metrics(runtime, runtime.intake.stats()))


def _metrics(runtime: Runtime, stats: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = runtime.state.metrics(
        running=stats["running"],
        queued=stats["queued"],
        limit=stats["limit"],
        queue_max=stats["queue_max"],
    )
    return result


def _golden_signals(metrics: dict[str, Any]) -> GoldenSignals:
    requests, saturation = metrics["requests"], metrics["saturation"]
    return GoldenSignals(
        latency_ms=LatencyPercentiles(**requests["latency_ms"]),
        request_rate_per_second=requests["rate_per_second"],
        error_rate=requests["error_rate"],
        saturation=saturation["ratio"],
        queue_depth=saturation["queue_depth"],
    )


@functools.cache
def service_version() -> str:
    """The installed distribution's version, else pyproject.toml's, else "unknown"."""
    try:
        return importlib.metadata.version("sre-agent-runtime")
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# ---------------------------------------------------------------- deep health


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "At least one check failed."}},
)
async def get_health(runtime: RuntimeDep, response: Response) -> HealthResponse:
    """Deep checks, concurrently: PagerDuty API, prompt file, incidents dir, LLM DNS, cloud."""
    async with asyncio.TaskGroup() as group:
        checks_for = _checks(runtime.settings).items()
        tasks = [group.create_task(_run_check(n, c, runtime)) for n, c in checks_for]
    checks = [task.result() for task in tasks]
    overall = _overall(checks)
    response.status_code = 200 if overall == "ok" else 503
    return HealthResponse(status=overall, checks=checks)


async def _run_check(
    name: str, check: Callable[[Runtime], Awaitable[str | None]], runtime: Runtime
) -> CheckResult:
    """Run one check under its timeout; never raises (but lets cancellation through)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            detail = await check(runtime)
        ok = True
    except TimeoutError:  # before OSError: TimeoutError is one
        ok, detail = False, f"timed out after {CHECK_TIMEOUT_SECONDS:g}s"
    except CheckFailed as exc:
        ok, detail = False, str(exc)
    except OSError as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc.strerror or 'failed'}"
    except Exception as exc:  # a check must not break /ops/health; the type is enough
        ok, detail = False, type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    runtime.state.record_dependency(name, ok=ok, detail=detail, latency_ms=latency_ms)
    return CheckResult(
        name=name, status="ok" if ok else "failing", latency_ms=latency_ms, detail=detail
    )


def _overall(checks: list[CheckResult]) -> HealthStatus:
    failing = {c.name for c in checks if c.status == "failing"}
    if not failing:
        return "ok"
    if failing & LOCAL_CHECKS or len(failing) == len(checks):
        return "failing"
    return "degraded"


async def _check_pagerduty(runtime: Runtime) -> str | None:
    ok, detail = await runtime.pager.probe()
    if not ok:
        raise CheckFailed(detail)
    return str(detail) if detail else None


async def _check_prompt(runtime: Runtime) -> str | None:
    path = runtime.settings.sre_prompt_path
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    if not text.strip():
        raise CheckFailed(f"{path} is empty")
    return f"{len(text)} characters"


async def _check_incidents_dir(runtime: Runtime) -> str | None:
    await asyncio.to_thread(_create_and_delete_file, runtime.settings.incidents_dir)
    return None


def _create_and_delete_file(directory: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".ops-health-"):
        pass


async def _check_llm_dns(runtime: Runtime) -> str | None:
    parts = urlsplit(runtime.settings.llm_api_base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return f"{host} resolves to {len(addresses)} address(es)"


CHECKS: dict[str, Callable[[Runtime], Awaitable[str | None]]] = {
    "pagerduty": _check_pagerduty,
    "prompt": _check_prompt,
    "incidents_dir": _check_incidents_dir,
    "llm_dns": _check_llm_dns,
}


async def _check_cloud(runtime: Runtime) -> str | None:
    """Cloud credentials obtainable and the log/metric APIs readable (CLOUD_PROVIDER set)."""
    ok, detail = await runtime.cloud.probe()
    if not ok:
        raise CheckFailed(detail)
    return detail


async def _check_database(runtime: Runtime) -> str | None:
    """STATE_BACKEND=postgres: a round trip to the state database."""
    return await runtime.intake.probe()


def _checks(settings: Settings) -> dict[str, Callable[[Runtime], Awaitable[str | None]]]:
    """CHECKS, plus `cloud` when a cloud provider is configured and `database` with
    STATE_BACKEND=postgres."""
    checks = dict(CHECKS)
    if settings.cloud_provider != "none":
        checks["cloud"] = _check_cloud
    if settings.state_backend == "postgres":
        checks["database"] = _check_database
    return checks


# ---------------------------------------------------------------- config


@router.get("/config", response_model=ConfigResponse)
async def get_config(runtime: RuntimeDep) -> ConfigResponse:
    """The effective configuration; secrets appear only as "configured" / "not set"."""
    return sanitized_config(runtime.settings, runtime.redactor)


def sanitized_config(settings: Settings, redactor: Redactor) -> ConfigResponse:
    """Every setting, with secrets reduced to whether they are set and URLs to no userinfo
    (`redactor`: the runtime's, built once from the same secrets)."""
    plain: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if name in ("service_registry", "scaling_limits"):
            continue
        if SecretStr in (field.annotation, *get_args(field.annotation)):
            secrets[name] = "configured" if value else "not set"
        else:
            plain[name] = _plain_value(value, redactor)
    return ConfigResponse(
        settings=plain,
        secrets=secrets,
        service_registry=[
            ServiceConfig(name=e.name, url=strip_userinfo(e.base_url), critical=e.critical)
            for e in settings.service_registry.values()
        ],
        scaling_limits=[
            ScalingConfig(
                service=s.service,
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
                mode=s.mode,
            )
            for s in settings.scaling_limits.values()
        ],
    )


def _plain_value(value: Any, redactor: Redactor) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redactor.redact(strip_userinfo(str(value)))


def strip_userinfo(text: str) -> str:
    """`https://user:pass@host/x` -> `https://host/x`; anything that is not a URL unchanged."""
    parts = urlsplit(text)
    if not parts.scheme or "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# ---------------------------------------------------------------- dependencies & errors


@router.get("/dependencies", response_model=DependenciesResponse)
async def get_dependencies(runtime: RuntimeDep) -> DependenciesResponse:
    """LLM API, PagerDuty, every registered service and the cloud API, each last seen."""
    settings, seen = runtime.settings, runtime.state.dependencies()
    rows = [
        _dependency("llm", "llm", settings.llm_api_base_url, seen, (DEP_LLM, "llm_dns")),
        _dependency("pagerduty", "pagerduty", settings.pagerduty_api_url, seen, (DEP_PAGERDUTY,)),
    ]
    for entry in settings.service_registry.values():
        keys = (service_dependency(entry.name),)
        row = _dependency(entry.name, "service", entry.base_url, seen, keys)
        rows.append(row.model_copy(update={"critical": entry.critical}))
    if settings.cloud_provider != "none":
        provider = settings.cloud_provider
        cloud_keys = (cloud_dependency(provider), "cloud")  # real calls, then the health check
        target = settings.gcp_project_id if provider == "gcp" else settings.aws_region
        rows.append(_dependency(provider, "cloud", target, seen, cloud_keys))
    if settings.state_backend == "postgres" and settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        where = urlsplit(url)._replace(query="").geturl()  # no password, no socket options
        rows.append(_dependency("database", "database", where, seen, ("database",)))
    return DependenciesResponse(dependencies=rows)


def _dependency(
    name: str,
    kind: DependencyKind,
    target: str | None,
    seen: dict[str, dict[str, Any]],
    keys: tuple[str, ...],
) -> DependencyStatus:
    """The most recent record among `keys` (e.g. real LLM calls and the DNS check)."""
    records = [seen[k] for k in keys if k in seen]
    target = strip_userinfo(target) if target else None
    if not records:
        return DependencyStatus(name=name, kind=kind, target=target, status="unknown")
    last = max(records, key=lambda r: str(r["last_seen"]))
    return DependencyStatus(
        name=name,
        kind=kind,
        target=target,
        status="ok" if last["ok"] else "failing",
        detail=last["detail"],
        latency_ms=last["latency_ms"],
        last_seen=last["last_seen"],
    )


@router.get("/errors", response_model=ErrorsResponse)
async def get_errors(runtime: RuntimeDep) -> ErrorsResponse:
    """Recent errors by kind: count, last message (secrets redacted), last seen."""
    redactor = runtime.redactor
    entries = [
        ErrorEntry(**{**e, "last_message": redactor.redact(e["last_message"])})
        for e in runtime.state.errors()
    ]
    return ErrorsResponse(errors=entries)


# ---------------------------------------------------------------- writes (Bearer)


@router.post(
    "/loglevel", response_model=LogLevelResponse, dependencies=[OpsAuth], responses=_AUTH_RESPONSES
)
async def set_loglevel(body: LogLevelRequest) -> LogLevelResponse:
    """Change the log level of the whole process at once (422 on an unknown level)."""
    set_log_level(body.level)
    logger.warning("log level set to %s", body.level, extra={"level_set": body.level})
    return LogLevelResponse(level=body.level)


@router.post(
    "/drain", response_model=DrainResponse, dependencies=[OpsAuth], responses=_AUTH_RESPONSES
)
async def post_drain(runtime: RuntimeDep, body: DrainRequest | None = None) -> DrainResponse:
    """Stop accepting webhooks (503); running and queued alerts are still worked off.
    Idempotent. With `{"draining": false}`, accept webhooks again (not once shutting down)."""
    if body is None or body.draining:
        await runtime.intake.drain()
    else:
        await runtime.intake.resume()
    stats = runtime.intake.stats()
    logger.warning(
        "drain %s",
        "requested" if stats["draining"] else "ended",
        extra={"running": stats["running"], "queued": stats["queued"]},
    )
    return DrainResponse(
        draining=stats["draining"], running=stats["running"], queued=stats["queued"]
    )
