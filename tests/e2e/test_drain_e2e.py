"""Drain over real HTTP: refusals while draining are not errors, and a drain can be undone."""

from __future__ import annotations

from demo.simulators.llm import FakeLLM, say
from tests.conftest import SettingsFactory
from tests.fakes.stack import Stack, running_stack


def alert(incident: str) -> dict[str, object]:
    return {"incident_id": incident, "summary": "Error rate above 5%", "service": "worker"}


async def drain(stack: Stack, body: dict[str, object] | None = None) -> dict[str, object]:
    response = await stack.client.post("/ops/drain", json=body)
    assert response.status_code == 200
    answer: dict[str, object] = response.json()
    return answer


async def test_refusals_while_draining_make_status_degraded_never_unhealthy(
    make_settings: SettingsFactory,
) -> None:
    async with running_stack(make_settings, FakeLLM()) as stack:
        assert (await drain(stack))["draining"] is True
        refused = [(await stack.webhook("generic", alert(f"d-{n}"))).status_code for n in range(20)]
        status = (await stack.client.get("/ops/status")).json()
        metrics = (await stack.client.get("/ops/metrics")).json()
        errors = (await stack.client.get("/ops/errors")).json()["errors"]
    assert refused == [503] * 20
    assert status["status"] == "degraded"
    assert any(reason.startswith("draining") for reason in status["reasons"])
    assert metrics["requests"]["error_rate"] == 0
    assert errors == []


async def test_drain_is_undone_by_draining_false(make_settings: SettingsFactory) -> None:
    async with running_stack(make_settings, FakeLLM(script=[say("Nothing to do.")])) as stack:
        await drain(stack)
        assert (await stack.webhook("generic", alert("while-draining"))).status_code == 503
        resumed = await drain(stack, {"draining": False})
        accepted = await stack.webhook("generic", alert("after"))
        await stack.idle()
        status = (await stack.client.get("/ops/status")).json()
    assert resumed == {"draining": False, "running": 0, "queued": 0}
    assert accepted.status_code == 202
    assert accepted.json()["alerts"][0]["status"] == "queued"
    assert status["draining"] is False
