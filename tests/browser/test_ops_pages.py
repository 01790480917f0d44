"""The operations pages: dashboard (pools, live charts, scaling decisions, batches),
history (search, filters in the URL, paging), schedules (create, validate, pause,
resume, edit, delete; viewers read only) and admin (users, tokens, audit log)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

Api = Callable[..., tuple[int, Any]]
Shot = Callable[[Page, str], Path]


def _submit(api: Api, script: str) -> str:
    status, body = api("POST", "/api/v1/batches", {"script": script})
    assert status == 201, body
    return str(body["id"])


def _wait_final(api: Api, batch_ids: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    pending = set(batch_ids)
    while pending and time.monotonic() < deadline:
        for bid in list(pending):
            _, b = api("GET", f"/api/v1/batches/{bid}")
            if b["status"] not in ("pending", "queued", "running"):
                pending.discard(bid)
        if pending:
            time.sleep(0.1)
    assert not pending, f"batches still running: {pending}"


def _wait_quiet(api: Api, mark: str, timeout: float = 30) -> None:
    """Wait until no batch whose script holds ``mark`` is still going."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, page = api("GET", f"/api/v1/batches?q={mark}&status=pending,queued,running&limit=1")
        if page["total"] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"batches with {mark} still running")


# --- dashboard ------------------------------------------------------------------------------


def test_dashboard_shows_pools_live_metrics_and_batches(
    logged_in_page: Page, api: Api, shot: Shot
) -> None:
    page = logged_in_page
    page.goto("/")
    expect(page.locator("#conn")).to_have_text("live")
    _, metrics = api("GET", "/api/v1/metrics")
    for pool in ("safe", "conditional", "sequential", "dangerous"):
        node = page.locator(f"#pool-{pool}")
        expect(node).to_have_attribute("data-limit", str(metrics["pools"][pool]["limit"]))
        expect(node.locator(".ops-pool-limit")).to_have_text(str(metrics["pools"][pool]["limit"]))

    # the charts grow from `metrics` events (seeded with one point from the REST call)
    page.wait_for_function(
        "() => ['chart-cpu', 'chart-mem', 'chart-throughput', 'chart-latency']"
        ".every(id => +document.getElementById(id).dataset.points >= 3)",
        timeout=8000,
    )
    assert page.locator("#chart-cpu canvas").count() == 1

    # a batch of parallel safe commands: it shows up as running, fills the safe pool,
    # then moves to the recent list once it finished
    batch = _submit(api, "sleep 2\nsleep 2\nsleep 2")
    row = page.locator(f'#running-body tr[data-id="{batch}"]')
    expect(row).to_be_visible(timeout=5000)
    expect(row.locator("a")).to_have_attribute("href", f"/batches/{batch}")
    page.wait_for_function(
        "() => +document.getElementById('pool-safe').dataset.running > 0", timeout=5000
    )
    shot(page, "ops-dashboard-running")
    _wait_final(api, [batch])
    done = page.locator(f'#recent-body tr[data-id="{batch}"]')
    expect(done).to_be_visible(timeout=6000)
    expect(done.locator(".badge")).to_have_text("succeeded")
    expect(done).to_contain_text("3/3")
    expect(page.locator("#pool-safe")).to_have_attribute("data-running", "0", timeout=5000)

    # charts follow the window size (one column of charts on a narrow window)
    width = "() => document.querySelector('#chart-cpu canvas').getBoundingClientRect().width"
    before = page.evaluate(width)
    page.set_viewport_size({"width": 720, "height": 900})
    page.wait_for_function(
        "([before]) => { const c = document.querySelector('#chart-cpu canvas');"
        " const box = document.querySelector('#chart-cpu .ops-chart-body');"
        " const w = c.getBoundingClientRect().width;"
        " return Math.abs(w - before) > 20 && Math.abs(w - box.clientWidth) < 4; }",
        arg=[before],
        timeout=3000,
    )
    shot(page, "ops-dashboard-narrow")


def test_dashboard_lists_scaling_decisions_from_rest_and_live(
    logged_in_page: Page, shot: Shot
) -> None:
    page = logged_in_page
    decision = {
        "pool": "conditional",
        "before": 2,
        "after": 4,
        "reason": "conditional 2 -> 4: queue 12, CPU 41%",
        "at": time.time() - 30,
    }

    def with_decision(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["scaling"] = [*body.get("scaling", []), decision]
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/v1/metrics", with_decision)
    page.goto("/")
    item = page.locator("#scaling-list li", has_text="queue 12, CPU 41%")
    expect(item).to_be_visible()
    expect(item).to_contain_text("conditional")
    expect(item.locator(".ops-decision-change")).to_have_text("2 ↗ 4")
    expect(page.locator("#scaling-empty")).to_be_hidden()

    # live `scaling` events go on top; the reason is inert text
    page.wait_for_function("() => BF.socket().listeners('scaling').length > 0")
    page.evaluate(
        """() => BF.socket().listeners('scaling').forEach(fn => fn({
            pool: 'safe', before: 8, after: 6, at: Date.now() / 1000,
            reason: 'safe 8 -> 6: CPU 91% <img src=x onerror="window.pwned=1">'}))"""
    )
    first = page.locator("#scaling-list li").first
    expect(first).to_contain_text("safe 8 -> 6: CPU 91% <img src=x")
    expect(first.locator(".ops-decision-change")).to_have_text("8 ↘ 6")
    assert page.locator("#scaling-list img").count() == 0
    assert page.evaluate("window.pwned") is None
    shot(page, "ops-dashboard-scaling")


# --- history ----------------------------------------------------------------------------------


def test_history_search_filters_live_in_the_url(
    logged_in_page: Page, portal_url: str, api: Api, shot: Shot
) -> None:
    page = logged_in_page
    mark = f"hist-{uuid.uuid4().hex[:8]}"
    ok = _submit(api, f"echo {mark}")
    bad = _submit(api, f"echo {mark}\nfalse")
    _wait_final(api, [ok, bad])

    page.goto("/history")
    page.fill("#f-q", mark)
    rows = page.locator("#history-body tr")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(f"{portal_url}/history?q={mark}")
    page.locator("label.ops-chip", has_text="failed").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", bad)
    expect(rows.first.locator("a.ops-id")).to_have_attribute("href", f"/batches/{bad}")
    assert "status=failed" in page.url

    # a shared link restores the same view
    page.goto(f"/history?q={mark}&status=succeeded&source=api")
    expect(page.locator("#f-q")).to_have_value(mark)
    expect(page.locator('input[name=status][value="succeeded"]')).to_be_checked()
    expect(page.locator("#f-source")).to_have_value("api")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ok)
    page.select_option("#f-source", "cli")
    expect(page.locator("#history-empty")).to_be_visible()
    assert "source=cli" in page.url
    shot(page, "ops-history-empty")
    page.go_back()  # the filter change was a history entry
    expect(page.locator("#f-source")).to_have_value("api")
    expect(rows).to_have_count(1)
    page.click("#f-clear")
    expect(page).to_have_url(f"{portal_url}/history")


def test_history_loads_more_with_the_cursor(logged_in_page: Page, api: Api) -> None:
    page = logged_in_page
    mark = f"page-{uuid.uuid4().hex[:8]}"
    ids = [_submit(api, f"true {mark} {i}") for i in range(53)]
    page.goto(f"/history?q={mark}")
    rows = page.locator("#history-body tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#history-count")).to_have_text("Showing 50 of 53")
    page.click("#load-more")
    expect(rows).to_have_count(53)
    expect(page.locator("#load-more")).to_be_hidden()
    shown = page.eval_on_selector_all("#history-body tr", "rs => rs.map(r => r.dataset.id)")
    assert shown == list(reversed(ids))  # newest first, none twice
    _wait_quiet(api, mark)


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_create_pause_resume_edit_delete(
    logged_in_page: Page, api: Api, shot: Shot
) -> None:
    page = logged_in_page
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    page.goto("/schedules")
    page.click("#new-schedule")
    page.fill("#s-name", name)
    page.fill("#s-workspace", "ops-ws")
    page.fill("#s-cron", "61 * * * *")
    page.fill("#s-script", "echo nightly\nls")
    page.click("#schedule-save")
    expect(page.locator("#schedule-error")).to_contain_text("is not valid")
    shot(page, "ops-schedules-invalid-cron")
    page.fill("#s-cron", "*/5 * * * *")
    page.click("#schedule-save")
    expect(page.locator("#schedule-form-card")).to_be_hidden()

    row = page.locator(f'#schedules-body tr[data-name="{name}"]')
    expect(row).to_be_visible()
    expect(row.locator(".ops-trigger")).to_have_text("*/5 * * * *")
    expect(row.locator(".ops-next-rel")).to_have_text(re.compile(r"^in \d+ (s|min)$|^due now$"))
    expect(row.locator("td").nth(6)).to_have_text("admin")  # the owner, by name
    sid = row.get_attribute("data-id")
    _, s = api("GET", f"/api/v1/schedules/{sid}")
    assert s["cron"] == "*/5 * * * *" and s["next_run_at"] and not s["paused"]

    row.locator("[data-act=pause]").click()
    expect(row).to_have_attribute("data-paused", "true")
    expect(row.locator(".ops-state")).to_have_text("paused")
    assert api("GET", f"/api/v1/schedules/{sid}")[1]["paused"] is True
    row.locator("[data-act=resume]").click()
    expect(row).to_have_attribute("data-paused", "false")
    expect(row.locator(".ops-state")).to_have_text("active")

    # edit: switch to an interval
    row.locator("[data-act=edit]").click()
    expect(page.locator("#s-name")).to_have_value(name)
    page.locator("#s-kind label", has_text="Fixed interval").click()
    page.fill("#s-interval", "3600")
    page.click("#schedule-save")
    expect(row.locator(".ops-trigger")).to_have_text("every hour")
    _, s = api("GET", f"/api/v1/schedules/{sid}")
    assert s["interval_s"] == 3600 and s["cron"] is None and s["script"] == "echo nightly\nls"
    shot(page, "ops-schedules")

    # run now: a batch of this schedule at once, and its page
    row.locator("[data-act=run]").click()
    page.wait_for_url(re.compile(r"/batches/[0-9A-Z]+$"))
    bid = page.url.rsplit("/", 1)[-1]
    _, b = api("GET", f"/api/v1/batches/{bid}")
    assert b["source"] == "schedule" and b["schedule_id"] == int(sid)
    page.goto("/schedules")

    # delete asks first; cancelling keeps it
    row.locator("[data-act=delete]").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-cancel")
    expect(row).to_be_visible()
    row.locator("[data-act=delete]").click()
    page.click("#confirm-ok")
    expect(row).to_have_count(0)
    assert api("GET", f"/api/v1/schedules/{sid}")[0] == 404


def test_viewers_see_schedules_without_edit_buttons(
    browser: Browser, portal_url: str, api: Api
) -> None:
    name = f"visible-{uuid.uuid4().hex[:6]}"
    status, s = api(
        "POST", "/api/v1/schedules", {"name": name, "script": "echo hi", "interval_s": 86400}
    )
    assert status == 201, s
    status, _ = api(
        "POST", "/api/v1/users", {"name": "viv", "role": "viewer", "password": "viv-password-1"}
    )
    assert status in (201, 409)
    context = browser.new_context(base_url=portal_url)
    try:
        assert context.request.post(
            "/api/v1/session", data={"name": "viv", "password": "viv-password-1"}
        ).ok
        page = context.new_page()
        page.goto("/schedules")
        row = page.locator(f'#schedules-body tr[data-name="{name}"]')
        expect(row).to_contain_text("every day")
        expect(row.locator("a", has_text="Runs")).to_have_attribute(
            "href", f"/history?source=schedule&schedule={s['id']}"
        )
        assert page.locator("#new-schedule").count() == 0
        assert page.locator("#schedules-body [data-act]").count() == 0
    finally:
        context.close()
        api("DELETE", f"/api/v1/schedules/{s['id']}")


# --- admin --------------------------------------------------------------------------------------


def _bearer(portal_url: str, token: str) -> int:
    req = urllib.request.Request(portal_url + "/api/v1/session")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_admin_users_tokens_and_audit(
    logged_in_page: Page, browser: Browser, portal_url: str, api: Api, shot: Shot
) -> None:
    page = logged_in_page
    who = f"u{uuid.uuid4().hex[:6]}"
    page.goto("/admin")

    # a user with a generated password, shown once
    page.fill("#u-name", who)
    page.select_option("#u-role", "viewer")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#user-secret")).to_be_visible()
    password = page.input_value("#user-secret-value")
    assert len(password) >= 8
    row = page.locator(f'#users-body tr[data-name="{who}"]')
    expect(row.locator("select")).to_have_value("viewer")
    context = browser.new_context(base_url=portal_url)
    assert context.request.post("/api/v1/session", data={"name": who, "password": password}).ok
    context.close()
    page.click("[data-dismiss=user-secret]")
    expect(page.locator("#user-secret")).to_be_hidden()

    # role change and disable
    row.locator("select").select_option("operator")
    expect(page.locator("#toasts")).to_contain_text("role is now operator")
    users = {u["name"]: u for u in api("GET", "/api/v1/users")[1]["items"]}
    assert users[who]["role"] == "operator"
    row.locator("[data-act=disable]").click()
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text("disabled")
    users = {u["name"]: u for u in api("GET", "/api/v1/users")[1]["items"]}
    assert users[who]["disabled"] is True
    row.locator("[data-act=enable]").click()
    expect(row.locator(".badge")).to_have_text("active")

    # a token: the secret is shown once, works, and stops working once revoked
    tname = f"ci-{who}"
    page.fill("#t-name", tname)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-secret")).to_be_visible()
    secret = page.input_value("#token-secret-value")
    assert secret.startswith("bf_")
    assert _bearer(portal_url, secret) == 200
    trow = page.locator(f'#tokens-body tr[data-name="{tname}"]')
    prefix = next(
        t["prefix"] for t in api("GET", "/api/v1/tokens?all=1")[1]["items"] if t["name"] == tname
    )
    assert secret.startswith(prefix)
    expect(trow.locator("code")).to_have_text(prefix + "…")
    shot(page, "ops-admin-token-created")
    page.reload()
    expect(page.locator("#token-secret")).to_be_hidden()
    assert secret not in page.content()
    trow.locator("[data-act=revoke]").click()
    expect(page.locator("#confirm-title")).to_contain_text(tname)
    page.click("#confirm-ok")
    expect(trow).to_have_count(0)
    assert _bearer(portal_url, secret) == 401
    page.check("#t-show-revoked")
    expect(trow.locator(".badge")).to_have_text("revoked")

    # the audit log shows all of it
    audit = page.locator("#audit-body")
    expect(audit.locator('tr[data-action="token_revoked"]').first).to_be_visible()
    expect(audit.locator('tr[data-action="user_created"]', has_text=who).first).to_contain_text(
        "role=viewer"
    )
    expect(audit.locator('tr[data-action="user_changed"]', has_text=who)).to_have_count(3)
    expect(audit.locator('tr[data-action="token_created"]').first).to_contain_text(secret[:6])
    page.select_option("#a-action", "user_created")
    expect(audit.locator("tr:not([data-action=user_created])")).to_have_count(0)
    expect(audit.locator("tr", has_text=who)).to_have_count(1)
    shot(page, "ops-admin")


@pytest.mark.parametrize("path", ["/", "/history", "/schedules", "/workspaces", "/admin"])
def test_ops_pages_load_cleanly_on_a_phone(logged_in_page: Page, path: str) -> None:
    page = logged_in_page
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(path)
    expect(page.locator("h1")).to_be_visible()
    page.wait_for_timeout(800)
    # nothing but tables (which scroll in their own box) may widen the page
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{path} scrolls sideways by {overflow}px"
