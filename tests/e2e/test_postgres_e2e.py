"""STATE_BACKEND=postgres end to end, in process (CONTRACT §8): the real app over HTTP on a
real PostgreSQL server, the fake model, services and PagerDuty. Two apps on one database are
two replicas. The multi-process tests (kill -9, full restarts) are in
tests/e2e/test_replicas_e2e.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from demo.simulators.llm import Call, FakeLLM, say, tools
from demo.simulators.server import serve
from main import create_app
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.policies import propose_then_conclude
from tests.fakes.stack import Stack, running_stack

STATUS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "status"})
RESTART = Call(
    "call_ops_endpoint", {"service": "worker", "endpoint": "/ops/restart", "method": "POST"}
)


def alert(incident: str = "inc-1", **extra: Any) -> dict[str, Any]:
    return {
        "incident_id": incident,
        "summary": "Worker error rate above 5%",
        "service": "worker",
        **extra,
    }


@contextlib.asynccontextmanager
async def second_replica(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the same settings (the same database): a second replica."""
    async with (
        serve(create_app(stack.settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}
        ) as client,
    ):
        yield client


async def test_an_alert_is_run_and_every_view_is_served_from_the_database(
    make_settings: SettingsFactory, database_url: str
) -> None:
    llm = FakeLLM(script=[tools(STATUS), say("Worker healthy again.")])
    async with running_stack(
        make_settings, llm, state_backend="postgres", database_url=database_url
    ) as stack:
        accepted = await stack.webhook("generic", alert())
        await stack.idle()
        async with second_replica(stack) as other:
            detail = (await other.get("/alerts/generic:inc-1")).json()
            report = await other.get("/alerts/generic:inc-1/report")
            transcript = (await other.get("/alerts/generic:inc-1/transcript")).json()
            listed = (await other.get("/alerts")).json()
            repeat = (
                await other.post(
                    "/webhook/generic",
                    json=alert(),
                    params={"auth_token": TEST_SECRETS["ops_auth_token"]},
                )
            ).json()
            health = (await other.get("/ops/health")).json()
            dependencies = (await other.get("/ops/dependencies")).json()
    assert accepted.status_code == 202
    assert detail["status"] == "resolved"
    assert [t["name"] for t in detail["tool_calls"]] == ["call_ops_endpoint"]
    assert [s["status"] for s in detail["timeline"]] == ["queued", "running", "resolved"]
    assert report.status_code == 200
    assert "Worker healthy again." in report.text
    assert [t["turn"] for t in transcript["turns"]] == [1, 2]
    assert [r["incident_id"] for r in listed["recent"]] == ["generic:inc-1"]
    assert repeat["alerts"][0]["reason"] == "recently_handled"  # the other replica knows
    database = next(c for c in health["checks"] if c["name"] == "database")
    assert database["status"] == "ok"
    row = next(d for d in dependencies["dependencies"] if d["name"] == "database")
    assert row["kind"] == "database"
    assert "@" not in (row["target"] or "")


async def test_a_repeat_sent_to_another_replica_reaches_the_running_agent(
    make_settings: SettingsFactory, database_url: str
) -> None:
    gate = asyncio.Event()
    llm = FakeLLM(script=[tools(STATUS, hold=gate), say("Done.")])
    async with running_stack(
        make_settings, llm, state_backend="postgres", database_url=database_url
    ) as stack:
        await stack.webhook("generic", alert())
        await llm.wait_for_requests(1)
        async with second_replica(stack) as other:
            repeat = await other.post(
                "/webhook/generic",
                json=alert(summary="Worker error rate above 40%"),
                params={"auth_token": TEST_SECRETS["ops_auth_token"]},
            )
            gate.set()
            await stack.idle()
    assert repeat.json()["alerts"][0]["reason"] == "running"
    told = "\n".join(str(m["content"]) for m in llm.requests[1]["messages"] if m["role"] == "user")
    assert "Worker error rate above 40%" in told


async def test_the_database_down_is_a_503_with_retry_after(
    make_settings: SettingsFactory, database_url: str, postgres_server: Any
) -> None:
    llm = FakeLLM(script=[say("ok")])
    async with running_stack(
        make_settings, llm, state_backend="postgres", database_url=database_url
    ) as stack:
        postgres_server.stop()
        try:
            refused = await stack.webhook("generic", alert())
            health = await stack.client.get("/ops/health")
        finally:
            postgres_server.start()
        accepted = await stack.webhook("generic", alert())
        await stack.idle()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "10"
    assert refused.json()["error"] == "database_unavailable"
    assert health.status_code == 503
    assert accepted.status_code == 202
    assert accepted.json()["alerts"][0]["status"] == "queued"


async def test_a_decision_on_another_replica_reaches_the_run_and_is_taken_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings,
        llm,
        state_backend="postgres",
        database_url=database_url,
        agent_mode="approve",
    ) as stack:
        await stack.webhook("generic", alert())
        async with second_replica(stack) as other:
            [approval] = await pending(other)
            waiting = (await other.get("/alerts/generic:inc-1")).json()
            listed = (await other.get("/alerts")).json()
            path = f"/alerts/generic:inc-1/approvals/{approval['approval_id']}"
            answers = await asyncio.gather(
                *(
                    client.post(path, json={"decision": "approve", "note": f"from {n}"})
                    for n, client in enumerate([stack.client, other] * 3)
                )
            )
            await stack.idle()
            done = (await other.get("/alerts/generic:inc-1")).json()
    assert waiting["status"] == "awaiting_approval"
    assert [r["status"] for r in listed["running"]] == ["awaiting_approval"]
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5
    assert stack.services["worker"].paths("POST") == ["/ops/restart"]
    assert done["status"] == "resolved"
    assert [a["status"] for a in done["approvals"]] == ["approved"]
    assert done["approvals"][0]["result"] == "sent; ok"


async def pending(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The pending approvals once there is one (polled like any API client, bounded)."""
    async with asyncio.timeout(10):
        while True:
            approvals: list[dict[str, Any]] = (await client.get("/approvals")).json()["approvals"]
            if approvals:
                return approvals
            await asyncio.sleep(0.05)
