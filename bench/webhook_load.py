"""Webhook intake under load: `POST /webhook/gcp` against `GET /health` on one server.

The server is the real runtime in a subprocess (`python -m uvicorn main:app`, one worker,
access log on as in the Dockerfile), configured through a generated environment. Its LLM,
PagerDuty and monitored service are fakes in a third process. Every webhook is a real GCP
incident-schema 1.2 notification (2.3 KB) with a new incident id for the registered service
`checkout`, so each one is authenticated, read, parsed, normalized, submitted to intake and
**queued** (MAX_QUEUE_SIZE = 1,000,000, so none is refused): the path a storm of distinct
incidents takes. The fake LLM answers after 1 s, like a real model, so a few agent runs are
in flight (one at a time: one service) while the queue grows, as during a real storm.

Phases on the same server, one after another, same concurrency: warm-up (1 s each), then
`GET /health` for 5 s, then `POST /webhook/gcp` for 5 s. Closed loop of 16 keep-alive
connections (bench/_load.py). Targets: webhook/health throughput >= 0.6, and >= 1,000
webhooks/s with p99 < 50 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from bench import _load
from bench._common import TOKEN, gcp_body_template, met, rss_mb, write_result
from bench._server import SERVICE, Server, stack

CONCURRENCY = 16
SECONDS = 5.0
WARMUP_SECONDS = 1.0
LLM_DELAY_SECONDS = 1.0
RATIO_TARGET = 0.6
RATE_TARGET = 1000.0
P99_TARGET_MS = 50.0


def webhook_requests(prefix: str) -> _load.RequestFactory:
    """Requests with incident ids `<prefix><n>`, all bodies of one length."""
    head, tail = gcp_body_template(SERVICE, width=12)
    counter = itertools.count()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def make() -> bytes:
        incident = f"{prefix}{next(counter):010d}".encode()
        return _load.post_json("/webhook/gcp", head + incident + tail, headers)

    return make


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(rss_mb(pid))
        await asyncio.sleep(0.05)


async def drive(server: Server, *, seconds: float = SECONDS) -> dict[str, Any]:
    """Warm up, then the health phase and the webhook phase; RSS sampled throughout."""
    common = {"port": server.port, "concurrency": CONCURRENCY, "server_pid": server.pid}
    health = _load.get("/health")
    samples: list[float] = []
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(sample_rss(server.pid, samples, stop))
        try:
            await _load.run_phase(
                "warmup-health", make=lambda: health, seconds=WARMUP_SECONDS, **common
            )
            await _load.run_phase(
                "warmup-webhook", make=webhook_requests("0.w"), seconds=WARMUP_SECONDS, **common
            )
            rss_before = rss_mb(server.pid)
            h = await _load.run_phase(
                "health", make=lambda: health, seconds=seconds, expect=b'"ok"', **common
            )
            w = await _load.run_phase(
                "webhook",
                make=webhook_requests("0.b"),
                seconds=seconds,
                expect=b'"queued"',
                **common,
            )
            rss_after = rss_mb(server.pid)
        finally:
            stop.set()
    return {
        "health": h,
        "webhook": w,
        "rss_mb": {"before_load": rss_before, "after_load": rss_after, "peak": max(samples)},
    }


def queue_state(server: Server) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ops/metrics", timeout=10) as r:
        metrics: dict[str, Any] = json.loads(r.read())
    return {"saturation": metrics.get("saturation"), "intake": metrics.get("intake")}


def main() -> None:
    started = time.monotonic()
    with stack(llm_delay=LLM_DELAY_SECONDS, max_queue_size=1_000_000) as server:
        measured = asyncio.run(drive(server))
        after = queue_state(server)
        errors = server.errors_logged()
    health, webhook = measured["health"], measured["webhook"]
    ratio = webhook.rate / health.rate if health.rate else 0.0
    sustained = webhook.rate >= RATE_TARGET and webhook.ms(99) < P99_TARGET_MS
    ok_statuses = webhook.statuses.get(202, 0) == webhook.requests and not webhook.unexpected_bodies
    result = {
        "concurrency": CONCURRENCY,
        "phase_seconds": SECONDS,
        "llm_delay_seconds": LLM_DELAY_SECONDS,
        "health": health.summary(),
        "webhook": webhook.summary(),
        "ratio_webhook_to_health": round(ratio, 3),
        "targets": {
            "ratio>=0.6": ratio >= RATIO_TARGET,
            ">=1000/s with p99<50ms": sustained,
        },
        "all_webhooks_202_queued": ok_statuses,
        "server_rss_mb": {k: round(v, 1) for k, v in measured["rss_mb"].items()},
        "server_after_load": after,
        "server_error_log_lines": errors,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    path = write_result("webhook_load", result)
    print(
        f"webhook_load: webhook {webhook.rate:,.0f}/s p50 {webhook.ms(50):.1f} ms "
        f"p99 {webhook.ms(99):.1f} ms | health {health.rate:,.0f}/s p50 {health.ms(50):.1f} ms "
        f"p99 {health.ms(99):.1f} ms | ratio {ratio:.2f} ({met(ratio >= RATIO_TARGET)}) | "
        f">=1000/s & p99<50ms {met(sustained)} | client CPU "
        f"{webhook.client_cpu / webhook.seconds:.2f} core | all 202 queued: {ok_statuses} "
        f"-> {path.relative_to(path.parents[2])}"
    )


if __name__ == "__main__":
    main()
