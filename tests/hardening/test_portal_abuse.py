"""Abuse of the portal over REST: CSRF, roles, revoked tokens, rate limits, fuzzed payloads.

(Socket.IO and browser XSS are covered elsewhere. tests/test_schemathesis.py fuzzes the
whole OpenAPI document with schemathesis; the hypothesis test here throws payloads that do
NOT follow the schema at the submission, classify, schedule and admin endpoints.)
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hardening.conftest import HPortal, hportal


class Tab:
    """A browser tab: keeps its session cookie."""

    def __init__(self, p: HPortal) -> None:
        self.p = p
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def call(self, method: str, path: str, body: Any = None, csrf: str | None = None) -> int:
        req = urllib.request.Request(
            self.p.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
        )
        req.add_header("Content-Type", "application/json")
        if csrf is not None:
            req.add_header("X-CSRF-Token", csrf)
        try:
            with self.opener.open(req, timeout=30) as r:
                self.last = json.loads(r.read() or b"null")
                return int(r.status)
        except urllib.error.HTTPError as e:
            self.last = json.loads(e.read() or b"null")
            return int(e.code)

    def login(self, name: str, password: str) -> str:
        assert self.call("POST", "/api/v1/session", {"name": name, "password": password}) == 200
        return str(self.last["csrf_token"])


def _audit(p: HPortal, admin: str) -> list[dict[str, Any]]:
    status, log = p.request("GET", "/api/v1/audit?limit=500", token=admin)
    assert status == 200, log
    return list(log["items"])


# attack: cross-site request forgery, role escalation and revoked tokens
def test_csrf_roles_and_revoked_tokens_are_refused_and_audited(
    local_portal: HPortal, figures: dict[str, Any]
) -> None:
    """State-changing requests from a session without, or with another session's, CSRF token
    get 403; role violations get 403; a revoked token gets 401; each refusal is in
    GET /api/v1/audit."""
    p = local_portal
    admin = p.token("boss", "admin")
    for name in ("mallory", "alice"):
        p.add_user(name, "operator", password="pw-1234567")
    victim, attacker = Tab(p), Tab(p)
    good = victim.login("alice", "pw-1234567")
    foreign = attacker.login("mallory", "pw-1234567")
    refused = 0
    for method, path, body in (
        ("POST", "/api/v1/batches", {"script": "ls"}),
        ("POST", "/api/v1/schedules", {"name": "x", "script": "ls", "interval_s": 60}),
        ("POST", "/api/v1/tokens", {"name": "stolen"}),
        ("DELETE", "/api/v1/session", None),
    ):
        for token in (None, foreign, "", good + "x"):
            assert victim.call(method, path, body, csrf=token) == 403, (method, path, token)
            assert victim.last["error"] == "csrf"
            refused += 1
    assert victim.call("POST", "/api/v1/batches", {"script": "ls"}, csrf=good) == 201

    viewer = p.token("vic", "viewer")
    operator = p.token("otto", "operator")
    forbidden = [
        ("POST", "/api/v1/batches", {"script": "ls"}, viewer),
        ("POST", "/api/v1/schedules", {"name": "v", "script": "ls", "interval_s": 60}, viewer),
        ("GET", "/api/v1/users", None, operator),
        ("POST", "/api/v1/users", {"name": "x", "role": "admin"}, operator),
        ("GET", "/api/v1/audit", None, operator),
    ]
    for method, path, body, token in forbidden:
        status, answer = p.request(method, path, body, token=token)
        assert status == 403 and answer["error"] == "forbidden", (method, path, answer)
        refused += 1

    status, tok = p.request("POST", "/api/v1/tokens", {"name": "ci"}, token=operator)
    assert status == 201
    assert p.request("DELETE", f"/api/v1/tokens/{tok['id']}", token=operator)[0] == 200
    for method, path in (("GET", "/api/v1/batches"), ("POST", "/api/v1/batches")):
        status, answer = p.request(method, path, {"script": "ls"}, token=tok["token"])
        assert status == 401 and answer["error"] == "unauthorized"
        refused += 1

    actions = [e["action"] for e in _audit(p, admin)]
    assert actions.count("csrf_refused") >= 16
    assert actions.count("forbidden") >= 5
    assert actions.count("auth_failed") == 1  # one row per address and minute, not per request
    figures["portal_refusals"] = {
        "csrf_refused": actions.count("csrf_refused"),
        "forbidden": actions.count("forbidden"),
        "revoked_token_refused": 2,
        "all_audited": True,
        "requests_refused": refused,
    }


# attack: token guessing, and an audit log flooded with a row per bad request
def test_failed_authentication_is_limited_per_address_and_audited_in_aggregate(
    local_portal: HPortal, figures: dict[str, Any]
) -> None:
    """Attack: guessing tokens, and filling the audit log with one row per bad request."""
    p = local_portal
    admin = p.admin()
    before = [e for e in _audit(p, admin) if e["action"] == "auth_failed"]
    answers = [p.request("GET", "/api/v1/batches", token=f"bf_guess{i:04d}")[0] for i in range(45)]
    assert answers[:30] == [401] * 30 and answers[30:] == [429] * 15, answers
    rows = [e for e in _audit(p, admin) if e["action"] == "auth_failed"]
    assert len(rows) - len(before) == 1, rows
    figures["failed_auth"] = {"sent": 45, "refused_401": 30, "limited_429": 15, "audit_rows": 1}


# attack: an operator cancelling someone else's batch
def test_ownership_violations_are_audited(local_portal: HPortal) -> None:
    """An operator cancelling someone else's batch gets 403, and the refusal is audited."""
    p = local_portal
    admin, owner = p.token("boss", "admin"), p.token("otto", "operator")
    mine = p.submit(owner, "sleep 30")
    status, _ = p.request(
        "POST", f"/api/v1/batches/{mine['id']}/cancel", token=p.token("olga", "operator")
    )
    assert status == 403
    p.request("POST", f"/api/v1/batches/{mine['id']}/cancel", token=owner)
    assert any(e["action"] == "forbidden" for e in _audit(p, admin))


# attack: one user flooding submissions to starve the others
def test_rate_limit_is_per_user(local_portal: HPortal, figures: dict[str, Any]) -> None:
    """100 submissions in a minute from one user: the first 60 are accepted, the rest get
    429 (audited); another user is unaffected meanwhile."""
    p = local_portal
    busy, calm = p.token("busy", "operator"), p.token("calm", "operator")
    admin = p.token("root", "admin")
    codes, calm_codes = [], []
    for i in range(100):
        codes.append(p.request("POST", "/api/v1/batches", {"script": "true"}, token=busy)[0])
        if i % 20 == 19:
            status, _ = p.request("POST", "/api/v1/batches", {"script": "true"}, token=calm)
            calm_codes.append(status)
    assert codes[:60] == [201] * 60 and codes[60:] == [429] * 40, codes
    assert calm_codes == [201] * 5
    limited = [e for e in _audit(p, admin) if e["action"] == "rate_limited"]
    assert len(limited) == 40
    figures["rate_limit"] = {"sent": 100, "accepted": 60, "refused_429": 40, "other_user_ok": 5}


@pytest.fixture(scope="module")
def fuzz_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HPortal]:
    """No engine (non-safe commands are refused), safe ones in the read-only sandbox: fuzzed
    scripts never run outside it."""
    with hportal(
        tmp_path_factory.mktemp("fuzz"),
        isolation="auto",
        env={"BASHFLEET_SUBMIT_RATE": "100000", "DOCKER_HOST": "unix:///nonexistent/d.sock"},
    ) as p:
        p.tokens["fuzz"] = p.token("fuzz", "admin")
        yield p
        assert "Traceback" not in p.log()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "script",
    "commands",
    "workspace",
    "priority",
    "timeout_s",
    "retries",
    "needs",
    "name",
    "cron",
    "interval_s",
    "role",
    "paused",
    "password",
]
payloads = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    json_values,
)
ENDPOINTS = [
    ("POST", "/api/v1/batches"),
    ("POST", "/api/v1/classify"),
    ("POST", "/api/v1/schedules"),
    ("PATCH", "/api/v1/schedules/1"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/1"),
    ("POST", "/api/v1/tokens"),
    ("POST", "/api/v1/session"),
]


# attack: arbitrary JSON and bytes at the writing endpoints (hypothesis)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=payloads,
    raw=st.one_of(st.none(), st.binary(max_size=64)),
    query=st.text(max_size=20),
)
def test_fuzzed_payloads_never_give_a_5xx_or_a_traceback(
    fuzz_portal: HPortal, endpoint: tuple[str, str], body: Any, raw: bytes | None, query: str
) -> None:
    """hypothesis throws arbitrary JSON (and raw bytes) at the writing endpoints, and
    arbitrary query strings at the reading ones: never a 5xx, never a traceback, always a
    JSON error object for a 4xx."""
    p = fuzz_portal
    token = p.tokens["fuzz"]
    method, path = endpoint
    data = raw if raw is not None else json.dumps(body).encode()
    status, answer = p.request(method, path, token=token, raw=data)
    assert status < 500, (status, answer)
    assert "Traceback" not in str(answer)
    if status >= 400:
        assert isinstance(answer, dict) and "error" in answer, (status, answer)
    q = urllib.request.quote(query)
    for get in (
        f"/api/v1/batches?q={q}&limit={q}",
        f"/api/v1/batches/{q or 'x'}",
        f"/api/v1/audit?action={q}",
    ):
        status, answer = p.request("GET", get, token=token)
        assert status < 500 and "Traceback" not in str(answer), (get, status, answer)
