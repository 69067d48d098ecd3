"""The pager under an escalation storm: one 5,000-alert Alertmanager notification for a
service that is not registered (every alert is escalated at once), against a fake PagerDuty
that enforces a rate limit like the Events API (120 events a minute here).

The runtime is the real process (`python -m uvicorn main:app`); the fakes and a `/health`
prober run in this process. Printed and written to bench/results/pager_storm.json: the
webhook's latency, seconds until every alert has its report, PagerDuty events delivered
(single pages and storm updates) and refused with 429, and `/health` p50/p99 meanwhile.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench._common import met, write_result
from tests.conftest import TEST_SECRETS
from tests.e2e.test_overload_e2e import (
    alertmanager_body,
    paged_incidents,
    probe_health,
    until,
)
from tests.e2e.test_shutdown_e2e import runtime_environment, uvicorn_process
from tests.fakes.llm import FakeLLM
from tests.fakes.ops_service import make_ops_service
from tests.fakes.pagerduty import make_fake_pagerduty
from tests.fakes.server import serve

ALERTS = 5000
P99_TARGET_MS = 100.0


async def run(workdir: Path) -> dict[str, float | int]:
    pd_app, pagerduty = make_fake_pagerduty(rate_limit=120)
    worker_app, _ = make_ops_service(name="worker", token=TEST_SECRETS["ops_auth_token"])
    async with (
        serve(FakeLLM(script=[]).app()) as llm_url,
        serve(pd_app) as pd_url,
        serve(worker_app) as worker_url,
        httpx.AsyncClient(timeout=60) as client,
    ):
        env = runtime_environment(workdir, llm_url, pd_url, worker_url)
        env["WEBHOOK_MAX_BODY_BYTES"] = str(4 * 1024 * 1024)
        async with uvicorn_process(env, workdir / "runtime.log") as (_process, url):
            stop, samples = asyncio.Event(), list[float]()
            prober = asyncio.create_task(probe_health(url, stop, samples))
            body = alertmanager_body(0, ALERTS, job="not-registered")
            started = time.perf_counter()
            response = await client.post(
                f"{url}/webhook/alertmanager",
                json=body,
                params={"auth_token": TEST_SECRETS["ops_auth_token"]},
            )
            answered = time.perf_counter() - started
            reports = workdir / "incidents"
            await until(lambda: len(list(reports.glob("*.md"))) >= ALERTS, seconds=300)
            all_reported = time.perf_counter() - started
            stop.set()
            await prober
    incident_ids = {a["incident_id"] for a in response.json()["alerts"]}
    storms = sum(e.json["dedup_key"].startswith("storm:") for e in pagerduty.events)
    return {
        "alerts": ALERTS,
        "webhook_seconds": round(answered, 3),
        "all_reported_seconds": round(all_reported, 2),
        "events_delivered": len(pagerduty.events),
        "single_pages": len(pagerduty.events) - storms,
        "storm_updates": storms,
        "events_throttled_429": pagerduty.throttled,
        "every_alert_paged_or_coalesced": paged_incidents(pagerduty) == incident_ids,
        "health_probes": len(samples),
        "health_p50_ms": round(statistics.median(samples) * 1000, 1),
        "health_p99_ms": round(statistics.quantiles(samples, n=100)[98] * 1000, 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(run(Path(workdir)))
    path = write_result("pager_storm", result)
    print(
        f"pager_storm: {result['alerts']} escalations answered in {result['webhook_seconds']} s, "
        f"all reported in {result['all_reported_seconds']} s; PagerDuty events "
        f"{result['single_pages']} single + {result['storm_updates']} storm, "
        f"{result['events_throttled_429']} throttled; every alert paged or coalesced: "
        f"{result['every_alert_paged_or_coalesced']}; /health p50 {result['health_p50_ms']} ms, "
        f"p99 {result['health_p99_ms']} ms "
        f"(< {P99_TARGET_MS:.0f} ms: {met(float(result['health_p99_ms']) < P99_TARGET_MS)}) "
        f"-> {path}"
    )


if __name__ == "__main__":
    main()
