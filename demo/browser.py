"""Debian's headless Chromium driven by Playwright: one launch for the console's
screenshots (`demo/screenshots.py`) and its browser tests (`tests/fakes/browser.py`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed."""


def executable() -> Path:
    """Chromium's path; `ChromiumMissing` without one."""
    if not CHROMIUM.exists():
        raise ChromiumMissing(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; "
            ".ci/run installs it)"
        )
    return CHROMIUM


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit; `ChromiumMissing` without one."""
    path = executable()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(path), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()
