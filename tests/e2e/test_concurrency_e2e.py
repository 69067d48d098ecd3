"""Intake's concurrency rules end to end: overlap across services, one run per service, the
global limit, and an alert storm. Overlap is proved with held fake-service endpoints, never
with timing."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from demo.simulators.llm import FakeLLM
from tests.conftest import SettingsFactory
from tests.fakes.policies import incident_of, status_then_conclude
from tests.fakes.stack import Stack, running_stack

FIVE = {f"svc{i}": False for i in range(5)}


def generic(incident: str, service: str) -> dict[str, Any]:
    return {"incident_id": incident, "summary": f"{service} error rate high", "service": service}


async def listing(stack: Stack) -> dict[str, list[str]]:
    body = (await stack.client.get("/alerts")).json()
    return {
        key: [a["incident_id"] for a in rows] for key, rows in body.items() if key != "next_cursor"
    }


async def test_services_run_concurrently_up_to_the_global_limit(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=status_then_conclude())
    async with running_stack(make_settings, llm, services=FIVE, max_concurrent_alerts=3) as stack:
        for fake in stack.services.values():
            fake.hold("/ops/status")
        try:
            for name in FIVE:
                await stack.webhook("generic", generic(f"inc-{name}", name))
            for name in ("svc0", "svc1", "svc2"):  # three runs in flight at once
                await stack.services[name].arrived("/ops/status")
            during = await listing(stack)
            untouched = [len(stack.services[n].requests) for n in ("svc3", "svc4")]
            stack.services["svc0"].release()
            await stack.services["svc3"].arrived("/ops/status")  # a slot freed: next starts
        finally:
            for fake in stack.services.values():
                fake.release()
        await stack.idle()
        after = await listing(stack)
    assert sorted(during["running"]) == ["generic:inc-svc0", "generic:inc-svc1", "generic:inc-svc2"]
    assert during["queued"] == ["generic:inc-svc3", "generic:inc-svc4"]
    assert untouched == [0, 0]
    assert sorted(after["recent"]) == sorted(f"generic:inc-{n}" for n in FIVE)


async def test_alerts_of_one_service_run_one_after_the_other(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM(policy=status_then_conclude())
    async with running_stack(make_settings, llm, max_concurrent_alerts=3) as stack:
        worker = stack.services["worker"]
        worker.hold("/ops/status")
        try:
            await stack.webhook("generic", generic("first", "worker"))
            await stack.webhook("generic", generic("second", "worker"))
            await worker.arrived("/ops/status")
            during = await listing(stack)
            status_calls = worker.paths().count("/ops/status")
        finally:
            worker.release()
        await stack.idle()
    assert during == {"running": ["generic:first"], "queued": ["generic:second"], "recent": []}
    assert status_calls == 1  # the second run had not started while the first was held
    order = [incident_of(r) for r in llm.requests]
    assert order == ["generic:first"] * 2 + ["generic:second"] * 2  # not interleaved


async def test_alert_storm_runs_each_incident_once_and_deduplicates_the_rest(
    make_settings: SettingsFactory,
) -> None:
    llm = FakeLLM()  # answers at once, without tool calls
    limit = asyncio.Semaphore(32)

    async def fire(stack: Stack, number: int) -> str:
        incident = number % 20
        async with limit:
            response = await stack.webhook(
                "generic", generic(f"storm-{incident}", f"svc{incident % 5}")
            )
        assert response.status_code == 202
        return str(response.json()["alerts"][0]["status"])

    async with running_stack(make_settings, llm, services=FIVE, log_level="WARNING") as stack:
        statuses = await asyncio.gather(*(fire(stack, n) for n in range(500)))
        await stack.idle()
        after = await listing(stack)
    assert Counter(statuses) == {"queued": 20, "deduplicated": 480}
    runs = [incident_of(r) for r in llm.requests]
    assert len(runs) == 20
    assert len(set(runs)) == 20
    assert len(after["recent"]) == 20
    assert after["running"] == after["queued"] == []
