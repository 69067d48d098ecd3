"""The webhook receiver: auth, bounded bodies, clear 4xx, trace ids — against a real server."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.alerts import alertmanager_storm
from demo.simulators.llm import FakeLLM
from main.errors import ClientError
from main.webhooks import _read_body
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.stack import Stack, running_stack

TOKEN = TEST_SECRETS["ops_auth_token"]
DATA = Path(__file__).parent / "data"


def sample(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def gcp_for(service: str, incident: str = "0.demo") -> dict[str, Any]:
    payload = sample("gcp/metric-threshold-open-v1.2-cloudforet.json")
    payload["incident"]["incident_id"] = incident
    payload["incident"]["resource"] = {
        "type": "cloud_run_revision",
        "labels": {"service_name": service},
    }
    return payload


@pytest.fixture
async def stack(make_settings: SettingsFactory) -> AsyncIterator[Stack]:
    async with running_stack(make_settings, FakeLLM(), webhook_max_body_bytes=65536) as running:
        yield running


async def post(stack: Stack, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        return await client.post(path, **kw)


async def test_gcp_corpus_payload_is_accepted_with_incident_service_and_priority(
    stack: Stack,
) -> None:
    response = await post(stack, "/webhook/gcp", params={"auth_token": TOKEN}, json=gcp_for("api"))
    assert response.status_code == 202
    body = response.json()
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert body["alerts"] == [
        {
            "incident_id": "gcp:0.demo",
            "service": "api",
            "priority": "P2",  # default P3, raised: api is critical
            "status": "queued",
            "reason": None,
        }
    ]
    await stack.idle()


@pytest.mark.parametrize(
    "auth",
    [
        {"params": {"auth_token": TOKEN}},
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        {"headers": {"Authorization": "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()}},
    ],
    ids=["query", "bearer", "basic"],
)
async def test_every_documented_auth_form_is_accepted(stack: Stack, auth: dict[str, Any]) -> None:
    body = {"incident_id": "x", "summary": "s", "service": "worker"}
    response = await post(stack, "/webhook/generic", json=body, **auth)
    assert response.status_code == 202
    await stack.idle()


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"params": {"auth_token": "wrong"}},
        {"headers": {"Authorization": "Bearer wrong"}},
        {"headers": {"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}},
        {"headers": {"Authorization": "Basic !!notbase64"}},
        {"headers": {"Authorization": f"Token {TOKEN}"}},
    ],
    ids=["missing", "query", "bearer", "basic", "bad-basic", "other-scheme"],
)
async def test_wrong_or_missing_token_is_401_and_nothing_is_queued(
    stack: Stack, auth: dict[str, Any]
) -> None:
    body = {"incident_id": "x", "summary": "s", "service": "worker"}
    response = await post(stack, "/webhook/generic", json=body, **auth)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert stack.runtime.intake.stats()["total_received"] == 0


@pytest.mark.parametrize(
    ("provider", "content", "loc"),
    [
        ("gcp", b"{not json", ["body"]),
        ("gcp", b"\xff\xfe garbage", ["body"]),
        ("gcp", b"[1, 2]", []),
        ("gcp", json.dumps({"version": "1.2"}).encode(), ["incident"]),
        ("gcp", json.dumps({"version": "1.2", "incident": "x"}).encode(), ["incident"]),
        ("generic", json.dumps({"summary": "no id"}).encode(), ["incident_id"]),
    ],
    ids=["invalid-json", "not-utf8", "array", "gcp-no-incident", "string-for-object", "generic"],
)
async def test_bad_payload_is_422_naming_the_field(
    stack: Stack, provider: str, content: bytes, loc: list[str]
) -> None:
    response = await post(
        stack, f"/webhook/{provider}", params={"auth_token": TOKEN}, content=content
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] in ("invalid_json", "invalid_payload")
    assert body["detail"][0]["loc"][: len(loc)] == loc
    assert stack.runtime.intake.stats()["total_received"] == 0


async def test_oversized_body_is_413_from_content_length(stack: Stack) -> None:
    big = b'{"x": "' + b"a" * 2_000_000 + b'"}'
    response = await post(stack, "/webhook/gcp", params={"auth_token": TOKEN}, content=big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_oversized_chunked_body_is_413(stack: Stack) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(200):  # 3.2 MB offered without a Content-Length, 64 KiB allowed
            yield b" " * 16384

    response = await post(stack, "/webhook/gcp", params={"auth_token": TOKEN}, content=chunks())
    assert response.status_code == 413


async def test_body_reading_stops_at_the_first_chunk_past_the_limit(stack: Stack) -> None:
    consumed = 0

    class Streaming:
        headers: dict[str, str] = {}  # no Content-Length: chunked

        async def stream(self) -> AsyncIterator[bytes]:
            nonlocal consumed
            for _ in range(1000):
                consumed += 1
                yield b" " * 1000

    with pytest.raises(ClientError) as refused:
        await _read_body(Streaming(), 10_000, stack.runtime)  # type: ignore[arg-type]
    assert refused.value.status == 413
    assert consumed == 11


async def test_unknown_provider_is_404(stack: Stack) -> None:
    response = await post(stack, "/webhook/nagios", params={"auth_token": TOKEN}, json={})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_provider"


async def test_draining_refuses_webhooks_with_503_and_retry_after(stack: Stack) -> None:
    drained = await stack.client.post("/ops/drain")
    assert drained.json()["draining"] is True
    body = {"incident_id": "x", "summary": "s", "service": "worker"}
    response = await post(stack, "/webhook/generic", params={"auth_token": TOKEN}, json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"


async def test_valid_inbound_trace_id_is_kept_and_invalid_one_replaced(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        kept = await client.get("/health", headers={"X-Trace-Id": "abc-123.x_y"})
        replaced = await client.get("/health", headers={"X-Trace-Id": "bad id!"})
    assert kept.headers["x-trace-id"] == "abc-123.x_y"
    assert uuid.UUID(replaced.headers["x-trace-id"]).version == 4


async def test_health_is_ok(stack: Stack) -> None:
    response = await stack.client.get("/health")
    assert response.json() == {"status": "ok"}


async def test_no_bad_request_is_a_500_nor_logs_the_token(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [
        ("/webhook/gcp", {"params": {"auth_token": "wrong-" + TOKEN[:4]}, "content": b"{}"}),
        ("/webhook/gcp", {"params": {"auth_token": TOKEN}, "content": b"\x00"}),
        ("/webhook/cloudwatch", {"params": {"auth_token": TOKEN}, "content": b'"str"'}),
        ("/webhook/alertmanager", {"params": {"auth_token": TOKEN}, "json": {"alerts": "x"}}),
    ]
    for path, kw in bad:
        response = await post(stack, path, **kw)
        assert 400 <= response.status_code < 500, (path, response.text)
    assert TOKEN not in capsys.readouterr().out


@pytest.mark.parametrize("provider", ["alertmanager", "grafana"])
async def test_alerts_a_platform_left_out_are_a_warning_and_a_counted_error(
    stack: Stack, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = alertmanager_storm(0, 2, job="worker") | {"truncatedAlerts": 3}
    if provider == "grafana":
        body["version"] = "1"
    response = await stack.webhook(provider, body)
    errors = (await stack.client.get("/ops/errors")).json()["errors"]
    assert response.status_code == 202
    assert len(response.json()["alerts"]) == 2
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "left 3" in r.message]
    assert "truncatedAlerts" in warning.getMessage()
    [entry] = [e for e in errors if e["kind"] == "truncated_alerts"]
    assert entry["count"] == 1


async def test_a_notification_without_truncated_alerts_counts_no_error(stack: Stack) -> None:
    response = await stack.webhook("alertmanager", alertmanager_storm(0, 2, job="worker"))
    errors = (await stack.client.get("/ops/errors")).json()["errors"]
    assert response.status_code == 202
    assert [e for e in errors if e["kind"] == "truncated_alerts"] == []
