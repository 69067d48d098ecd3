"""The whole system on loopback: the real app plus fake LLM, services and PagerDuty.

    async with running_stack(make_settings, FakeLLM(script=[...])) as stack:
        response = await stack.client.post("/webhook/generic", json={...})
        await stack.idle()

Every piece is a real uvicorn server on a free port; the app talks to the fakes over HTTP
with the real `openai` and `httpx` clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from config import Settings
from demo.simulators.llm import FakeLLM
from demo.simulators.ops_service import FakeOpsService, make_ops_service
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import serve
from main import create_app
from main.deps import Runtime
from tests.conftest import TEST_SECRETS

SERVICES = {"api": True, "worker": False}  # name -> critical


@dataclass
class Stack:
    app: FastAPI
    base_url: str
    client: httpx.AsyncClient
    llm: FakeLLM
    services: dict[str, FakeOpsService]
    pagerduty: FakePagerDuty
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def idle(self) -> None:
        """Wait until every alert reached its terminal status and its report is written."""
        await self.runtime.intake.wait_idle()

    async def webhook(self, provider: str, body: Any, **kw: Any) -> httpx.Response:
        token = {"auth_token": TEST_SECRETS["ops_auth_token"]}
        return await self.client.post(f"/webhook/{provider}", json=body, params=token, **kw)


async def start_fakes(
    stack: contextlib.AsyncExitStack, llm: FakeLLM, services: Mapping[str, bool]
) -> tuple[dict[str, Any], FakePagerDuty, dict[str, FakeOpsService]]:
    """Serve the fake LLM, PagerDuty and one fake service per name on `stack`; return the
    settings values that point the app at them, the PagerDuty fake and the service fakes."""
    pagerduty_app, pagerduty = make_fake_pagerduty()
    llm_url = await stack.enter_async_context(serve(llm.app()))
    pd_url = await stack.enter_async_context(serve(pagerduty_app))
    fakes, registry = {}, []
    for name, critical in services.items():
        app, fake = make_ops_service(name=name, token=TEST_SECRETS["ops_auth_token"])
        url = await stack.enter_async_context(serve(app))
        fakes[name] = fake
        registry.append(f"{name}|{url}|{str(critical).lower()}")
    values = {
        "llm_api_base_url": llm_url,
        "service_registry": ",".join(registry),
        **pagerduty.settings_for(pd_url),
    }
    return values, pagerduty, fakes


@contextlib.asynccontextmanager
async def running_stack(
    make_settings: Callable[..., Settings],
    llm: FakeLLM,
    *,
    services: Mapping[str, bool] = SERVICES,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    """`services`: name -> critical, one fake `/ops/*` service each (default api, worker)."""
    async with contextlib.AsyncExitStack() as stack:
        values, pagerduty, fakes = await start_fakes(stack, llm, services)
        settings = make_settings(**values, **overrides)
        app = create_app(settings)
        base_url = await stack.enter_async_context(serve(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=base_url,
                headers={"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"},
            )
        )
        yield Stack(app, base_url, client, llm, fakes, pagerduty, settings)
