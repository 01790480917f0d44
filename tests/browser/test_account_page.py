"""The account page: any signed-in user's name and role, own API tokens (created with the
secret shown once, revoked behind the confirm dialog) and e-mail notification settings
with the last delivery attempts. Reached from the user name in the header."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.conftest import PageProblems

Api = Callable[..., tuple[int, Any]]
Shot = Callable[[Page, str], Path]
HOSTILE = "<img src=x onerror=alert(1)>"


def _bearer(portal_url: str, token: str) -> tuple[int, Any]:
    """GET /api/v1/tokens with the token: (status, decoded JSON)."""
    req = urllib.request.Request(portal_url + "/api/v1/tokens")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def user_page(
    browser: Browser, portal_url: str, api: Api, page_problems: PageProblems
) -> Iterator[Callable[[str], Page]]:
    """user_page(role) -> a page of a new user with ``role``, logged in through /login."""
    contexts: list[BrowserContext] = []

    def make(role: str) -> Page:
        name = f"{role[:3]}-{uuid.uuid4().hex[:6]}"
        password = f"{name}-password"
        status, body = api(
            "POST", "/api/v1/users", {"name": name, "role": role, "password": password}
        )
        assert status == 201, body
        context = browser.new_context(base_url=portal_url, viewport={"width": 1300, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page_problems.watch(page)
        page.goto("/login")
        page.fill("#name", name)
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{portal_url}/")
        return page

    yield make
    for context in contexts:
        context.close()
    assert not page_problems.errors, page_problems.errors
    assert not page_problems.dialogs, f"a dialog opened: {page_problems.dialogs}"


def test_an_operator_creates_uses_and_revokes_a_token(
    user_page: Callable[[str], Page], portal_url: str, shot: Shot
) -> None:
    page = user_page("operator")
    name = page.evaluate("BF.user.name")
    link = page.locator("header a.user")
    expect(link).to_contain_text(name)
    expect(link.locator(".role")).to_have_text("operator")
    expect(link).not_to_have_attribute("aria-current", "page")
    link.click()
    expect(page).to_have_url(f"{portal_url}/account")
    expect(page.locator("header a.user")).to_have_attribute("aria-current", "page")
    expect(page.locator("#me-name")).to_have_text(name)
    expect(page.locator("#me-role")).to_have_text("operator")
    expect(page.locator("#tokens-empty")).to_be_visible()
    assert page.locator("header nav").get_by_role("link", name="Admin").count() == 0

    # created: the secret is shown once, with how to use it
    page.fill("#t-name", "my-agent")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-secret")).to_be_visible()
    expect(page.locator("#token-secret")).to_contain_text("shown only once")
    expect(page.locator("#token-usage")).to_contain_text("Authorization: Bearer <token>")
    expect(page.locator("#mcp-url")).to_have_text(f"{portal_url}/mcp")
    secret = page.input_value("#token-secret-value")
    assert secret.startswith("bf_")
    row = page.locator('#tokens-body tr[data-name="my-agent"]')
    expect(row.locator(".badge")).to_have_text("active")
    expect(page.locator("#token-count")).to_have_text("1")
    shot(page, "account-token-created")

    # it works, as this user and only for their tokens
    status, listed = _bearer(portal_url, secret)
    assert status == 200, listed
    assert [t["name"] for t in listed["items"]] == ["my-agent"]
    assert secret.startswith(listed["items"][0]["prefix"])
    expect(row.locator("code")).to_have_text(listed["items"][0]["prefix"] + "…")

    # Done takes the secret off the page; a reload never shows it again
    page.click("[data-dismiss=token-secret]")
    expect(page.locator("#token-secret")).to_be_hidden()
    assert page.input_value("#token-secret-value") == ""
    page.reload()
    expect(row).to_be_visible()
    assert secret not in page.content()

    # revoked behind the portal's confirm dialog: cancel keeps it, confirm ends it
    row.locator("[data-act=revoke]").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_contain_text("my-agent")
    page.click("#confirm-cancel")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert _bearer(portal_url, secret)[0] == 200
    row.locator("[data-act=revoke]").click()
    page.click("#confirm-ok")
    expect(row).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("Revoked my-agent")
    assert _bearer(portal_url, secret)[0] == 401
    page.check("#t-show-revoked")
    expect(row.locator(".badge")).to_have_text("revoked")
    assert row.locator("[data-act=revoke]").count() == 0


def test_mail_settings_save_reload_and_refuse_a_bad_address(
    user_page: Callable[[str], Page], api: Api, shot: Shot
) -> None:
    page = user_page("operator")
    page.goto("/account")
    notice = page.locator("#smtp-notice")
    expect(notice).to_be_visible()  # the test portal has no SMTP server
    expect(notice).to_contain_text("BASHFLEET_SMTP_URL")
    expect(page.locator("#deliveries-empty")).to_be_visible()
    boxes = page.locator("#notify-form input[name=events]")
    assert boxes.evaluate_all("bs => bs.map(b => b.value)") == [
        "batch_finished",
        "batch_failed",
        "awaiting_approval",
        "schedule_failed_twice",
    ]
    expect(page.locator("#notify-form fieldset legend")).to_have_text("Mail me when")

    page.fill("#n-email", "op@example.com")
    page.get_by_label("batch failed").check()
    page.get_by_label("schedule failed twice").check()
    page.click("#notify-save")
    expect(page.locator("#toasts")).to_contain_text("Saved: mail goes to op@example.com")
    expect(page.locator("#notify-error")).to_be_hidden()

    page.reload()
    expect(page.locator("#n-email")).to_have_value("op@example.com")
    checked = "bs => bs.filter(b => b.checked).map(b => b.value)"
    page.wait_for_function(
        "() => document.querySelectorAll('#notify-form input[name=events]:checked').length === 2"
    )
    assert boxes.evaluate_all(checked) == ["batch_failed", "schedule_failed_twice"]

    # a bad address: the API's message beside the form, nothing changed on the server
    page.fill("#n-email", "not an address")
    page.get_by_label("batch finished").check()
    page.click("#notify-save")
    error = page.locator("#notify-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("`email` is an address like name@example.com")
    expect(page.locator("#n-email")).to_have_value("not an address")  # kept to be fixed
    shot(page, "account-mail-refused")
    page.reload()
    expect(page.locator("#n-email")).to_have_value("op@example.com")
    page.wait_for_function(
        "() => document.querySelectorAll('#notify-form input[name=events]:checked').length === 2"
    )
    assert boxes.evaluate_all(checked) == ["batch_failed", "schedule_failed_twice"]

    # an empty address stops mail
    page.fill("#n-email", "")
    page.click("#notify-save")
    expect(page.locator("#toasts")).to_contain_text("Saved: no mail")


def test_hostile_token_names_and_mail_errors_are_text(
    user_page: Callable[[str], Page], shot: Shot
) -> None:
    page = user_page("operator")

    def with_deliveries(route: Route) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        response = route.fetch()
        body = response.json()
        at = "2026-01-02T03:04:0{}+00:00"
        body["deliveries"] = [
            {
                "delivery": "d1",
                "event": "batch_failed",
                "attempt": 2,
                "error": HOSTILE,
                "at": at.format(5),
            },
            {
                "delivery": "d0",
                "event": "batch_failed",
                "attempt": 1,
                "error": None,
                "at": at.format(0),
            },
        ]
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/v1/session/notify", with_deliveries)
    page.goto("/account")
    page.fill("#t-name", HOSTILE)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-secret-name")).to_have_text(f"“{HOSTILE}”")
    row = page.locator("#tokens-body tr").first
    expect(row.locator("td").first).to_contain_text(HOSTILE)
    assert page.locator("#tokens-body img, #token-secret img").count() == 0

    rows = page.locator("#deliveries-body tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").nth(2)).to_have_text(HOSTILE)
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("sent")
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("batch failed")
    assert page.locator("#deliveries-body img").count() == 0
    row.locator("[data-act=revoke]").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Revoke token “{HOSTILE}”?")
    page.click("#confirm-ok")
    expect(page.locator("#tokens-empty")).to_be_visible()
    expect(page.locator("#token-secret")).to_be_hidden()  # its secret went with it
    assert page.input_value("#token-secret-value") == ""
    shot(page, "account-hostile")
    assert page.evaluate("window.pwned === undefined")


def test_a_viewer_has_an_account_page_too(
    user_page: Callable[[str], Page], portal_url: str
) -> None:
    page = user_page("viewer")
    page.click("header a.user")
    expect(page).to_have_url(f"{portal_url}/account")
    expect(page.locator("#me-role")).to_have_text("viewer")
    page.fill("#t-name", "viewer-script")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-secret")).to_be_visible()  # the API answered
    secret = page.input_value("#token-secret-value")
    assert secret.startswith("bf_")
    assert _bearer(portal_url, secret)[0] == 200
    page.fill("#n-email", "vi@example.com")
    page.get_by_label("awaiting approval").check()
    page.click("#notify-save")
    expect(page.locator("#toasts")).to_contain_text("Saved: mail goes to vi@example.com")


def test_the_account_page_fits_a_phone(logged_in_page: Page) -> None:
    page = logged_in_page
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto("/account")
    expect(page.locator("h1")).to_have_text("Account")
    expect(page.locator("header a.user")).to_be_visible()  # the way here stays on a phone
    page.wait_for_timeout(500)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"/account scrolls sideways by {overflow}px"


def _login_status(portal_url: str, name: str, password: str) -> int:
    body = json.dumps({"name": name, "password": password}).encode()
    req = urllib.request.Request(
        portal_url + "/api/v1/session", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_a_user_changes_their_password_and_the_page_goes_on(
    user_page: Callable[[str], Page], portal_url: str
) -> None:
    page = user_page("viewer")
    page.goto("/account")
    name = page.locator("#me-name").inner_text()
    old, new = f"{name}-password", "a-new-password-9"
    error = page.locator("#password-error")
    # the two new ones differ: checked here, nothing sent
    page.fill("#p-old", old)
    page.fill("#p-new", new)
    page.fill("#p-again", new + "x")
    page.click("#password-save")
    expect(error).to_have_text("The two new passwords differ.")
    # the old one is wrong: the API's answer, and nothing changed
    page.fill("#p-old", "not-the-password")
    page.fill("#p-again", new)
    page.click("#password-save")
    expect(error).to_have_text("the old password is wrong")
    assert _login_status(portal_url, name, old) == 200
    # right: changed, the form emptied, and this page keeps working (its new CSRF token)
    page.fill("#p-old", old)
    page.click("#password-save")
    expect(page.locator("#toasts")).to_contain_text("Password changed")
    expect(error).to_be_hidden()
    assert page.input_value("#p-old") == page.input_value("#p-new") == ""
    assert _login_status(portal_url, name, old) == 401
    assert _login_status(portal_url, name, new) == 200
    page.fill("#n-email", "pw@example.com")
    page.click("#notify-save")
    expect(page.locator("#toasts")).to_contain_text("Saved: mail goes to pw@example.com")
