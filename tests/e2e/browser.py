"""A real browser for the web UI tests: Python Playwright driving Debian's Chromium.

No browser is ever downloaded (`playwright install` is never run): the system's
/usr/bin/chromium is launched headless with the flags a container needs. Every page a test
looks at can be saved with `shot(page, name)` to tests/e2e/artifacts/screenshots/.

With TROVE_DOCS_SCREENSHOTS=1 (scripts/screenshots.sh sets it), the pages of the README's
web UI tour (`TOUR`) are also saved as docs/screenshots/<name>.png: the top 1280×800 of the
page, checked to stay under `DOCS_MAX_BYTES`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TROVE_E2E_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The pages the README's tour shows, by their `shot` names.
TOUR = {"models-listing", "repo-card", "tree", "blob", "commit", "pull-request", "upload",
        "tokens-created", "settings", "dataset-preview", "space", "login"}
DOCS_SIZE = {"width": 1280, "height": 800}
DOCS_MAX_BYTES = 300_000
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
# Every wait in a browser test is bounded.
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def new_page(chromium, base_url: str, *, width: int = 1280, height: int = 900):
    """A fresh browser context (its own cookies) and a page in it."""
    context = chromium.new_context(base_url=base_url, viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def shot(page, name: str) -> Path:
    """Saves a full-page screenshot as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    if name in TOUR and os.environ.get("TROVE_DOCS_SCREENSHOTS") == "1":
        docs_shot(page, name)
    return path


def docs_shot(page, name: str) -> Path:
    """The top of the page at the tour's size, into docs/screenshots/."""
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = DOCS_SCREENSHOTS / f"{name}.png"
    before = page.viewport_size
    page.set_viewport_size(DOCS_SIZE)
    try:
        page.screenshot(path=str(path), full_page=False)
    finally:
        if before:
            page.set_viewport_size(before)
    size = path.stat().st_size
    assert size < DOCS_MAX_BYTES, f"{path} is {size} bytes, over {DOCS_MAX_BYTES}"
    return path


def sign_in(page, user: str, password: str) -> None:
    """Signs in through the login form, as a person would."""
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_selector(f"header .signed-in:has-text('{user}')")
