"""What the console's tests share: Debian's headless Chromium driven by Playwright, a page that
records every dialog and console error, a signed-in session, and a bounded wait for the
approval an incident's run proposes.

    async with chromium() as browser:
        watched = await watched_page(browser, base_url)
        await sign_in(watched.page, base_url)
        ...
        watched.assert_quiet()          # no dialog, no console error, no page error

The browser is `/usr/bin/chromium` (Debian's `chromium` package; `.ci/run` installs it), never
one Playwright downloads. Without it the tests fail, saying what to install: a browser test
that skips proves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page

from demo import browser as demo_browser
from models import Approval
from tests.conftest import TEST_SECRETS
from tests.fakes.stack import Stack

WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium (`demo.browser`); without one the test fails, saying what to
    install."""
    try:
        async with demo_browser.chromium() as launched:
            yield launched
    except demo_browser.ChromiumMissing as exc:
        pytest.fail(f"the console's browser tests need it: {exc}", pytrace=False)


@dataclass
class Watched:
    """A page and everything it tried to say: dialogs (dismissed), console errors, page
    errors (uncaught exceptions)."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_quiet(self) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.errors == [], f"the page reported errors: {self.errors}"


async def watched_page(browser: Browser, **options: Any) -> Watched:
    """A new page in a new context (its own cookies), watched from its first navigation."""
    context = await browser.new_context(**options)
    page = await context.new_page()
    watched = Watched(page)

    async def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"pageerror: {error}"))
    return watched


async def sign_in(page: Page, base_url: str, then: str = "/console") -> None:
    """Open `then`, get sent to the login page, and sign in through its form."""
    await page.goto(f"{base_url}{then}")
    assert page.url.startswith(f"{base_url}/console/login?next="), page.url
    await page.fill("#token", TEST_SECRETS["ops_auth_token"])
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def hrefs(page: Page) -> list[str]:
    """Every link target in the page's DOM."""
    found: list[str] = await page.eval_on_selector_all(
        "[href]", "elements => elements.map(e => e.getAttribute('href'))"
    )
    return found


async def pending_approval(stack: Stack, incident_id: str) -> Approval:
    """The approval the incident's run proposes, once it is pending (a bounded wait: the desk
    signals nothing when one opens)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            for proposal in await stack.runtime.approvals.pending():
                if proposal.incident_id == incident_id:
                    return proposal.view()
            await asyncio.sleep(POLL_SECONDS)
