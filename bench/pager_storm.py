"""The pager under an escalation storm: one 5,000-alert Alertmanager notification for a
service that is not registered (every alert is escalated at once), against a simulated
PagerDuty that enforces a rate limit like the Events API (120 events a minute here).

The runtime is the real process (`python -m uvicorn main:app`, bench/_server.py); the
simulators and a `/health` prober run in this process. Printed and written to
bench/results/pager_storm.json: the webhook's latency, seconds until every alert has its
report, PagerDuty events delivered (single pages and storm updates) and refused with 429,
and `/health` p50/p99 meanwhile (target: p99 < 100 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import TOKEN, met, percentile, write_result
from bench._server import app_process, app_settings
from demo.alerts import alertmanager_storm
from demo.simulators.llm import FakeLLM
from demo.simulators.ops_service import make_ops_service
from demo.simulators.pagerduty import FakePagerDuty, make_fake_pagerduty
from demo.simulators.server import serve

ALERTS = 5000
PAGERDUTY_RATE_LIMIT = 120
P99_TARGET_MS = 100.0
PROBE_INTERVAL_SECONDS = 0.01


async def probe(url: str, stop: asyncio.Event) -> list[float]:
    """`GET /health` latencies (seconds) until `stop` is set."""
    samples: list[float] = []
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            started = time.perf_counter()
            (await client.get(f"{url}/health")).raise_for_status()
            samples.append(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_SECONDS)
    return samples


async def wait_serving(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the runtime did not start serving")


async def wait_reports(directory: Path, count: int) -> None:
    """A bounded poll of the subprocess's report directory (a process offers no event)."""
    for _ in range(6000):
        if await asyncio.to_thread(_count_reports, directory) >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"fewer than {count} reports after 300 s")


def _count_reports(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.md")) if directory.is_dir() else 0


async def storm(url: str, reports: Path) -> tuple[dict[str, Any], float, float, list[float]]:
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(url, stop))
    async with httpx.AsyncClient(timeout=120) as client:
        started = time.perf_counter()
        response = await client.post(
            f"{url}/webhook/alertmanager",
            json=alertmanager_storm(0, ALERTS, job="not-registered"),
            params={"auth_token": TOKEN},
        )
        answered = time.perf_counter() - started
    response.raise_for_status()
    await wait_reports(reports, ALERTS)
    all_reported = time.perf_counter() - started
    stop.set()
    return response.json(), answered, all_reported, await prober


def summary(
    pagerduty: FakePagerDuty, body: dict[str, Any], timings: tuple[float, float, list[float]]
) -> dict[str, Any]:
    answered, all_reported, samples = timings
    storms = sum(e.json["dedup_key"].startswith("storm:") for e in pagerduty.events)
    incident_ids = {a["incident_id"] for a in body["alerts"]}
    return {
        "alerts": ALERTS,
        "pagerduty_rate_limit_per_minute": PAGERDUTY_RATE_LIMIT,
        "webhook_seconds": round(answered, 3),
        "all_reported_seconds": round(all_reported, 2),
        "single_pages": len(pagerduty.events) - storms,
        "storm_updates": storms,
        "events_throttled_429": pagerduty.throttled,
        "every_alert_paged_or_coalesced": pagerduty.paged_incidents() == incident_ids,
        "health_probes": len(samples),
        "health_p50_ms": round(statistics.median(samples) * 1000, 1),
        "health_p99_ms": round(percentile(samples, 99) * 1000, 1),
    }


async def run(workdir: Path) -> dict[str, Any]:
    pd_app, pagerduty = make_fake_pagerduty(rate_limit=PAGERDUTY_RATE_LIMIT)
    service_app, _ = make_ops_service(name="checkout", token=TOKEN)
    async with (
        serve(FakeLLM(script=[]).app()) as llm,
        serve(pd_app) as pd_url,
        serve(service_app) as service,
    ):
        urls = {"llm": llm, "pagerduty": pd_url, "service": service}
        values = app_settings(urls, workdir, webhook_max_body_bytes=4 * 1024 * 1024)
        with app_process(values, workdir, wait=False) as server:
            url = f"http://127.0.0.1:{server.port}"
            await wait_serving(url)
            body, answered, all_reported, samples = await storm(url, workdir / "incidents")
    return summary(pagerduty, body, (answered, all_reported, samples))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sre-bench-") as workdir:
        result = asyncio.run(run(Path(workdir)))
    path = write_result("pager_storm", result)
    p99 = result["health_p99_ms"]
    print(
        f"pager_storm: {result['alerts']} escalations answered in {result['webhook_seconds']} s, "
        f"all reported in {result['all_reported_seconds']} s; PagerDuty events "
        f"{result['single_pages']} single + {result['storm_updates']} storm, "
        f"{result['events_throttled_429']} throttled; every alert paged or coalesced: "
        f"{result['every_alert_paged_or_coalesced']}; /health p50 {result['health_p50_ms']} ms, "
        f"p99 {p99} ms (< {P99_TARGET_MS:.0f} ms: {met(p99 < P99_TARGET_MS)}) -> {path}"
    )


if __name__ == "__main__":
    main()
