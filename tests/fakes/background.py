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
from demo.simulators.llm import FakeLLM
from demo.simulators.ops_service import FakeOpsService
from demo.simulators.pagerduty import FakePagerDuty
from demo.simulators.server import serve
from main import create_app
from tests.fakes.stack import SERVICES, start_fakes

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
    async with contextlib.AsyncExitStack() as stack:
        values, pagerduty, services = await start_fakes(stack, llm, SERVICES)
        settings = build(values)
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
