"""Headless Chromium, the system's own (Debian's ``chromium``), driven by Playwright.

Playwright speaks the DevTools protocol for us; it is pointed at the installed browser
with ``executable_path`` so that nothing is ever downloaded (no ``playwright install``):
the browser under test is the one ``.ci/run`` installs from the distribution.

>>> with open_page("file:///tmp/report.html") as (page, errors):  # doctest: +SKIP
...     page.evaluate("document.title")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

# Headless, sandbox off (containers have no user namespaces), and every background
# service off, so a run neither reaches the network nor depends on it.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 900}  # fixed, so screenshots are reproducible
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium executable on PATH ($SCALELAB_CHROMIUM wins), or None."""
    override = os.environ.get("SCALELAB_CHROMIUM")
    if override:
        return shutil.which(override) or (override if Path(override).is_file() else None)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def describe_console(message) -> str:
    where = message.location.get("url", "")
    return f"console {message.type}: {message.text} {where}".strip()


@contextmanager
def open_page(url: str, *, executable: str | None = None, timeout_s: float = 30.0) -> Iterator[tuple[Page, list[str]]]:
    """A page showing ``url``, loaded, and the list its errors are collected into.

    The list fills from before navigation until the browser closes: console errors and
    failed assertions, uncaught exceptions, and failed requests. Chromium reports a
    Content-Security-Policy violation as a console error, and a blocked or missing file
    both as a console error and as a failed request, so neither can pass unseen.
    """
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium executable on PATH (Debian package 'chromium'; .ci/run installs it)")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS), timeout=timeout_s * 1000)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_s * 1000)
            page.on("console", lambda m: errors.append(describe_console(m)) if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed ({r.failure}): {r.url}"))
            page.goto(url, wait_until="load")
            yield page, errors
        finally:
            browser.close()
