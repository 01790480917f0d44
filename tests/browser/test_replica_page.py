"""A browser on a web replica (`serve --broker --replica`): it logs in, submits from the
editor (both forwarded to the control plane) and watches the output arrive live, each
line once, over the replica's own Socket.IO."""

from __future__ import annotations

from playwright.sync_api import Browser

from tests.portal import ADMIN_PASSWORD, Portal
from tests.test_portal_replicas import Replica, pair

__all__ = ["pair"]  # fixture


def test_a_browser_on_the_replica_submits_and_follows_a_batch(
    browser: Browser, pair: tuple[Portal, Replica]
) -> None:
    _control, replica = pair
    context = browser.new_context(base_url=replica.url)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        res = context.request.post(
            "/api/v1/session", data={"name": "admin", "password": ADMIN_PASSWORD}
        )
        assert res.ok, res.text()
        page.goto("/batches/new")
        page.click("#script")
        page.keyboard.type('for i in $(seq 1 30); do echo "line $i"; sleep 0.1; done', delay=2)
        page.wait_for_selector("#statement-rows tr.statement[data-index='0']")  # classified
        page.keyboard.press("Control+Enter")
        page.wait_for_url(lambda url: "/batches/" in url and not url.endswith("/batches/new"))
        page.wait_for_selector("tr.command")
        row = page.locator("tr.command[data-index='0']")
        if row.get_attribute("aria-expanded") != "true":  # a lone command may open by itself
            row.click()
        log = page.locator(".log[data-index='0']")
        log.wait_for()
        handle = log.element_handle()
        page.wait_for_function("el => el.textContent.includes('line 3')", arg=handle)
        assert page.locator("#batch-status").get_attribute("data-status") in ("running", "queued")
        page.wait_for_function(
            "() => document.getElementById('batch-status').dataset.status === 'succeeded'",
            timeout=30_000,
        )
        page.wait_for_function("el => el.textContent.includes('line 30')", arg=handle)
        lines = page.locator(".log[data-index='0'] .ln").all_text_contents()
        assert lines == [f"line {i}" for i in range(1, 31)]  # each line once, in order
        assert not errors, errors
    finally:
        context.close()
