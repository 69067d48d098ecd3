"""The whole system on loopback in a background thread, for synchronous clients (schemathesis,
hypothesis): the real app under uvicorn plus a fake LLM, fake services and fake PagerDuty.

    with stack_in_thread(lambda urls: load_settings(...)) as stack:
        httpx.get(f"{stack.base_url}/health")

The thread owns its event loop; leaving the block asks every server to stop and joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from config import Settings
from main import create_app
from tests.conftest import TEST_SECRETS
from tests.fakes.llm import FakeLLM
from tests.fakes.ops_service import FakeOpsService, make_ops_service
from tests.fakes.pagerduty import FakePagerDuty, make_fake_pagerduty
from tests.fakes.server import serve
from tests.fakes.stack import SERVICES

STOP_SECONDS = 60.0


@dataclass
class BackgroundStack:
    base_url: str
    llm: FakeLLM
    pagerduty: FakePagerDuty
    services: dict[str, FakeOpsService] = field(default_factory=dict)


SettingsBuilder = Callable[[dict[str, Any]], Settings]


async def _run(build: SettingsBuilder, ready: queue.Queue[Any], stop: asyncio.Event) -> None:
    llm = FakeLLM()
    pagerduty_app, pagerduty = make_fake_pagerduty()
    async with contextlib.AsyncExitStack() as stack:
        llm_url = await stack.enter_async_context(serve(llm.app()))
        pd_url = await stack.enter_async_context(serve(pagerduty_app))
        services, registry = {}, []
        for name, critical in SERVICES.items():
            app, fake = make_ops_service(name=name, token=TEST_SECRETS["ops_auth_token"])
            url = await stack.enter_async_context(serve(app))
            services[name] = fake
            registry.append(f"{name}|{url}|{str(critical).lower()}")
        settings = build(
            {
                "llm_api_base_url": llm_url,
                "service_registry": ",".join(registry),
                **pagerduty.settings_for(pd_url),
            }
        )
        base_url = await stack.enter_async_context(serve(create_app(settings)))
        ready.put(BackgroundStack(base_url, llm, pagerduty, services))
        await stop.wait()


@contextlib.contextmanager
def stack_in_thread(build: SettingsBuilder) -> Iterator[BackgroundStack]:
    """Start the stack in a thread; `build` turns the fakes' URLs into the app's Settings."""
    ready: queue.Queue[Any] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def target() -> None:
        try:
            loop.run_until_complete(_run(build, ready, stop))
        except BaseException as exc:  # handed to the waiting test thread
            ready.put(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="background-stack", daemon=True)
    thread.start()
    started = ready.get(timeout=STOP_SECONDS)
    if isinstance(started, BaseException):
        raise started
    try:
        yield started
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=STOP_SECONDS)
