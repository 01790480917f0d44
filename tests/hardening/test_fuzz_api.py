"""A fuzzer that can produce what breaks servers: 5,000 requests over every endpoint.

hypothesis' JSON (tests/hardening/test_portal_abuse.py) cannot write ``NaN``, ``1e999``,
lone surrogates or 10**30, so the inputs behind the known 500s never came up. Here every
field of every writing endpoint gets, in turn, hostile text (NUL, lone surrogates, BOM,
bidi overrides, combining marks, 5,000 characters), numbers that do not fit (``NaN``,
``Infinity``, ``1e999``, 10**30, -2**63 - 1), every wrong JSON type and deep nesting, and
every path and query parameter gets odd ids and numbers. The generator is seeded: a
failure names the request that caused it and repeats.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hardening.conftest import HPortal, hportal

REQUESTS = 5000
SEED = 15


class Raw(str):
    """JSON text put into a body as it is (NaN, 1e999, a number with 5,000 digits)."""


TEXTS = [
    "",
    " ",
    "ls",
    "echo hi",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ufeffls",
    "\u202egnp.exe",
    "e\u0301\u0301\u0301",
    "😀" * 50,
    "\u2028\u2029",
    "名前",
    "../../etc/passwd",
    "//evil.example",
    "%00%2e%2e",
    "'; drop table users; --",
    "$(reboot)",
    "\\",
    "x" * 5000,
    "* * * * *",
    "61 * * * *",
    "viewer",
    "admin",
]
NUMBERS = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e999"),
    Raw("-1e999"),
    Raw("1e308"),
    Raw("4.9e-324"),
    Raw("10000000000000000000000000000000"),
    Raw("9223372036854775808"),
    Raw("-9223372036854775809"),
    Raw("1" * 5000),
    0,
    -1,
    1,
    5,
    60,
    3600,
    1.5,
    True,
    False,
]
SHAPES = [
    [],
    {},
    [1, "a"],
    {"a": 1},
    {"0": [1]},
    {"1": [0]},
    {"x": "y"},
    Raw("[" * 3000 + "]" * 3000),
    Raw("{" + '"a":{' * 200 + "}" * 201),
    ["ls", 5],
    ["echo a", "echo b"],
]
FIELDS = [
    "image",
    "network",
    "env",
    "secrets",
    "limits",
    "owner",
    "max_commands",
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
    "disabled",
    "user_id",
    "old_password",
    "new_password",
    "offsets",
    "only",
    "artifacts",
    "reason",
    "approve",
    "two_person",
    "url",
    "events",
    "active",
    "template",
    "params",
    "email",
]
IDS = [
    "x",
    "0",
    "-1",
    "9" * 30,
    "%00",
    "..%2f..",
    "%ED%A0%80",
    "%C3%A9",
    "%E2%80%AE",
    "a" * 300,
]
INTS = ["1", "0", "-1", "99999999999999999999999", "1e3", "%00", "", "NaN"]
WRITES = [
    ("POST", "/api/v1/batches"),
    ("POST", "/api/v1/classify"),
    ("POST", "/api/v1/schedules"),
    ("PATCH", "/api/v1/schedules/{int}"),
    ("POST", "/api/v1/schedules/{int}/pause"),
    ("POST", "/api/v1/schedules/{int}/resume"),
    ("DELETE", "/api/v1/schedules/{int}"),
    ("POST", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{int}"),
    ("POST", "/api/v1/users/{int}/password"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{int}"),
    ("POST", "/api/v1/session"),
    ("POST", "/api/v1/session/password"),
    ("POST", "/api/v1/batches/{id}/cancel"),
    ("POST", "/api/v1/batches/{id}/commands/{id}/cancel"),
    ("PUT", "/api/v1/workspaces/{q}"),
    ("POST", "/api/v1/teams"),
    ("PUT", "/api/v1/teams/{q}/members/{q}"),
    ("POST", "/api/v1/images"),
    ("PUT", "/api/v1/workspaces/{q}/files?path={q}&name={q}&format={q}"),
    ("PUT", "/api/v1/workspaces/default/files?path={q}&name={q}"),
    ("POST", "/api/v1/workspaces/{q}/move"),
    ("POST", "/api/v1/workspaces/default/move"),
    ("DELETE", "/api/v1/audit?before={q}"),
    ("POST", "/api/v1/retention"),
    ("POST", "/api/v1/batches/{id}/commands/{id}/approve"),
    ("POST", "/api/v1/batches/{id}/commands/{id}/reject"),
    ("PUT", "/api/v1/workspaces/{id}/approval"),
    ("POST", "/api/v1/schedules/{int}/run"),
    ("POST", "/api/v1/webhooks"),
    ("PATCH", "/api/v1/webhooks/{int}"),
    ("DELETE", "/api/v1/webhooks/{int}"),
    ("POST", "/api/v1/templates"),
    ("PATCH", "/api/v1/templates/{int}"),
    ("DELETE", "/api/v1/templates/{int}"),
    ("PUT", "/api/v1/session/notify"),
    ("PUT", "/api/v1/users/{int}/notify"),
]
READS = [
    "/healthz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/metrics",
    "/api/v1/nodes",
    "/api/v1/batches?status={q}&source={q}&q={q}&limit={n}&offset={n}&cursor={q}",
    "/api/v1/batches?schedule_id={n}",
    "/api/v1/batches/{id}",
    "/api/v1/batches/{id}/commands/{id}/output?offset={n}&limit={n}",
    "/api/v1/batches/{id}/commands/{id}/log?stream={q}",
    "/api/v1/schedules",
    "/api/v1/schedules/{int}",
    "/api/v1/workspaces",
    "/api/v1/workspaces/{q}",
    "/api/v1/teams",
    "/api/v1/images",
    "/api/v1/users",
    "/api/v1/tokens?all={q}",
    "/api/v1/audit?limit={n}&action={q}&cursor={q}",
    "/api/v1/session",
    "/api/v1/workspaces/{q}/tree?path={q}",
    "/api/v1/workspaces/default/tree?path={q}",
    "/api/v1/workspaces/default/files?path={q}",
    "/api/v1/workspaces/{q}/usage",
    "/api/v1/workspaces/{q}/move",
    "/api/v1/workspaces/default/move",
    "/api/v1/batches/{id}/artifacts",
    "/api/v1/batches/{id}/artifacts/{q}",
    "/api/v1/audit?format={q}&action={q}",
    "/workspaces/{q}/files",
    "/api/v1/approvals",
    "/api/v1/workspaces/{id}/approval",
    "/api/v1/webhooks",
    "/api/v1/templates",
    "/api/v1/templates/{int}",
    "/api/v1/webhooks/{int}",
    "/api/v1/webhooks/{int}/deliveries?limit={n}",
    "/api/v1/session/notify",
    "/api/v1/users/{int}/notify",
    "/login?next={q}",
    "/batches/{id}",
    "/history",
]


# the inputs behind the 500s the audit found, always among the requests
KNOWN = [
    ("POST", "/api/v1/session", b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("PATCH", "/api/v1/users/99999999999999999999999", b'{"role": "viewer"}'),
    ("GET", "/api/v1/schedules/99999999999999999999999", b""),
    ("POST", "/api/v1/batches", b'{"script": "echo \\ud800"}'),
    ("POST", "/api/v1/session", b'{"name": "\\udfff", "password": "x"}'),
    ("POST", "/api/v1/tokens", b'{"name": "t", "user_id": 100000000000000000000}'),
    (
        "POST",
        "/api/v1/schedules",
        b'{"name": "n", "script": "ls", "cron": "* * * * *", "timeout_s": 1e999}',
    ),
    ("POST", "/api/v1/classify", b'{"script": NaN}'),
]


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)  # ensure_ascii: a lone surrogate goes out as \ud800


def requests(
    rng: random.Random, batch_id: str, command_id: str
) -> Iterator[tuple[str, str, bytes]]:
    yield from KNOWN

    def fill(template: str) -> str:
        out = template
        while "{" in out:
            if "{int}" in out:
                out = out.replace("{int}", rng.choice([*INTS[:4], "1", "2"]), 1)
            elif "{id}" in out:
                out = out.replace("{id}", rng.choice([batch_id, command_id, *IDS]), 1)
            elif "{n}" in out:
                out = out.replace("{n}", rng.choice(INTS), 1)
            else:
                text = rng.choice(TEXTS).encode("utf-8", "surrogatepass")
                out = out.replace("{q}", urllib.parse.quote(text[:200], safe=""), 1)
        return out

    for i in range(REQUESTS - len(KNOWN)):
        if i % 3 == 2:
            yield "GET", fill(rng.choice(READS)), b""
            continue
        method, path = rng.choice(WRITES)
        fields = rng.sample(FIELDS, rng.randint(0, 4))
        body: Any = {
            f: rng.choice([rng.choice(TEXTS), rng.choice(NUMBERS), rng.choice(SHAPES)])
            for f in fields
        }
        if rng.random() < 0.1:
            body = rng.choice([*SHAPES, *NUMBERS, rng.choice(TEXTS)])
        raw = encode(body).encode("utf-8", "surrogatepass")
        if rng.random() < 0.05:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        yield method, fill(path), raw


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HPortal]:
    """No engine (non-safe commands are refused); safe ones run in the read-only sandbox."""
    with hportal(
        tmp_path_factory.mktemp("fuzz5000"),
        isolation="auto",
        env={
            "BASHFLEET_SUBMIT_RATE": "100000",
            "BASHFLEET_LOGIN_RATE": "100000",
            "BASHFLEET_AUTH_FAIL_RATE": "100000",
            "DOCKER_HOST": "unix:///nonexistent/d.sock",
        },
    ) as p:
        yield p


# attack: malformed, oversized and wrongly typed input everywhere (the 500s of the audit)
@pytest.mark.slow
def test_5000_hostile_requests_never_give_a_5xx(
    fuzz_target: HPortal, figures: dict[str, Any]
) -> None:
    """Attack: malformed, oversized and wrongly typed input in every field, path and query
    parameter of every endpoint: no 5xx, no traceback, a JSON error for every API 4xx."""
    p = fuzz_target
    p.token("decoy", "viewer")  # user 2, token 2: what the fuzzed ids 1 and 2 may hit
    admin = p.token("fuzzer", "admin")  # user 3, token 3: never demoted or revoked by it
    batch = p.submit(admin, "echo fuzz")
    work = list(requests(random.Random(SEED), batch["id"], batch["commands"][0]["id"]))
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def client(part: list[tuple[str, str, bytes]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        for method, path, raw in part:
            headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
            try:
                conn.request(method, path, body=raw or None, headers=headers)
                r = conn.getresponse()
                text = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
                with lock:
                    failures.append(f"no answer: {method} {path} {raw[:200]!r}")
                continue
            bad = r.status >= 500 or b"Traceback" in text
            if not bad and r.status >= 400 and path.startswith("/api/"):
                try:
                    bad = "error" not in json.loads(text)
                except ValueError:
                    bad = True
            with lock:
                statuses[r.status] += 1
                if bad:
                    failures.append(f"{r.status}: {method} {path} {raw[:200]!r} -> {text[:200]!r}")
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(work[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    took = time.monotonic() - t0
    assert sum(statuses.values()) == REQUESTS, (statuses, failures[:5])
    assert statuses[401] < REQUESTS // 10, statuses  # the fuzzer stayed signed in
    assert failures == [], "\n".join(failures[:20])
    assert "Traceback" not in p.log()
    figures["fuzz_5000"] = {
        "requests": REQUESTS,
        "server_errors": 0,
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(took, 1),
    }
