"""The login page and the page shell: redirects, errors, logout, security headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PageProblems


def test_login_redirects_back_and_logout_ends_the_session(
    browser: Browser,
    portal_url: str,
    admin_password: str,
    page_problems: PageProblems,
    shot: Callable[[Page, str], Path],
) -> None:
    context = browser.new_context(base_url=portal_url)
    page = context.new_page()
    page_problems.watch(page)
    page.goto("/history?status=failed")
    expect(page).to_have_url(f"{portal_url}/login?next=/history%3Fstatus%3Dfailed")
    shot(page, "login")
    page.fill("#name", "admin")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("wrong name or password")
    page.fill("#password", admin_password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{portal_url}/history?status=failed")
    expect(page.locator("#conn")).to_have_text("live")  # the socket connected with the cookie
    page.click("#logout")
    expect(page).to_have_url(f"{portal_url}/login")
    page.goto("/")
    expect(page).to_have_url(f"{portal_url}/login?next=/")
    context.close()
    assert not page_problems.errors and not page_problems.dialogs


def test_pages_carry_a_strict_content_security_policy(logged_in_page: Page) -> None:
    response = logged_in_page.goto("/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"


def test_a_viewer_is_told_what_an_admin_page_needs(
    browser: Browser, portal_url: str, api: Callable[..., tuple[int, object]]
) -> None:
    status, _ = api(
        "POST", "/api/v1/users", {"name": "vera", "role": "viewer", "password": "vera-password-1"}
    )
    assert status in (201, 409)
    context = browser.new_context(base_url=portal_url)
    res = context.request.post(
        "/api/v1/session", data={"name": "vera", "password": "vera-password-1"}
    )
    assert res.ok, res.text()
    page = context.new_page()
    response = page.goto("/admin")
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text("needs the admin role")
    expect(page.locator("nav")).not_to_contain_text("New batch")
    context.close()
