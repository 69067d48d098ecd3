"""eval.services: a scenario's service answers only what the scenario defines."""

from __future__ import annotations

import httpx

from demo.simulators.server import serve
from eval.scenario import Answer
from eval.services import ScenarioService, under_prefixes

TOKEN = "svc-token-0123456789"


def service() -> ScenarioService:
    healthy = Answer(status=200, body={"status": "healthy"})
    answers = {
        "GET /ops/status": Answer(status=200, body={"status": "degraded"}),
        "POST /ops/restart": Answer(
            status=200, body={"ok": True}, after={"GET /ops/status": healthy}
        ),
    }
    return ScenarioService("checkout", TOKEN, answers)


async def test_answers_change_after_a_write_and_every_request_is_recorded() -> None:
    checkout = service()
    async with serve(under_prefixes({"/svc/checkout": checkout.app()}), lifespan="off") as url:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=f"{url}/svc/checkout", headers=auth) as client:
            before = (await client.get("/ops/status")).json()
            await client.post("/ops/restart", json={})
            after = (await client.get("/ops/status")).json()
    assert before == {"status": "degraded"}
    assert after == {"status": "healthy"}
    assert checkout.actions() == [
        "GET checkout /ops/status",
        "POST checkout /ops/restart",
        "GET checkout /ops/status",
    ]


async def test_undefined_endpoints_are_404_and_a_wrong_token_401() -> None:
    checkout = service()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    app = under_prefixes({"/svc/checkout": checkout.app()})
    async with serve(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as client:
        drain = await client.post("/svc/checkout/ops/drain", headers=auth)
        metrics = await client.get("/svc/checkout/ops/metrics", headers=auth)
        no_token = await client.get("/svc/checkout/ops/status")
        elsewhere = await client.get("/svc/other/ops/status", headers=auth)
    assert (drain.status_code, metrics.status_code) == (404, 404)
    assert no_token.status_code == 401
    assert elsewhere.status_code == 404
    assert checkout.answers["GET /ops/status"].body == {"status": "degraded"}  # nothing changed
