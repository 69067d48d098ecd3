"""`/alerts/*` over real HTTP on loopback: paging a large queue, cursors, limits, 404 bodies.

The app is the `/alerts` router with the real error handlers on a real `Intake` whose runner
never finishes a run (tests/fakes/runner.py), so what is queued stays queued.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from config import Settings
from demo.simulators.server import serve
from intake import Intake, Limits, queue
from intake.service import MemoryIntake
from main import alerts, errors
from models import Alert, AlertList, AlertState, AlertStatus, Priority, Provider
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.runner import FakeRunner, RecordingFinalizer

AUTH = {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}
BIG_QUEUE = 20_000
SERVICES = [f"svc-{n}" for n in range(7)]
PRIORITIES = list(Priority)


def alert(
    n: int, *, state: AlertState = AlertState.FIRING, priority: Priority | None = None
) -> Alert:
    return Alert(
        incident_id=f"generic:{n}",
        provider=Provider.GENERIC,
        service=SERVICES[n % len(SERVICES)],
        priority=priority or PRIORITIES[(n * 3) % len(PRIORITIES)],
        state=state,
        summary=f"summary of {n}",
    )


@dataclass
class Api:
    client: httpx.AsyncClient
    intake: Intake
    runner: FakeRunner
    submitted: list[Alert]

    def submit(self, item: Alert) -> AlertStatus:
        self.submitted.append(item)
        return self.intake.submit(item, trace_id="t-1").status

    def expected_queue(self) -> list[str]:
        """Every queued id in queue order (best priority, then arrival), computed apart."""
        rows = [
            (a.priority.rank, n, a.incident_id)
            for n, a in enumerate(self.submitted)
            if self.intake.get(a.incident_id).status is AlertStatus.QUEUED
        ]
        return [incident_id for _, _, incident_id in sorted(rows)]

    async def page(self, **params: Any) -> AlertList:
        response = await self.client.get("/alerts", params=params)
        assert response.status_code == 200, response.text
        return AlertList.model_validate(response.json())


@dataclass
class AlertsRuntime:
    """What `/alerts` reads of the lifespan's `Runtime`: settings and intake."""

    settings: Settings
    intake: MemoryIntake


def alerts_app(settings: Settings, intake: Intake) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(alerts.router)
    app.state.runtime = AlertsRuntime(settings, MemoryIntake(intake, lambda _name: None))
    return app


@asynccontextmanager
async def running_api(settings: Settings, *, concurrency: int = 3) -> AsyncIterator[Api]:
    runner = FakeRunner(limit=concurrency)
    limits = Limits(concurrency=concurrency, queue_size=BIG_QUEUE + 100, tick_seconds=3600)
    async with Intake(
        runner=runner, finalize=RecordingFinalizer(), limits=limits, clock=lambda: 0.0
    ) as intake:
        app = alerts_app(settings, intake)
        async with (
            serve(app, lifespan="off") as base_url,
            httpx.AsyncClient(base_url=base_url, headers=AUTH) as client,
        ):
            yield Api(client, intake, runner, [])


@pytest.fixture
async def api(make_settings: SettingsFactory) -> AsyncIterator[Api]:
    async with running_api(make_settings()) as opened:
        yield opened


@pytest.fixture
async def big_queue(api: Api) -> Api:
    for n in range(BIG_QUEUE):
        assert api.submit(alert(n)) is AlertStatus.QUEUED
    return api


async def test_first_page_holds_the_best_queued_alerts_in_queue_order_and_a_cursor(
    big_queue: Api,
) -> None:
    response = await big_queue.client.get("/alerts", params={"limit": 100})
    page = AlertList.model_validate(response.json())
    assert [a.incident_id for a in page.queued] == big_queue.expected_queue()[:100]
    assert [a.priority for a in page.queued[:1]] == [Priority.P1]
    assert all(a.status is AlertStatus.QUEUED for a in page.queued)
    assert {a.status for a in page.running} == {AlertStatus.RUNNING}
    assert len(page.running) == 3
    assert page.recent == []
    assert page.next_cursor
    assert len(response.content) < 50_000  # a page, not the 20,000-alert queue (3.4 MB)


async def test_default_page_is_100(big_queue: Api) -> None:
    page = await big_queue.page()
    assert len(page.queued) == 100


async def test_following_cursors_visits_every_queued_alert_once_in_order(big_queue: Api) -> None:
    seen: list[str] = []
    page = await big_queue.page(limit=100)
    pages = 1
    while True:
        seen += [a.incident_id for a in page.queued]
        if page.next_cursor is None:
            break
        page = await big_queue.page(limit=100, cursor=page.next_cursor)
        pages += 1
    assert seen == big_queue.expected_queue()
    assert len(seen) == BIG_QUEUE - 3  # three are running
    assert pages == -(-len(seen) // 100)


async def test_last_page_has_no_cursor(api: Api) -> None:
    for n in range(8):
        api.submit(alert(n))
    first = await api.page(limit=3)
    assert len(first.queued) == 3
    assert first.next_cursor is not None
    last = await api.page(limit=3, cursor=first.next_cursor)
    assert len(last.queued) == 2  # 8 submitted, 3 running
    assert last.next_cursor is None
    exact = await api.page(limit=5)
    assert len(exact.queued) == 5
    assert exact.next_cursor is None  # nothing follows a full last page


async def test_cursor_survives_a_changing_queue(api: Api) -> None:
    for n in range(3):  # one run per service: these start at once
        api.submit(alert(n, priority=Priority.P1))
    for n in range(3, 13):
        api.submit(alert(n, priority=Priority.P3))
    first = await api.page(limit=4)
    assert [a.incident_id for a in first.queued] == [f"generic:{n}" for n in range(3, 7)]
    api.submit(alert(7, state=AlertState.RESOLVED))  # on the next page: gone before it
    api.submit(alert(20, priority=Priority.P5))  # behind the cursor's place: shown later
    api.submit(alert(21, priority=Priority.P1))  # ahead of the cursor's place: not shown
    rest: list[str] = []
    page = first
    while page.next_cursor is not None:
        page = await api.page(limit=4, cursor=page.next_cursor)
        rest += [a.incident_id for a in page.queued]
    assert rest == [f"generic:{n}" for n in (8, 9, 10, 11, 12, 20)]


async def test_limit_caps_running_and_recent_too(make_settings: SettingsFactory) -> None:
    async with running_api(make_settings(), concurrency=3) as api:
        for n in range(6):
            api.submit(alert(n))
        await api.runner.wait_started(3)
        for incident_id in list(api.runner.started):
            api.runner.release(incident_id)
        await api.runner.wait_started(6)
        page = await api.page(limit=2)
        everything = await api.page(limit=1000)
        assert len(everything.running) == len(everything.recent) == 3
        assert page.running == everything.running[:2]
        assert page.recent == everything.recent[:2]  # the newest


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "many"])
async def test_limit_outside_1_to_1000_is_422(api: Api, limit: str) -> None:
    response = await api.client.get("/alerts", params={"limit": limit})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!",
        "%%%",
        "é",
        "\x00",
        "q" * 65,
        base64.urlsafe_b64encode(b"q-1").decode(),
        base64.urlsafe_b64encode(b"x12").decode(),
        base64.urlsafe_b64encode(b"q" + b"9" * 25).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_a_cursor_no_page_handed_out_is_422(api: Api, cursor: str) -> None:
    api.submit(alert(1))
    response = await api.client.get("/alerts", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["detail"][0]["loc"] == ["query", "cursor"]


def test_cursor_round_trips_every_order_key() -> None:
    for order in (0, 1, 2**48 + 7, 5 << 48 | (2**48 - 1), 10**19 - 1):
        assert alerts.decode_cursor(alerts.encode_cursor(order)) == order


async def test_listing_needs_the_ops_token(api: Api) -> None:
    response = await api.client.get("/alerts", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


async def asgi_get(app: FastAPI, path: str) -> tuple[int, bytes]:
    """One GET straight through the ASGI interface (httpx refuses URLs over 64 KiB)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", AUTH["Authorization"].encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize("suffix", ["", "/report"])
async def test_404_for_a_100000_character_id_echoes_a_short_cut_of_it(
    settings: Settings, suffix: str
) -> None:
    # In process: over HTTP, a 100,000-character URL is refused before the app (head > 16 KiB).
    async with Intake(runner=FakeRunner(limit=1), finalize=RecordingFinalizer()) as intake:
        status, body = await asgi_get(
            alerts_app(settings, intake), f"/alerts/{'x' * 100_000}{suffix}"
        )
    assert status == 404
    assert len(body) < 600
    assert "truncated" in json.loads(body)["detail"]


async def test_openapi_documents_paging(settings: Settings) -> None:
    async with Intake(runner=FakeRunner(limit=1), finalize=RecordingFinalizer()) as intake:
        schema = alerts_app(settings, intake).openapi()
    operation = schema["paths"]["/alerts"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["limit"]["schema"]["default"] == 100
    assert "description" in params["cursor"]
    assert "422" in operation["responses"]
    listing = schema["components"]["schemas"]["AlertList"]
    assert set(listing["required"]) == {"running", "queued", "recent", "next_cursor"}
    assert all(field.get("description") for field in listing["properties"].values())


@pytest.mark.parametrize("seed", range(5))
async def test_pages_stay_exact_while_alerts_resolve_expire_and_are_compacted(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake alone: every walk through the pages equals the queue computed apart, while
    resolutions leave dead entries mid-line, expiry at the front, and compaction runs."""
    monkeypatch.setattr(queue, "COMPACT_SLACK", 8)
    rng = random.Random(seed)
    now = [0.0]
    limits = Limits(concurrency=3, queue_size=10_000, ttl_seconds=50, tick_seconds=3600)
    runner = FakeRunner(limit=3)
    async with Intake(
        runner=runner, finalize=RecordingFinalizer(), limits=limits, clock=lambda: now[0]
    ) as intake:
        submitted: list[Alert] = []
        for step in range(1500):
            roll = rng.random()
            if roll < 0.7:
                item = alert(len(submitted), priority=rng.choice(PRIORITIES))
                submitted.append(item)
                intake.submit(item, trace_id="t")
            elif roll < 0.9 and submitted:
                gone = rng.choice(submitted)
                intake.submit(gone.model_copy(update={"state": AlertState.RESOLVED}), trace_id="t")
            else:
                now[0] += rng.uniform(0, 3)
                intake.tick()
            if step % 50 == 0:
                expected = sorted(
                    (a.priority.rank, n, a.incident_id)
                    for n, a in enumerate(submitted)
                    if (record := intake.get(a.incident_id)) is not None
                    and record.status is AlertStatus.QUEUED
                )
                assert walk(intake, rng.randint(1, 40)) == [i for _, _, i in expected]


def walk(intake: Intake, limit: int) -> list[str]:
    seen: list[str] = []
    after: int | None = None
    while True:
        page, after = intake.queued_page(limit=limit, after=after)
        seen += [r.incident_id for r in page]
        if after is None:
            return seen


async def test_a_transcript_no_longer_kept_is_a_404_saying_so(api: Api) -> None:
    """Only the last 100 finished occurrences keep their transcript; an older run's is gone,
    and the 404 says so rather than that there was no run."""
    api.runner.auto = True
    api.runner.on_start = lambda record: setattr(record, "turns", 1)
    for n in range(101):
        api.submit(alert(n))
    await api.intake.wait_idle()
    oldest = await api.client.get("/alerts/generic:0/transcript")
    assert oldest.status_code == 404
    assert "no longer kept" in oldest.json()["detail"]
    detail = (await api.client.get("/alerts/generic:0")).json()
    assert (detail["occurrence"], detail["status"]) == (1, "resolved")
