"""Browser sessions against a real server: login, CSRF, logout, rate limits, audit."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal import ADMIN_PASSWORD, Portal, alive, running_portal


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


@pytest.fixture(scope="module")
def sessions_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    # logins of several tests share one address: the login limit itself is tested on a
    # portal of its own (test_login_rate_limit), with the default limit
    env = {"BASHFLEET_LOGIN_RATE": "1000"}
    with running_portal(
        tmp_path_factory.mktemp("sessions"), env=env, extra=["--isolation", "local"]
    ) as p:
        yield p


@pytest.fixture
def portal(sessions_portal: Portal) -> Portal:
    """One portal for the module; every test has users of its own."""
    return alive(sessions_portal)


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


def test_login_rate_limit(fresh_portal: Portal) -> None:
    portal = fresh_portal
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


def test_login_redirects_only_to_paths_of_this_site(portal: Portal) -> None:
    # attack: an open redirect after login (phishing through a trusted link)
    for hostile in (
        "//evil.example",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "/%2F/evil.example",
        "https://evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
    ):
        target = "/login?next=" + urllib.parse.quote(hostile, safe="/%")
        with urllib.request.urlopen(portal.url + target, timeout=10) as r:
            page = r.read().decode()
        assert 'data-next="/"' in page, (hostile, page[:300])
    with urllib.request.urlopen(portal.url + "/login?next=/history%3Fstatus%3Dfailed") as r:
        assert 'data-next="/history?status=failed"' in r.read().decode()


def test_password_change_needs_the_old_one_and_ends_other_sessions(portal: Portal) -> None:
    admin = portal.token("root2", "admin")
    status, made = portal.request(
        "POST",
        "/api/v1/users",
        {"name": "pat", "role": "viewer", "password": "first-pass"},
        token=admin,
    )
    assert status == 201, made
    tab, other = Browser(portal), Browser(portal)
    csrf = tab.call("POST", "/api/v1/session", {"name": "pat", "password": "first-pass"})[1]
    assert (
        other.call("POST", "/api/v1/session", {"name": "pat", "password": "first-pass"})[0] == 200
    )
    headers = {"X-CSRF-Token": csrf["csrf_token"]}
    wrong = {"old_password": "not-it-at-all", "new_password": "second-pass"}
    assert tab.call("POST", "/api/v1/session/password", wrong, headers)[0] == 403
    right = {"old_password": "first-pass", "new_password": "second-pass"}
    status, changed = tab.call("POST", "/api/v1/session/password", right, headers)
    assert status == 200, changed
    assert tab.call("GET", "/api/v1/session")[0] == 200  # this tab goes on
    assert other.call("GET", "/api/v1/session")[0] == 401  # the other session ended
    assert (
        Browser(portal).call("POST", "/api/v1/session", {"name": "pat", "password": "second-pass"})[
            0
        ]
        == 200
    )
    status, reset = portal.request("POST", f"/api/v1/users/{made['id']}/password", {}, token=admin)
    assert status == 200 and len(reset["password"]) >= 8, reset
    assert tab.call("GET", "/api/v1/session")[0] == 401  # an admin reset ends every session
    assert (
        Browser(portal).call(
            "POST", "/api/v1/session", {"name": "pat", "password": reset["password"]}
        )[0]
        == 200
    )


def test_secure_cookie_and_proxy_headers_when_configured(tmp_path: Path) -> None:
    env = {"BASHFLEET_SECURE_COOKIES": "1", "BASHFLEET_PROXY_HOPS": "1"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as p:
        body = json.dumps({"name": "admin", "password": ADMIN_PASSWORD}).encode()
        req = urllib.request.Request(p.url + "/api/v1/session", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("X-Forwarded-For", "203.0.113.9")
        req.add_header("X-Forwarded-Proto", "https")
        with urllib.request.urlopen(req, timeout=10) as r:
            cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie, cookie
        with sqlite3.connect(p.data / "bashfleet.db") as db:
            (address,) = db.execute(
                "select address from audit_events where action = 'login'"
            ).fetchone()
        assert address == "203.0.113.9"  # the client behind the proxy, not the proxy


def test_an_admin_resets_a_password_from_the_cli(portal: Portal) -> None:
    portal.token("cleo", "viewer")  # made with the CLI, with a generated password
    done = portal.cli("user", "passwd", "cleo", "--password-stdin", input="chosen-by-admin\n")
    assert done.returncode == 0, done.stderr
    login = {"name": "cleo", "password": "chosen-by-admin"}
    assert Browser(portal).call("POST", "/api/v1/session", login)[0] == 200
    missing = portal.cli("user", "passwd", "nobody")
    assert missing.returncode != 0 and "no user" in missing.stderr


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_the_account_page_needs_a_session_and_lists_the_mail_events(portal: Portal) -> None:
    from sandbox.webhooks import EVENTS

    # logged out: to the login page, which comes back here
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.build_opener(_NoRedirect).open(portal.url + "/account", timeout=10)
    assert caught.value.code == 302
    assert caught.value.headers["Location"].endswith("/login?next=/account")

    # a viewer: the page, one checkbox per mail event, the header link marked current
    admin = portal.token("root3", "admin")
    who = {"name": "vic", "role": "viewer", "password": "vic-password-1"}
    assert portal.request("POST", "/api/v1/users", who, token=admin)[0] == 201
    tab = Browser(portal)
    assert (
        tab.call("POST", "/api/v1/session", {"name": "vic", "password": who["password"]})[0] == 200
    )
    with tab.opener.open(portal.url + "/account", timeout=10) as r:
        assert r.status == 200
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        page = r.read().decode()
    boxes = re.findall(r'<input type="checkbox" name="events" value="([a-z_]+)">', page)
    assert tuple(boxes) == EVENTS
    assert re.search(r'<a class="user" href="/account"[^>]*aria-current="page"', page)
    assert 'id="me-role">viewer<' in page
