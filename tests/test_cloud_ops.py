"""The cloud check in /ops/health and the cloud row in /ops/dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from config import Settings
from demo.simulators.server import serve
from intake.approvals import ApprovalDesk
from main.deps import Runtime
from main.ops import router
from main.session import Sessions
from state import RuntimeState
from tests.conftest import SettingsFactory
from tests.fakes.gcp import make_fake_gcp
from tools import Redactor
from tools.cloud import cloud_tools_for
from tools.gcp_auth import NO_CREDENTIALS

LOCAL_LLM = {"llm_api_base_url": "http://localhost:1"}


class StubIntake:
    def stats(self) -> dict[str, Any]:
        return {"running": 0, "queued": 0, "limit": 3, "queue_max": 1000, "draining": False}


class StubPagerDuty:
    async def probe(self) -> tuple[bool, str]:
        return True, "HTTP 200"


@asynccontextmanager
async def ops_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as http:
            app.state.runtime = Runtime(
                settings=settings,
                http=http,
                state=RuntimeState(),
                intake=StubIntake(),  # type: ignore[arg-type]
                pager=StubPagerDuty(),  # type: ignore[arg-type]
                reports=None,  # type: ignore[arg-type]
                cloud=cloud_tools_for(settings, http),
                redactor=Redactor(()),
                approvals=ApprovalDesk(timeout_seconds=900),
                sessions=Sessions(settings),
            )
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def gcp_settings(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    app, gcp = make_fake_gcp()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    async with serve(app) as base_url:
        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS", str(gcp.write_key_file(tmp_path, base_url))
        )
        yield make_settings(
            **LOCAL_LLM,
            cloud_provider="gcp",
            gcp_project_id="demo-project",
            **gcp.settings_for(base_url),
        )


def checks(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in body["checks"]}


async def test_health_has_no_cloud_check_without_a_provider(make_settings: SettingsFactory):
    async with ops_client(make_settings(**LOCAL_LLM)) as client:
        body = (await client.get("/ops/health")).json()
    assert "cloud" not in checks(body)


async def test_health_checks_gcp_credentials_and_apis(gcp_settings: Settings) -> None:
    async with ops_client(gcp_settings) as client:
        response = await client.get("/ops/health")
        rows = (await client.get("/ops/dependencies")).json()["dependencies"]
    cloud = checks(response.json())["cloud"]
    assert cloud["status"] == "ok", cloud
    assert cloud["detail"] == "token ok; logs and metrics of project demo-project readable"
    (row,) = [r for r in rows if r["kind"] == "cloud"]
    assert (row["name"], row["target"], row["status"]) == ("gcp", "demo-project", "ok")


async def test_missing_gcp_credentials_degrade_health(
    gcp_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    async with ops_client(gcp_settings) as client:
        response = await client.get("/ops/health")
    cloud = checks(response.json())["cloud"]
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert cloud["status"] == "failing"
    assert cloud["detail"].startswith(NO_CREDENTIALS)


async def test_aws_dependency_row_names_the_region(make_settings: SettingsFactory) -> None:
    settings = make_settings(**LOCAL_LLM, cloud_provider="aws", aws_region="eu-west-1")
    async with ops_client(settings) as client:
        rows = (await client.get("/ops/dependencies")).json()["dependencies"]
    (row,) = [r for r in rows if r["kind"] == "cloud"]
    assert (row["name"], row["target"], row["status"]) == ("aws", "eu-west-1", "unknown")
