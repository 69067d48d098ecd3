"""The operator console in a real headless Chromium (CONTRACT §9, issue 14): sign in through
the form, watch an incident appear as awaiting approval, approve it and see the service get
the write once, deny another with a note the model reads, and a hostile alert, tool output
and report that run nothing in the browser.

Every page is watched for dialogs, console errors and uncaught page errors
(`tests.fakes.browser.Watched`). Waiting is Playwright's: `expect(...)` retries until the
page, refreshing itself, shows what the test waits for.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from demo.simulators.llm import Call, FakeLLM
from tests.conftest import SettingsFactory
from tests.fakes.browser import chromium, hrefs, pending_approval, sign_in, watched_page
from tests.fakes.policies import propose_then_conclude
from tests.fakes.stack import running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

RESTART = Call(
    "call_ops_endpoint", {"service": "worker", "endpoint": "/ops/restart", "method": "POST"}
)
STATUS = Call("call_ops_endpoint", {"service": "worker", "endpoint": "/ops/status"})
SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"
LINK = "[click](javascript:alert(3))"
HOSTILE = f"{SCRIPT} {IMAGE} {LINK}"
REFRESHED = 15_000  # ms: long enough for the page's 5 s refresh to show a change


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module; each test has its own context (cookies) and page."""
    async with chromium() as launched:
        yield launched


def alert(incident: str) -> dict[str, Any]:
    return {"incident_id": incident, "summary": "Worker error rate above 5%", "service": "worker"}


def tool_results_sent(llm: FakeLLM) -> list[str]:
    """Every tool message the model was sent."""
    return [
        str(m.get("content"))
        for request in llm.requests
        for m in request["messages"]
        if m.get("role") == "tool"
    ]


async def open_incident(page: Page, incident_id: str) -> None:
    """From the list: wait for the incident's row to say it awaits approval, and open it."""
    row = page.locator("tr.row", has_text=incident_id)
    await expect(row.locator(".badge")).to_have_text("awaiting approval", timeout=REFRESHED)
    async with page.expect_navigation():
        await row.get_by_role("link", name=incident_id).click()
    await expect(page.locator("section.approval")).to_be_visible()


async def test_sign_in_see_it_await_approval_approve_and_the_service_gets_the_write_once(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    report = "# Worker restarted\n\nThe restart cleared the errors."
    llm = FakeLLM(policy=propose_then_conclude(RESTART, report=report))
    async with running_stack(
        make_settings, llm, agent_mode="approve", shutdown_grace_seconds=1
    ) as stack:
        watched = await watched_page(browser)
        page = watched.page
        await sign_in(page, stack.base_url)
        assert page.url == f"{stack.base_url}/console"
        await stack.webhook("generic", alert("approve-me"))
        await open_incident(page, "generic:approve-me")
        await expect(page.locator(".proposal")).to_have_text("POST worker /ops/restart")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Approve").click()
        decided = page.locator("table.decided tbody tr")
        await expect(decided).to_contain_text("approved")
        await expect(decided).to_contain_text("token")
        status = page.locator(".incident-head .badge")
        await expect(status).to_have_text("resolved", timeout=REFRESHED)
        await expect(page.locator(".markdown h1")).to_have_text("Worker restarted")
        await stack.idle()
        posts = stack.services["worker"].paths("POST")
    assert posts == ["/ops/restart"]
    watched.assert_quiet()


async def test_deny_with_a_note_the_model_reads_who_denied_and_nothing_is_sent(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    note = "not during the sale, page the owner"
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    async with running_stack(
        make_settings, llm, agent_mode="approve", shutdown_grace_seconds=1
    ) as stack:
        watched = await watched_page(browser)
        page = watched.page
        await sign_in(page, stack.base_url)
        await stack.webhook("generic", alert("deny-me"))
        await open_incident(page, "generic:deny-me")
        await page.get_by_label("Note").fill(note)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Deny").click()
        decided = page.locator("table.decided tbody tr")
        await expect(decided).to_contain_text("denied")
        await expect(decided).to_contain_text(note)
        await stack.idle()
    assert stack.services["worker"].paths("POST") == []
    denial = json.dumps({"error": f"denied by token: {note}"})
    assert any(denial in result for result in tool_results_sent(llm))
    watched.assert_quiet()


async def test_hostile_alert_tool_output_and_report_run_nothing_in_the_browser(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    write = Call(
        "call_ops_endpoint",
        {
            "service": "worker",
            "endpoint": "/ops/restart",
            "method": "POST",
            "body": {"reason": HOSTILE},
        },
    )
    report = f'# Report {SCRIPT}\n\n{IMAGE}\n\n{LINK}\n\n<a href="javascript:alert(5)">x</a>\n'
    llm = FakeLLM(policy=propose_then_conclude(STATUS, write, report=report))
    async with running_stack(
        make_settings, llm, agent_mode="approve", shutdown_grace_seconds=1
    ) as stack:
        stack.services["worker"].bodies["/ops/status"] = {"status": HOSTILE, "note": IMAGE}
        watched = await watched_page(browser)
        page = watched.page
        await sign_in(page, stack.base_url)
        body = {
            **alert("hostile"),
            "summary": HOSTILE,
            "labels": {"team": IMAGE, "runbook": LINK},
            "url": "javascript:alert(4)",
        }
        await stack.webhook("generic", body)
        await pending_approval(stack, "generic:hostile")
        await page.reload()
        await expect(page.locator("tr.row .c-summary")).to_have_text(HOSTILE)
        await assert_inert(page)
        await open_incident(page, "generic:hostile")
        await expect(page.locator(".headline")).to_have_text(HOSTILE)
        await expect(page.locator(".labels")).to_contain_text(IMAGE)
        await expect(page.locator(".labels")).to_contain_text(LINK)
        await expect(page.locator("section.approval pre.json")).to_contain_text(HOSTILE)
        await assert_inert(page)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Deny").click()
        await expect(page.locator(".incident-head .badge")).to_have_text(
            re.compile("resolved|escalated"), timeout=REFRESHED
        )
        await stack.idle()
        await page.reload()
        report_html = page.locator(".markdown")
        await expect(report_html.locator("h1")).to_have_text(f"Report {SCRIPT}")
        await expect(report_html).to_contain_text(IMAGE)
        await expect(report_html).to_contain_text(LINK)
        await page.locator("#conversation > summary").click()
        await expect(page.locator(".msg.result-ok").first).to_contain_text(HOSTILE)
        await assert_inert(page)
    watched.assert_quiet()


async def assert_inert(page: Page) -> None:
    """Nothing from data became markup: no script or image of its own, no handler, no
    `javascript:` link."""
    assert await page.locator("main script, main img, main iframe").count() == 0
    assert await page.locator("[onerror], [onload], [onclick]").count() == 0
    assert not [h for h in await hrefs(page) if h.strip().lower().startswith("javascript:")]
    scripts = await page.eval_on_selector_all("script", "s => s.map(e => e.getAttribute('src'))")
    assert scripts == ["/console/static/console.js"]
