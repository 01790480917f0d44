"""Browser tests: Playwright driving Debian's Chromium against a real `bashfleet serve`.

One portal (local isolation, SQLite) serves the whole browser session; each test gets
a fresh browser context logged in as the admin. Screenshots go to
``artifacts/screenshots`` (or ``$BASHFLEET_ARTIFACTS/screenshots``). Every page fails
its test on an uncaught script error, a Content-Security-Policy violation, or an
unexpected dialog (alert/confirm), so an injected script cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.portal import ADMIN_PASSWORD, Portal, running_portal

CHROMIUM = "/usr/bin/chromium"

ARTIFACTS = Path(os.environ.get("BASHFLEET_ARTIFACTS", "artifacts"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium` (scripts/test does)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def browser_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    env = {"BASHFLEET_SUBMIT_RATE": "1000", "BASHFLEET_LOGIN_RATE": "1000"}
    with running_portal(
        tmp_path_factory.mktemp("browser"), env=env, extra=["--isolation", "local"]
    ) as p:
        yield p


@pytest.fixture(scope="session")
def portal_url(browser_portal: Portal) -> str:
    return browser_portal.url


@pytest.fixture(scope="session")
def admin_password() -> str:
    return ADMIN_PASSWORD


@pytest.fixture(scope="session")
def admin_token(browser_portal: Portal) -> str:
    made = browser_portal.cli("token", "create", "admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture
def api(browser_portal: Portal, admin_token: str) -> Callable[..., tuple[int, Any]]:
    """api(method, path, json=None) -> (status, decoded JSON), as the admin (token)."""

    def call(method: str, path: str, json_body: Any = None, **kw: Any) -> tuple[int, Any]:
        return browser_portal.request(method, path, kw.pop("json", json_body), token=admin_token)

    return call


class PageProblems:
    """Uncaught errors, CSP violations and dialogs seen by a page."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.accept_dialogs = False  # set by the `allow_dialogs` fixture

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and re.search(r"Content Security Policy|Refused to", msg.text):
            self.errors.append(f"CSP: {msg.text}")

    def _dialog(self, dialog: Any) -> None:
        if self.accept_dialogs:
            dialog.accept()
            return
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def logged_in_page(
    browser: Browser, portal_url: str, page_problems: PageProblems
) -> Iterator[Page]:
    """A page in a fresh context, logged in as the admin (through the session API)."""
    context: BrowserContext = browser.new_context(
        base_url=portal_url, viewport={"width": 1400, "height": 900}
    )
    page = context.new_page()
    page_problems.watch(page)
    res = context.request.post(
        "/api/v1/session", data={"name": "admin", "password": ADMIN_PASSWORD}
    )
    assert res.ok, res.text()
    yield page
    context.close()
    assert not page_problems.errors, page_problems.errors
    assert not page_problems.dialogs, f"a dialog opened: {page_problems.dialogs}"


@pytest.fixture
def allow_dialogs(page_problems: PageProblems) -> PageProblems:
    """For tests that open confirm() on purpose: dialogs are accepted, not failures."""
    page_problems.accept_dialogs = True
    return page_problems


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = ARTIFACTS / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def shot(screenshot_dir: Path) -> Callable[[Page, str], Path]:
    def take(page: Page, name: str) -> Path:
        target = screenshot_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
        page.screenshot(path=str(target), full_page=True)
        return target

    return take
