"""Screenshots of the operator console for the README: `python -m demo.screenshots`.

Runs the runtime in approve mode on loopback with the demo's services, its scripted model and
a local PagerDuty (all in this process, nothing leaves the machine), makes a few incidents
(one escalated, one resolved after a human approved its restart, one awaiting approval and
one queued behind it), signs in to the console with headless Chromium (Debian's
`/usr/bin/chromium`, driven by Playwright) and saves, under docs/screenshots/:

  console-list.png     the incident list, 1280 px wide
  console-detail.png   an incident awaiting approval, 1280 px wide
  console-report.png   the resolved incident: decided approval, timeline, report (its top)
  console-phone.png    the incident list on a 390 px wide phone
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page

from config import load_settings
from demo import alerts
from demo.browser import ChromiumMissing, chromium, executable
from demo.scripted_llm import scripted_llm
from demo.services import CheckoutService, PaymentsService
from demo.simulators.pagerduty import make_fake_pagerduty
from demo.simulators.server import serve
from main import create_app

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
REPORT_HEIGHT = 1900  # the resolved incident down to the report's first sections
WAIT_SECONDS = 60.0
POLL_SECONDS = 0.1
TERMINAL = {"resolved", "escalated", "expired", "deduplicated", "ignored"}


class InventoryService(CheckoutService):
    """A second service with checkout's leaking pool, so one incident can wait for a human."""

    name = "inventory"
    version = "3.8.2"


@dataclass(slots=True)
class Runtime:
    base_url: str
    api: httpx.AsyncClient  # the JSON API, with the ops token
    token: str
    webhook_token: str


def main() -> None:
    try:
        executable()
    except ChromiumMissing as exc:
        sys.exit(str(exc))
    OUT.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot())
    for name in sorted(OUT.glob("console-*.png")):
        print(f"saved {name.relative_to(ROOT)}")


async def shoot() -> None:
    """Start everything, make the incidents, save the screenshots, stop everything."""
    async with contextlib.AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(_runtime(stack))
        detail, resolved = await _incidents(runtime)
        browser = await stack.enter_async_context(chromium())
        await _shoot(browser, runtime, detail=detail, resolved=resolved)


@contextlib.asynccontextmanager
async def _runtime(stack: contextlib.AsyncExitStack) -> AsyncIterator[Runtime]:
    """The real app in approve mode, its services, a scripted model and a local PagerDuty."""
    token, webhook_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    services = [
        CheckoutService(token=token),
        PaymentsService(token=token),
        InventoryService(token=token),
    ]
    urls = {s.name: await stack.enter_async_context(serve(s.app())) for s in services}
    pagerduty_app, _ = make_fake_pagerduty(api_token="pd-screenshots")
    pd_url = await stack.enter_async_context(serve(pagerduty_app))
    llm_url = await stack.enter_async_context(serve(scripted_llm().app()))
    run_dir = ROOT / "demo" / ".run" / "screenshots"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        llm_api_key="screenshots-" + secrets.token_hex(8),
        llm_api_base_url=llm_url,
        llm_model="scripted-sre",
        pagerduty_api_token="pd-screenshots",
        pagerduty_routing_key=secrets.token_hex(16),
        pagerduty_events_url=f"{pd_url}/v2/enqueue",
        pagerduty_api_url=pd_url,
        ops_auth_token=token,
        webhook_auth_token=webhook_token,
        service_registry=",".join(f"{name}|{url}|true" for name, url in urls.items()),
        sre_prompt_path=ROOT / "WINDSURF_SRE.md",
        incidents_dir=run_dir / "incidents",
        agent_mode="approve",
        cloud_provider="none",
        shutdown_grace_seconds=1,
        log_level="WARNING",
        otel_exporter_otlp_endpoint=None,
    )
    app = create_app(settings)
    logging.getLogger().handlers[:] = [logging.NullHandler()]  # keep the terminal for results
    base_url = await stack.enter_async_context(serve(app))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as api:
        yield Runtime(base_url, api, token, webhook_token)


async def _incidents(runtime: Runtime) -> tuple[str, str]:
    """Make the incidents the screenshots show; the ids of the waiting and resolved ones."""
    payments = await _fire(runtime, alerts.payments_errors(0.92))
    await _until(lambda: _finished(runtime, payments))
    checkout = await _fire(runtime, alerts.checkout_latency(2380))
    approval = await _until(lambda: _pending(runtime, checkout))
    decision = {"decision": "approve", "note": "Pool leak confirmed in /ops/metrics; restart."}
    answer = await runtime.api.post(
        f"/alerts/{checkout}/approvals/{approval['approval_id']}", json=decision
    )
    answer.raise_for_status()
    await _until(lambda: _finished(runtime, checkout))
    inventory = await _fire(runtime, _inventory_latency(3120))
    await _until(lambda: _pending(runtime, inventory))
    await _fire(runtime, _inventory_latency(2950))  # queued: inventory's run is not over
    return inventory, checkout


def _inventory_latency(p99_ms: float) -> alerts.Threshold:
    return alerts.Threshold(
        service="inventory",
        policy="inventory - request latency p99",
        condition="Cloud Run Revision - Request Latencies p99 above 1000 ms",
        metric_type="run.googleapis.com/request_latencies",
        metric_name="Request Latencies",
        threshold=1000.0,
        observed=p99_ms,
        severity="Warning",
    )


async def _fire(runtime: Runtime, watch: alerts.Threshold) -> str:
    payload = alerts.gcp_incident(watch, incident_id=alerts.new_incident_id())
    answer = await runtime.api.post(
        "/webhook/gcp", params={"auth_token": runtime.webhook_token}, json=payload
    )
    answer.raise_for_status()
    incident_id: str = answer.json()["alerts"][0]["incident_id"]
    return incident_id


async def _finished(runtime: Runtime, incident_id: str) -> dict[str, Any] | None:
    detail: dict[str, Any] = (await runtime.api.get(f"/alerts/{incident_id}")).json()
    return detail if detail["status"] in TERMINAL and detail["report_file"] else None


async def _pending(runtime: Runtime, incident_id: str) -> dict[str, Any] | None:
    approvals = (await runtime.api.get("/approvals")).json()["approvals"]
    return next((a for a in approvals if a["incident_id"] == incident_id), None)


async def _until(check: Callable[[], Awaitable[dict[str, Any] | None]]) -> dict[str, Any]:
    """Poll the runtime's API until `check` answers (at most WAIT_SECONDS)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            found = await check()
            if found is not None:
                return found
            await asyncio.sleep(POLL_SECONDS)


async def _shoot(browser: Browser, runtime: Runtime, *, detail: str, resolved: str) -> None:
    desktop = await browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    page = await desktop.new_page()
    await _sign_in(page, runtime)
    await page.screenshot(path=OUT / "console-list.png", full_page=True)
    await page.goto(f"{runtime.base_url}/console/alerts/{detail}")
    await page.screenshot(path=OUT / "console-detail.png", full_page=True)
    await page.goto(f"{runtime.base_url}/console/alerts/{resolved}")
    report = {"x": 0, "y": 0, "width": DESKTOP["width"], "height": REPORT_HEIGHT}
    await page.screenshot(path=OUT / "console-report.png", full_page=True, clip=report)
    phone = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = await phone.new_page()
    await _sign_in(page, runtime)
    await page.screenshot(path=OUT / "console-phone.png", full_page=False)


async def _sign_in(page: Page, runtime: Runtime) -> None:
    await page.goto(f"{runtime.base_url}/console")
    await page.fill("#token", runtime.token)
    await page.click("button[type=submit]")
    await page.wait_for_selector("table.incidents")


if __name__ == "__main__":
    main()
