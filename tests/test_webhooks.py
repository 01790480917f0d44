"""Webhooks: target checks (no private addresses, no rebinding), signed deliveries to a
local receiver that answers 500 first, the retry in the delivery log, and the API."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import InputError
from sandbox.webhooks import DeliveryError, check_events, check_url, post, resolve
from tests.portal import Portal, running_portal


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.5/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "https://user:pw@example.com/",
        "http:///nohost",
        "https://example.com:0/",
        "https://exa mple.com/",
        "",
        7,
    ],
)
def test_bad_targets_are_refused(url: Any) -> None:
    with pytest.raises(InputError, match="`url`"):
        check_url(url, private_ok=False)


def test_good_targets_and_the_admin_switch() -> None:
    assert check_url("https://hooks.example.com/x?y=1", private_ok=False)
    assert check_url("http://127.0.0.1:9/", private_ok=True)


def test_a_name_is_checked_when_it_is_resolved() -> None:
    # a name passes at creation (it may not resolve from here); delivery resolves it and
    # refuses a private answer, so a name that later points inside gets nothing
    assert check_url("http://localhost:9/hook", private_ok=False)
    with pytest.raises(DeliveryError, match="non-public"):
        resolve("localhost", 9, private_ok=False)
    with pytest.raises(DeliveryError, match="non-public"):
        post("http://localhost:9/hook", b"{}", {}, private_ok=False)


def test_events_are_checked() -> None:
    assert check_events(["batch_failed", "batch_finished"]) == ("batch_finished", "batch_failed")
    for bad in ([], ["nope"], "batch_failed", [1]):
        with pytest.raises(InputError, match="`events`"):
            check_events(bad)


class Receiver:
    """A local HTTP receiver: answers 500 to the first request, 200 afterwards."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    first = len(receiver.requests) == 1
                self.send_response(500 if first else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        with self.lock:
            return [json.loads(b)["event"] for _h, b in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_signed_delivery_retried_after_a_500(tmp_path: Path, receiver: Receiver) -> None:
    env = {
        "BASHFLEET_WEBHOOK_ALLOW_PRIVATE": "1",
        "BASHFLEET_WEBHOOK_BACKOFF_S": "0.3,0.3",
        "BASHFLEET_SUBMIT_RATE": "1000",
    }
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as portal:
        alice, bob = portal.token("alice", "operator"), portal.token("bob", "operator")
        status, hook = portal.request(
            "POST",
            "/api/v1/webhooks",
            {"url": receiver.url, "events": ["batch_finished", "batch_failed"]},
            token=alice,
        )
        assert status == 201, hook
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["workspace"] is None
        status, shown = portal.request("GET", f"/api/v1/webhooks/{hook['id']}", token=alice)
        assert status == 200 and "secret" not in shown
        assert portal.request("GET", f"/api/v1/webhooks/{hook['id']}", token=bob)[0] == 404
        assert portal.request("GET", "/api/v1/webhooks", token=bob)[1]["items"] == []

        # bob's batch is not alice's business; hers is
        portal.wait_batch(
            portal.request("POST", "/api/v1/batches", {"script": "true"}, token=bob)[1]["id"], bob
        )
        _s, batch = portal.request("POST", "/api/v1/batches", {"script": "false"}, token=alice)
        portal.wait_batch(batch["id"], alice)
        # two events; whichever came first got the 500 and came again (order varies)
        wait_for(lambda: len(receiver.requests) >= 3)
        time.sleep(0.5)
        events = receiver.events()
        assert len(events) == 3 and set(events) == {"batch_failed", "batch_finished"}
        assert events.count(events[0]) == 2
        for headers, body in receiver.requests:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Bashfleet-Signature"] == expected
            payload = json.loads(body)
            assert payload["batch"]["id"] == batch["id"]
            assert str(payload["sent_at"]) == headers["X-Bashfleet-Timestamp"]
            assert payload["delivery"] == headers["X-Bashfleet-Delivery"]
        first = json.loads(receiver.requests[0][1])
        retried = [json.loads(b) for _h, b in receiver.requests[1:]]
        assert first["delivery"] in [p["delivery"] for p in retried]  # the same delivery again

        _s, log = portal.request("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", token=alice)
        rows = sorted((d["delivery"], d["attempt"], d["status_code"]) for d in log["items"])
        again = [r for r in rows if r[0] == first["delivery"]]
        assert [(a, c) for _d, a, c in again] == [(1, 500), (2, 200)]
        assert any(d["error"] == "HTTP 500" for d in log["items"])

        # a schedule that fails twice in a row says so
        status, _ = portal.request(
            "PATCH",
            f"/api/v1/webhooks/{hook['id']}",
            {"events": ["schedule_failed_twice"]},
            token=alice,
        )
        assert status == 200
        status, s = portal.request(
            "POST",
            "/api/v1/schedules",
            {"name": "flaky", "script": "false", "cron": "0 3 * * *", "paused": True},
            token=alice,
        )
        assert status == 201, s
        for _ in range(2):
            _s, b = portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=alice)
            portal.wait_batch(b["id"], alice)
        wait_for(lambda: "schedule_failed_twice" in receiver.events())
        assert receiver.events().count("schedule_failed_twice") == 1

        status, _ = portal.request("DELETE", f"/api/v1/webhooks/{hook['id']}", token=bob)
        assert status == 404
        status, _ = portal.request("DELETE", f"/api/v1/webhooks/{hook['id']}", token=alice)
        assert status == 200
        assert portal.request("GET", f"/api/v1/webhooks/{hook['id']}", token=alice)[0] == 404


def test_webhook_api_errors(portal: Portal) -> None:
    alice, viewer = portal.token("alice", "operator"), portal.token("vera", "viewer")
    for body, field in (
        ({"url": "http://127.0.0.1:1/x"}, "`url`"),  # no private targets without the switch
        ({"url": "gopher://example.com/"}, "`url`"),
        ({"url": "https://example.com/", "events": ["everything"]}, "`events`"),
        ({"url": "https://example.com/", "active": "yes"}, "`active`"),
        ({"url": "https://example.com/", "colour": "red"}, "colour"),
        ({}, "`url`"),
    ):
        status, err = portal.request("POST", "/api/v1/webhooks", body, token=alice)
        assert status == 400 and field in err["message"], (body, err)
    status, err = portal.request(
        "POST", "/api/v1/webhooks", {"url": "https://x.example/", "workspace": "nope"}, token=alice
    )
    assert status == 404
    assert portal.request("GET", "/api/v1/webhooks", token=viewer)[0] == 403
    assert portal.request("GET", "/api/v1/webhooks", token=alice)[1]["items"] == []
    status, err = portal.request("GET", "/api/v1/webhooks/1/deliveries?limit=0", token=alice)
    assert status == 404  # no webhook 1: not found before the bad limit
