"""Approvals in the browser with two people: the submitter (alice) cannot approve her own
dangerous command under the two-person rule; bob approves one from the dashboard and
rejects another (with a reason) on the batch page; the live statuses follow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import PageProblems
from tests.portal import Portal, user_token

PASSWORD = "approve-me-please-1"


@pytest.fixture
def people(
    browser: Browser, browser_portal: Portal, portal_url: str
) -> Iterator[dict[str, tuple[Page, PageProblems, str]]]:
    out: dict[str, tuple[Page, PageProblems, str]] = {}
    contexts = []
    for name in ("alice", "bob"):
        token = user_token(browser_portal, name, "operator", password=PASSWORD)
        context = browser.new_context(base_url=portal_url, viewport={"width": 1400, "height": 900})
        contexts.append(context)
        res = context.request.post("/api/v1/session", data={"name": name, "password": PASSWORD})
        assert res.ok, res.text()
        page = context.new_page()
        problems = PageProblems()
        problems.watch(page)
        out[name] = (page, problems, token)
    yield out
    for context in contexts:
        context.close()
    for _page, problems, _t in out.values():
        assert not problems.errors, problems.errors
        assert not problems.dialogs, problems.dialogs


def test_two_people_approve_and_reject(
    people: dict[str, tuple[Page, PageProblems, str]],
    browser_portal: Portal,
    portal_url: str,
    api: Any,
    shot: Any,
) -> None:
    status, body = api(
        "PUT", "/api/v1/workspaces/twoperson/approval", {"approve": "dangerous", "two_person": True}
    )
    assert status == 200, body
    alice, _alice_problems, alice_token = people["alice"]
    bob, bob_problems, _bob_token = people["bob"]
    status, batch = browser_portal.request(
        "POST",
        "/api/v1/batches",
        {"script": "rm -rf gone\nrm -rf gone2\necho free\n", "workspace": "twoperson"},
        token=alice_token,
    )
    assert status == 201, batch
    bid = batch["id"]

    alice.goto(f"{portal_url}/batches/{bid}")
    row0 = "tr.command[data-index='0']"
    alice.wait_for_selector(f"{row0} [data-status='awaiting_approval']")
    alice.wait_for_selector("tr.command[data-index='2'] [data-status='succeeded']", timeout=15_000)
    alice.click(f"{row0} button.approve-command")
    alice.wait_for_selector(".toast", timeout=5000)
    assert "two-person" in alice.locator(".toast").last.text_content()
    assert alice.locator(f"{row0} [data-status]").get_attribute("data-status") == (
        "awaiting_approval"
    )
    shot(alice, "approvals-batch-waiting")

    # bob: the dashboard lists both; he approves #1 there
    bob.goto(f"{portal_url}/")
    item = bob.locator(f"#approvals-list li[data-command-id='{batch['commands'][0]['id']}']")
    item.wait_for(timeout=10_000)
    assert bob.locator("#approvals-list li").count() == 2
    assert "two-person rule" in item.text_content()
    shot(bob, "approvals-dashboard")
    item.locator("button", has_text="Approve").click()
    item.wait_for(state="detached", timeout=5000)

    # alice's page follows live: #1 runs and succeeds
    alice.wait_for_selector(f"{row0} [data-status='succeeded']", timeout=15_000)

    # bob rejects #2 on the batch page, with a reason typed into the prompt
    bob.remove_listener("dialog", bob_problems._dialog)  # this prompt is expected
    bob.on("dialog", lambda d: d.accept("too risky"))
    bob.goto(f"{portal_url}/batches/{bid}")
    row1 = "tr.command[data-index='1']"
    bob.wait_for_selector(f"{row1} [data-status='awaiting_approval']")
    bob.click(f"{row1} button.reject-command")
    bob.wait_for_selector(f"{row1} [data-status='rejected']", timeout=10_000)
    assert "rejected by bob: too risky" in bob.locator(f"{row1} td.why").text_content()
    assert bob.locator(f"{row1} button.approve-command").is_hidden()
    alice.wait_for_selector(f"{row1} [data-status='rejected']", timeout=10_000)
    alice.wait_for_function(
        "() => document.getElementById('batch-status').dataset.status === 'failed'",
        timeout=10_000,
    )
    _s, done = api("GET", f"/api/v1/batches/{bid}")
    assert [c["status"] for c in done["commands"]] == ["succeeded", "rejected", "succeeded"]
    assert done["commands"][0]["approval_by"] == "bob"
