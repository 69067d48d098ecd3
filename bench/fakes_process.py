"""The app's outside world for the load benchmarks, in its own process: a fake LLM, a fake
PagerDuty and one fake monitored service, each on a free loopback port.

    python -m bench.fakes_process --llm-delay 1.0 --lifetime 120

prints one JSON line `{"llm": url, "pagerduty": url, "service": url}` and serves until
SIGTERM or `--lifetime` seconds. The LLM concludes at once (no tool call) after `--llm-delay`
seconds, like a model that takes that long to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from demo.simulators.llm import FakeLLM, Step, say
from demo.simulators.ops_service import make_ops_service
from demo.simulators.pagerduty import make_fake_pagerduty
from demo.simulators.server import serve


def delayed_answers(delay: float) -> FakeLLM:
    def policy(_messages: list[dict[str, Any]]) -> Step:
        if delay <= 0:
            return say("Diagnosis complete. No further action.")
        answer = asyncio.Event()
        asyncio.get_running_loop().call_later(delay, answer.set)
        return say("Diagnosis complete. No further action.", hold=answer)

    return FakeLLM(policy=policy)


async def run(delay: float, lifetime: float, token: str) -> None:
    pagerduty_app, _ = make_fake_pagerduty()
    service_app, _ = make_ops_service(name="checkout", token=token)
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            "llm": await stack.enter_async_context(serve(delayed_answers(delay).app())),
            "pagerduty": await stack.enter_async_context(serve(pagerduty_app)),
            "service": await stack.enter_async_context(serve(service_app)),
        }
        sys.stdout.write(json.dumps(urls) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(lifetime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--llm-delay", type=float, default=1.0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--token", default="ops-bench-token-0123456789abcdef")
    args = parser.parse_args()
    asyncio.run(run(args.llm_delay, args.lifetime, args.token))


if __name__ == "__main__":
    main()
