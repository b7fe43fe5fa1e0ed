"""Debian's chromium (``bench.chromium``), driven by Playwright, as a meeting participant: one browser
process per person, its fake microphone playing that person's WAV once.

Each page records what the browser reports of its Content-Security-Policy (``securitypolicyviolation``
events, from a script Playwright injects before the page's own) and its console errors, so a test can assert
that nothing was refused and nothing failed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Playwright, async_playwright

from bench.chromium import CHROMIUM, FLAGS, chromium_available, microphone_flag, write_wav

__all__ = ["chromium_available", "write_wav"]

ARTIFACTS = Path(os.environ.get("PALAVER_TEST_ARTIFACTS", "build/test-artifacts"))

WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));
"""


@dataclass
class PageLog:
    """What went wrong in a page: uncaught exceptions and console errors. A failed HTTP request is not one
    of them (the browser logs "Failed to load resource" for every 401 or 404 the app expects, such as the
    visitor's ``GET /v1/me``); tests check statuses where they matter."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


async def violations(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("window.__violations || []")  # type: ignore[no-any-return]


@asynccontextmanager
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@asynccontextmanager
async def participant_browser(pw: Playwright, microphone_wav: Path | None = None) -> AsyncIterator[Browser]:
    """A chromium of its own (the fake microphone file is per process); it plays the WAV once, from the
    moment the page opens the microphone."""
    flags = list(FLAGS)
    if microphone_wav is not None:
        flags.append(microphone_flag(microphone_wav))
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
    try:
        yield browser
    finally:
        await browser.close()


async def open_page(browser: Browser, base_url: str) -> tuple[Page, PageLog]:
    context = await browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    await context.add_init_script(WATCH)
    page = await context.new_page()
    log = PageLog()
    page.on("console", log.console)
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))

    async def accept(dialog: Any) -> None:
        log.dialogs.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return page, log


async def sign_in(page: Page, username: str, password: str, next_path: str = "/") -> None:
    """Through the sign-in form, as a person would."""
    await page.goto(f"/signin?next={next_path}")
    await page.fill("#signin-form input[name=username]", username)
    await page.fill("#signin-form input[name=password]", password)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_url(f"**{next_path}")


async def boxes(page: Page) -> list[dict[str, Any]]:
    """The dialogue boxes the page shows, top to bottom."""
    return await page.eval_on_selector_all(  # type: ignore[no-any-return]
        ".dialogues .box",
        """els => els.map(el => ({id: el.dataset.dialogueId, speaker_id: el.dataset.speakerId,
             name: el.querySelector('.speaker').textContent, text: el.querySelector('.words').textContent.trim(),
             live: el.classList.contains('live'),
             said_at: el.querySelector('time.wall') && Date.parse(el.querySelector('time.wall').getAttribute('datetime'))}))""",
    )


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
