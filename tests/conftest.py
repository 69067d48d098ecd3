"""Shared fixtures: a valid Settings built by keyword, never from the process environment, and
a simulated PagerDuty on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import serve
from tests.fakes.postgres import PostgresServer

TEST_SECRETS = {
    "llm_api_key": "sk-test-llm-key-0123456789abcdef",
    "pagerduty_api_token": "pd-rest-token-0123456789",
    "pagerduty_routing_key": "R0123456789ABCDEF0123456789ABCDE",
    "ops_auth_token": "ops-token-0123456789abcdef",
}

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SettingsFactory:
    """Build Settings with test defaults; keyword arguments override any field."""
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    prompt = tmp_path / "WINDSURF_SRE.md"
    prompt.write_text("# Test SRE prompt\nDiagnose through /ops/* and report.\n")

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            **TEST_SECRETS,
            "service_registry": "api|http://127.0.0.1:9|true,worker|http://127.0.0.1:10|false",
            "sre_prompt_path": str(prompt),
            "incidents_dir": str(tmp_path / "incidents"),
        }
        values.update(overrides)
        return load_settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
async def fake_pd() -> AsyncIterator[tuple[FakePagerDuty, str]]:
    """A simulated PagerDuty (REST token: the test one) and its base URL."""
    app, fake = make_fake_pagerduty(api_token=TEST_SECRETS["pagerduty_api_token"])
    async with serve(app) as base_url:
        yield fake, base_url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (started on first use)."""
    server = PostgresServer.start_new()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()
