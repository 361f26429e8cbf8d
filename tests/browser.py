"""A real browser for the pages a user opens: Debian's headless Chromium, driven by Playwright.

`make test` installs Chromium (tools/setup_browser.sh); ``BREFINE_CHROMIUM``
names another binary. Without one, the test that needs it fails and says how
to get it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path(os.environ.get("BREFINE_CHROMIUM", "/usr/bin/chromium"))
# a closed network: without the background-networking flags Chromium keeps
# reaching for Google's hosts; --no-sandbox: CI runs as root
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_TIMEOUT_MS = 90_000  # the MLflow UI's bundle, loaded beside a training on 2 cores


@contextmanager
def browser_page(screenshots: Path) -> Iterator["BrowserPage"]:
    """A fresh Chromium page (a new profile: no switch a user flipped before)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (tools/setup_browser.sh, "
                    "apt-get install chromium), or set BREFINE_CHROMIUM to a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield BrowserPage(page, screenshots)
        finally:
            browser.close()


class BrowserPage:
    """One tab: opens a URL, waits for what the page must show, keeps a screenshot."""

    def __init__(self, page, screenshots: Path) -> None:
        self.page = page
        self.screenshots = screenshots
        screenshots.mkdir(parents=True, exist_ok=True)

    def open(self, url: str, name: str, wait_for: str) -> str:
        """Go to ``url`` and wait until the text ``wait_for`` is shown (the page
        has rendered its data, not a spinner); returns the page's visible text.
        The screenshot goes to ``<screenshots>/<name>.png`` either way."""
        self.page.goto(url)
        shot = self.screenshots / f"{name}.png"
        try:
            self.page.get_by_text(wait_for, exact=True).first.wait_for(state="visible")
        finally:
            self.page.screenshot(path=str(shot), full_page=True)
        return self.page.inner_text("body")

    @property
    def url(self) -> str:
        return self.page.url
