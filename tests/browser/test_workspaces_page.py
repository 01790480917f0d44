"""The workspace settings page: list, edit (image, network, variables, secrets, limits,
owner), the API's errors shown in the form, and secret values never shown back."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.portal import Portal

Api = Callable[..., tuple[int, Any]]
Shot = Callable[[Page, str], Path]


def test_workspace_settings_page(
    logged_in_page: Page, api: Api, shot: Shot, browser_portal: Portal, admin_token: str
) -> None:
    page = logged_in_page
    name = f"ws-{uuid.uuid4().hex[:6]}"
    hostile = "<img src=x onerror=alert(1)>"
    page.goto("/workspaces")
    expect(page.locator('nav a[href="/workspaces"]')).to_have_attribute("aria-current", "page")
    page.fill("#ws-new-name", name)
    page.click("#ws-new")
    expect(page.locator("#ws-form-title")).to_have_text(f"Settings of {name}")
    # the image list asks the local engine (three docker calls): slower on a busy engine
    expect(page.locator("#ws-image option")).not_to_have_count(0, timeout=15_000)
    page.select_option("#ws-network", "egress")
    page.fill("#ws-env", f"CI=1\nNOTE={hostile}")
    page.fill("#ws-secret-name", "API_TOKEN")
    page.fill("#ws-secret-value", "tok-very-secret-1")
    page.fill("#ws-limit-conditional-cpus", "1")
    page.fill("#ws-limit-conditional-memory_bytes", "512")
    # a value over the admin's maximum: the API's message shows in the form, nothing saved
    page.fill("#ws-limit-dangerous-pids", "99999999")
    page.click("#ws-save")
    expect(page.locator("#ws-error")).to_contain_text("limits.dangerous.pids")
    assert api("GET", f"/api/v1/workspaces/{name}")[0] == 404
    shot(page, "workspaces-error")
    page.fill("#ws-limit-dangerous-pids", "")
    page.click("#ws-save")
    expect(page.locator("#ws-error")).to_be_hidden()
    row = page.locator(f'#ws-body tr[data-name="{name}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(3)).to_have_text("egress")
    expect(row.locator("td").nth(4)).to_have_text("1")
    expect(page.locator('#ws-secrets li[data-name="API_TOKEN"]')).to_be_visible()
    expect(page.locator("#ws-secret-value")).to_have_value("")
    status, ws = api("GET", f"/api/v1/workspaces/{name}")
    assert status == 200, ws
    assert ws["network"] == "egress" and ws["env"] == {"CI": "1", "NOTE": hostile}
    assert ws["secrets"] == ["API_TOKEN"] and ws["owner"] == {"user": "admin"}
    assert ws["limits"] == {"conditional": {"cpus": 1, "memory_bytes": 512 << 20}}
    assert "tok-very-secret-1" not in page.content()
    shot(page, "workspaces")

    # its disk use (GET /usage): empty, then the bytes of an uploaded file, as text
    usage = page.locator(f'#ws-body td.ws-usage[data-name="{name}"]')
    expect(usage).to_have_text("0 B")
    status, done = browser_portal.request(
        "PUT",
        f"/api/v1/workspaces/{name}/files?format=file&name=data.bin",
        raw=b"x" * 3072,
        token=admin_token,
    )
    assert status == 201, done
    # open it again from the list: the values come back as text, the secret by name only
    page.reload()
    expect(usage).to_have_text("3.0 KiB")
    expect(usage).to_have_attribute("title", re.compile(r"^files 3\.0 KiB · output 0 B"))
    page.locator(f'#ws-body tr[data-name="{name}"] button').click()
    expect(page.locator("#ws-env")).to_have_value(f"CI=1\nNOTE={hostile}")
    expect(page.locator("#ws-limit-conditional-memory_bytes")).to_have_value("512")
    page.locator('#ws-secrets li[data-name="API_TOKEN"] button').click()
    page.select_option("#ws-network", "none")
    page.click("#ws-save")
    expect(page.locator('#ws-secrets li[data-name="API_TOKEN"]')).to_have_count(0)
    status, ws = api("GET", f"/api/v1/workspaces/{name}")
    assert ws["secrets"] == [] and ws["network"] == "none", json.dumps(ws)
