"""The runtime's own /ops/* router, mounted on a small app with stub intake and PagerDuty."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import main.ops as ops
from config import Settings
from intake.approvals import ApprovalDesk
from main import create_app
from main.auth import Unauthorized, unauthorized_handler
from main.deps import Runtime
from main.errors import CLIENT_CLOSED_REQUEST
from main.ops import router
from main.session import Sessions
from state import RuntimeState
from telemetry import APP_LOGGERS
from tests.conftest import TEST_SECRETS, SettingsFactory
from tools import Redactor
from tools.cloud import NotConfiguredCloud


class StubIntake:
    def __init__(self) -> None:
        self.draining = False
        self.drain_calls = 0

    def stats(self) -> dict[str, Any]:
        return {"running": 1, "queued": 2, "limit": 3, "queue_max": 1000, "draining": self.draining}

    async def drain(self) -> None:
        self.drain_calls += 1
        self.draining = True


class StubPagerDuty:
    def __init__(self) -> None:
        self.result: tuple[bool, str] = (True, "HTTP 200")
        self.hang = False

    async def probe(self) -> tuple[bool, str]:
        if self.hang:
            await asyncio.Event().wait()  # never set: only the check's timeout ends this
        return self.result


@dataclass
class Harness:
    client: httpx.AsyncClient
    runtime: Runtime
    intake: StubIntake
    pagerduty: StubPagerDuty

    @property
    def state(self) -> RuntimeState:
        state: RuntimeState = self.runtime.state
        return state


@asynccontextmanager
async def open_harness(settings: Settings) -> AsyncIterator[Harness]:
    intake, pagerduty = StubIntake(), StubPagerDuty()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as http:
            app.state.runtime = Runtime(
                settings=settings,
                http=http,
                state=RuntimeState(),
                intake=intake,
                pager=pagerduty,  # type: ignore[arg-type]
                reports=None,  # not used by /ops/*
                cloud=NotConfiguredCloud(),
                redactor=Redactor(settings.secret_values()),
                approvals=ApprovalDesk(timeout_seconds=900),
                sessions=Sessions(settings),
            )
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    app.add_exception_handler(Unauthorized, unauthorized_handler)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client, app.state.runtime, intake, pagerduty)


LOCAL_LLM = {"llm_api_base_url": "http://localhost:1"}  # resolvable without a DNS server


@pytest.fixture
async def harness(make_settings: SettingsFactory) -> AsyncIterator[Harness]:
    async with open_harness(make_settings(**LOCAL_LLM)) as opened:
        yield opened


AUTH = {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}


# ---------------------------------------------------------------- GET, no auth


async def test_status_reports_verdict_and_golden_signals(harness: Harness) -> None:
    harness.state.record_request(route="/x", status=200, duration_s=0.02)
    response = await harness.client.get("/ops/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["reasons"] == []
    assert body["mode"] == "live"
    assert body["draining"] is False
    assert body["version"] == "0.1.0"
    assert body["golden_signals"]["saturation"] == pytest.approx(1 / 3, rel=0.01)
    assert body["golden_signals"]["queue_depth"] == 2
    assert body["golden_signals"]["latency_ms"]["p50"] == pytest.approx(20, rel=0.05)


async def test_status_is_degraded_while_draining(harness: Harness) -> None:
    await harness.intake.drain()
    body = (await harness.client.get("/ops/status")).json()
    assert body["status"] == "degraded"
    assert body["draining"] is True
    assert "draining: new webhooks are refused" in body["reasons"]


async def test_metrics_show_latency_saturation_and_tokens(harness: Harness) -> None:
    harness.state.record_request(route="/webhook/{provider}", status=202, duration_s=0.005)
    harness.state.record_tokens(input_tokens=100, output_tokens=20)
    response = await harness.client.get("/ops/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body["requests"]["latency_ms"]["p99"] == pytest.approx(5, rel=0.05)
    assert body["saturation"]["running"] == 1
    assert body["saturation"]["queue_fill_ratio"] == 0.002
    assert body["token_usage"]["total"] == 120
    assert body["token_usage"]["last_hour"] == 120


async def test_health_is_ok_when_every_check_passes(harness: Harness) -> None:
    response = await harness.client.get("/ops/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    names = {c["name"]: c for c in body["checks"]}
    assert set(names) == {"pagerduty", "prompt", "incidents_dir", "llm_dns"}
    assert all(c["status"] == "ok" and c["latency_ms"] >= 0 for c in names.values())
    assert set(harness.state.dependencies()) == set(names)
    assert list((harness.runtime.settings.incidents_dir).iterdir()) == []


async def test_health_is_503_when_pagerduty_fails(harness: Harness) -> None:
    harness.pagerduty.result = (False, "HTTP 401 from PagerDuty")
    response = await harness.client.get("/ops/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    failing = [c for c in body["checks"] if c["status"] == "failing"]
    assert failing == [
        {
            "name": "pagerduty",
            "status": "failing",
            "latency_ms": failing[0]["latency_ms"],
            "detail": "HTTP 401 from PagerDuty",
        }
    ]
    assert harness.state.dependencies()["pagerduty"]["ok"] is False


async def test_health_is_503_when_a_check_times_out(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "CHECK_TIMEOUT_SECONDS", 0.05)
    harness.pagerduty.hang = True
    response = await harness.client.get("/ops/health")
    assert response.status_code == 503
    check = next(c for c in response.json()["checks"] if c["name"] == "pagerduty")
    assert check["detail"] == "timed out after 0.05s"


async def test_health_is_failing_when_the_prompt_is_empty(harness: Harness) -> None:
    harness.runtime.settings.sre_prompt_path.write_text("  \n")
    response = await harness.client.get("/ops/health")
    assert response.status_code == 503
    assert response.json()["status"] == "failing"


SECRETS = {
    "llm_api_key": "Kx7LLMsecretQ9w8e7r6t5",
    "pagerduty_api_token": "Pz3PDtokenM1n2b3v4c5",
    "pagerduty_routing_key": "Rk8ROUTINGj4h5g6f7d8",
    "ops_auth_token": "Ot5OPStokenL0k9j8h7",
    "webhook_auth_token": "Wh2HOOKtokenA1s2d3f4",
}


async def test_config_shows_no_secret_nor_any_prefix(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        **SECRETS,
        **LOCAL_LLM,
        service_registry="api|http://user:Pw9hunter2pass@127.0.0.1:9|true,worker|http://127.0.0.1:10|false",
        scaling_limits="api|1|5|application",
    )
    async with open_harness(settings) as harness:
        response = await harness.client.get("/ops/config")
    assert response.status_code == 200
    text = response.text
    for secret in [*SECRETS.values(), "Pw9hunter2pass"]:
        for length in range(4, len(secret) + 1):
            assert secret[:length] not in text
    body = response.json()
    assert body["secrets"] == {**dict.fromkeys(SECRETS, "configured"), "database_url": "not set"}
    assert body["service_registry"][0] == {
        "name": "api",
        "url": "http://127.0.0.1:9",
        "critical": True,
    }
    assert body["scaling_limits"] == [
        {"service": "api", "min_replicas": 1, "max_replicas": 5, "mode": "application"}
    ]
    assert body["settings"]["max_concurrent_alerts"] == 3
    assert body["settings"]["llm_api_base_url"] == "http://localhost:1"


async def test_dependencies_list_llm_pagerduty_every_service_and_cloud(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(**LOCAL_LLM, cloud_provider="gcp", gcp_project_id="proj-1")
    async with open_harness(settings) as harness:
        harness.state.record_dependency("pagerduty", ok=False, detail="HTTP 503", latency_ms=4.0)
        response = await harness.client.get("/ops/dependencies")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["dependencies"]}
    assert set(rows) == {"llm", "pagerduty", "api", "worker", "gcp"}
    assert rows["pagerduty"]["status"] == "failing"
    assert rows["pagerduty"]["detail"] == "HTTP 503"
    assert rows["api"] == {
        "name": "api",
        "kind": "service",
        "target": "http://127.0.0.1:9",
        "critical": True,
        "status": "unknown",
        "detail": None,
        "latency_ms": None,
        "last_seen": None,
    }
    assert rows["gcp"]["target"] == "proj-1"


async def test_llm_dependency_shows_the_dns_check_until_a_real_call(harness: Harness) -> None:
    await harness.client.get("/ops/health")
    rows = (await harness.client.get("/ops/dependencies")).json()["dependencies"]
    llm = next(row for row in rows if row["name"] == "llm")
    assert llm["status"] == "ok"
    assert llm["last_seen"] is not None


async def test_errors_are_listed_with_secrets_redacted(harness: Harness) -> None:
    token = TEST_SECRETS["pagerduty_api_token"]
    harness.state.record_error("pagerduty_escalation", f"401 for token {token}")
    response = await harness.client.get("/ops/errors")
    assert response.status_code == 200
    (entry,) = response.json()["errors"]
    assert entry["kind"] == "pagerduty_escalation"
    assert entry["count"] == 1
    assert entry["last_message"] == "401 for token [REDACTED]"


# ---------------------------------------------------------------- POST, Bearer


@pytest.mark.parametrize("path", ["/ops/loglevel", "/ops/drain"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TEST_SECRETS['ops_auth_token']}"},
        {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}x"},
    ],
)
async def test_writes_need_the_ops_token(
    harness: Harness, path: str, headers: dict[str, str]
) -> None:
    response = await harness.client.post(path, json={"level": "DEBUG"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert harness.intake.drain_calls == 0


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    names = ["", *APP_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_log_levels")
async def test_loglevel_changes_the_root_logger(harness: Harness) -> None:
    response = await harness.client.post("/ops/loglevel", json={"level": "debug"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"level": "DEBUG"}
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("intake").level == logging.DEBUG


@pytest.mark.usefixtures("restore_log_levels")
async def test_unknown_log_level_is_422(harness: Harness) -> None:
    before = logging.getLogger().level
    response = await harness.client.post("/ops/loglevel", json={"level": "LOUD"}, headers=AUTH)
    assert response.status_code == 422
    assert logging.getLogger().level == before


async def test_drain_is_idempotent(harness: Harness) -> None:
    for _ in range(2):
        response = await harness.client.post("/ops/drain", headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {"draining": True, "running": 1, "queued": 2}
    assert harness.intake.draining


async def test_openapi_documents_every_ops_endpoint(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    expected = {"status", "health", "metrics", "config", "dependencies", "errors"}
    assert {f"/ops/{name}" for name in expected} <= set(spec["paths"])
    assert "post" in spec["paths"]["/ops/drain"]
    assert "401" in spec["paths"]["/ops/loglevel"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert schemas["MetricsResponse"]["description"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


# ---------------------------------------------------------------- requests that end early


async def send_half_a_webhook_then_vanish(app: FastAPI) -> int:
    """A webhook whose client leaves mid-body, straight through ASGI; the status sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhook/generic",
        "raw_path": b"/webhook/generic",
        "root_path": "",
        "query_string": f"auth_token={TEST_SECRETS['ops_auth_token']}".encode(),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    messages = iter(
        [
            {"type": "http.request", "body": b'{"incident_id": "half", ', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    (status,) = statuses
    return status


@pytest.mark.usefixtures("restore_log_levels")
async def test_client_gone_mid_body_is_neither_a_5xx_nor_an_error(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(**LOCAL_LLM))
    async with app.router.lifespan_context(app):
        status = await send_half_a_webhook_then_vanish(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            metrics = (await client.get("/ops/metrics")).json()
            errors = (await client.get("/ops/errors")).json()["errors"]
    assert status == CLIENT_CLOSED_REQUEST
    assert metrics["requests"]["by_route"]["POST /webhook/{provider}"] == {
        "requests": 1,
        "server_errors": 0,
    }
    assert metrics["requests"]["error_rate"] == 0
    assert errors == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.levelname for r in caplog.records if "went away" in r.getMessage()] == ["INFO"]
