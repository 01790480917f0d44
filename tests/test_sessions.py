"""Browser sessions against a real server: login, CSRF, logout, rate limits, audit."""

from __future__ import annotations

import http.cookiejar
import json
import sqlite3
import urllib.error
import urllib.request
from typing import Any

from tests.portal import Portal


class Browser:
    """A cookie-keeping client, like a browser tab."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.portal.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def audit_actions(p: Portal) -> list[str]:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return [r[0] for r in db.execute("select action from audit_events order by id")]


def test_login_csrf_and_logout(portal: Portal) -> None:
    portal.token("olive", "operator")  # creates the user; password unknown: set one
    added = portal.cli(
        "user",
        "add",
        "web",
        "--role",
        "operator",
        "--password-stdin",
        input="correct horse battery\n",
    )
    assert added.returncode == 0, added.stderr
    tab = Browser(portal)
    assert tab.call("POST", "/api/v1/session", {"name": "web", "password": "nope"})[0] == 401
    status, me = tab.call(
        "POST", "/api/v1/session", {"name": "web", "password": "correct horse battery"}
    )
    assert status == 200 and me["role"] == "operator"
    csrf = me["csrf_token"]
    assert tab.call("GET", "/api/v1/batches")[0] == 200
    status, body = tab.call("POST", "/api/v1/batches", {"script": "ls"})
    assert status == 403 and body["error"] == "csrf"
    status, body = tab.call("POST", "/api/v1/batches", {"script": "ls"}, {"X-CSRF-Token": "forged"})
    assert status == 403 and body["error"] == "csrf"
    status, batch = tab.call("POST", "/api/v1/batches", {"script": "ls"}, {"X-CSRF-Token": csrf})
    assert status == 201 and batch["user"] == "web"
    assert tab.call("DELETE", "/api/v1/session")[0] == 403  # logout needs the token too
    assert tab.call("DELETE", "/api/v1/session", headers={"X-CSRF-Token": csrf})[0] == 200
    assert tab.call("GET", "/api/v1/batches")[0] == 401
    actions = audit_actions(portal)
    assert {"login_failed", "login", "csrf_refused", "batch_submitted", "logout"} <= set(actions)


def test_login_rate_limit(portal: Portal) -> None:
    tab = Browser(portal)
    codes = [
        tab.call("POST", "/api/v1/session", {"name": "admin", "password": f"guess{i}"})[0]
        for i in range(12)
    ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_submission_rate_limit_is_per_user(portal: Portal) -> None:
    busy = portal.token("busy", "operator")
    calm = portal.token("calm", "operator")
    codes = [
        portal.request("POST", "/api/v1/batches", {"script": "true"}, token=busy)[0]
        for _ in range(65)
    ]
    assert codes.count(201) == 60 and codes[-1] == 429
    assert portal.request("POST", "/api/v1/batches", {"script": "true"}, token=calm)[0] == 201
    assert "rate_limited" in audit_actions(portal)


def test_admin_manages_users_and_tokens_and_revoked_tokens_fail(portal: Portal) -> None:
    boss = portal.token("boss", "admin")
    worker = portal.token("worker", "operator")
    assert portal.request("GET", "/api/v1/users", token=worker)[0] == 403
    status, made = portal.request(
        "POST", "/api/v1/users", {"name": "newbie", "role": "viewer"}, token=boss
    )
    assert status == 201 and len(made["password"]) >= 8
    status, changed = portal.request(
        "PATCH", f"/api/v1/users/{made['id']}", {"role": "operator"}, token=boss
    )
    assert status == 200 and changed["role"] == "operator"
    status, tok = portal.request("POST", "/api/v1/tokens", {"name": "ci"}, token=worker)
    assert status == 201 and tok["token"].startswith("bf_")
    assert portal.request("GET", "/api/v1/batches", token=tok["token"])[0] == 200
    assert portal.request("DELETE", f"/api/v1/tokens/{tok['id']}", token=worker)[0] == 200
    status, body = portal.request("GET", "/api/v1/batches", token=tok["token"])
    assert status == 401 and body["error"] == "unauthorized"
    status, log = portal.request("GET", "/api/v1/audit?limit=50", token=boss)
    actions = {e["action"] for e in log["items"]}
    assert {
        "user_created",
        "user_changed",
        "token_created",
        "token_revoked",
        "auth_failed",
    } <= actions
