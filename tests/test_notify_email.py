"""E-mail notifications: address/event checks, the SMTP URL, and a real portal mailing a
real local SMTP server: one mail to the opted-in owner of a failed batch, none to
anyone else, no output in it; the server down -> attempts retried and logged."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import BashfleetError, InputError
from sandbox.notify_email import check_email, check_email_events, smtp_settings
from tests.portal import Portal, running_portal


@pytest.mark.parametrize(
    "bad",
    [
        "plain",
        "a@b",
        "a b@example.com",
        "<a@example.com>",
        "a@example.com, b@example.com",
        "a@example.com\r\nBcc: x@y.z",
        "a@@example.com",
        "a@exa..mple.com",
        7,
        "x" * 250 + "@example.com",
    ],
)
def test_bad_addresses_are_refused(bad: Any) -> None:
    with pytest.raises(InputError, match="`email`"):
        check_email(bad)


def test_good_addresses_events_and_smtp_url() -> None:
    assert check_email("ops+ci@mail.example.com") == "ops+ci@mail.example.com"
    assert check_email("") is None
    assert check_email_events(["batch_failed", "batch_finished"]) == (
        "batch_finished",
        "batch_failed",
    )
    assert check_email_events([]) == ()
    for bad in (["nope"], "batch_failed", [1]):
        with pytest.raises(InputError, match="`events`"):
            check_email_events(bad)
    assert smtp_settings({}) is None
    s = smtp_settings(
        {
            "BASHFLEET_SMTP_URL": "smtp://bf%40x:p%3Ass@mail.example.com:2525?starttls=1",
            "BASHFLEET_SMTP_FROM": "bashfleet@example.com",
        }
    )
    assert s is not None
    assert (s.host, s.port, s.tls, s.starttls) == ("mail.example.com", 2525, False, True)
    assert (s.user, s.password) == ("bf@x", "p:ss")
    s = smtp_settings(
        {"BASHFLEET_SMTP_URL": "smtps://mail.example.com", "BASHFLEET_SMTP_FROM": "a@b.example"}
    )
    assert s is not None and (s.port, s.tls, s.starttls, s.user) == (465, True, False, None)
    with pytest.raises(BashfleetError, match="SMTP_FROM"):
        smtp_settings({"BASHFLEET_SMTP_URL": "smtp://mail.example.com"})
    with pytest.raises(BashfleetError, match="SMTP_URL"):
        smtp_settings({"BASHFLEET_SMTP_URL": "http://x", "BASHFLEET_SMTP_FROM": "a@b.example"})


class SmtpServer:
    """A small real SMTP server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that keeps
    every accepted message with its envelope."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], Message]] = []
        smtp = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 test ESMTP")
                sender, rcpts = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    verb = raw.decode(errors="replace").strip()
                    upper = verb.upper()
                    if upper.startswith(("EHLO", "HELO")):
                        self.reply("250 test")
                    elif upper.startswith("MAIL FROM:"):
                        sender, rcpts = verb[10:].strip(" <>"), []
                        self.reply("250 ok")
                    elif upper.startswith("RCPT TO:"):
                        rcpts.append(verb[8:].strip(" <>"))
                        self.reply("250 ok")
                    elif upper == "DATA":
                        self.reply("354 go on")
                        data = b""
                        while (line := self.rfile.readline()) not in (b".\r\n", b""):
                            data += line[1:] if line.startswith(b"..") else line
                        with smtp.lock:
                            smtp.mails.append((sender, rcpts, message_from_bytes(data)))
                        self.reply("250 queued")
                    elif upper == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.lock = threading.Lock()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer()
    yield s
    s.close()


def wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _notify(portal: Portal, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    return portal.request("PUT", "/api/v1/session/notify", body, token=token)


def test_failed_batch_mails_its_opted_in_owner_only(tmp_path: Path, smtp: SmtpServer) -> None:
    env = {
        "BASHFLEET_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "BASHFLEET_SMTP_FROM": "bashfleet@example.com",
        "BASHFLEET_PUBLIC_URL": "https://fleet.example.com/",
        "BASHFLEET_WEBHOOK_BACKOFF_S": "0.2,0.2",
        "BASHFLEET_SUBMIT_RATE": "1000",
    }
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as portal:
        alice, bob = portal.token("alice", "operator"), portal.token("bob", "operator")
        carol, root = portal.token("carol", "operator"), portal.token("root", "admin")
        status, mine = _notify(
            portal, alice, {"email": "alice@example.com", "events": ["batch_failed"]}
        )
        assert status == 200, mine
        assert mine["email"] == "alice@example.com" and mine["events"] == ["batch_failed"]
        assert mine["smtp_configured"] is True
        # bob wants every failure, but of his own batches; carol gave an address, no events
        status, _ = _notify(
            portal, bob, {"email": "bob@example.com", "events": ["batch_failed", "batch_finished"]}
        )
        assert status == 200
        assert _notify(portal, carol, {"email": "carol@example.com"})[0] == 200

        # refusals name the field and change nothing
        for body, field in (
            ({"email": "not an address"}, "`email`"),
            ({"email": "a@example.com\r\nBcc: x@y.example"}, "`email`"),
            ({"events": ["nope"]}, "`events`"),
            ({"email": "ok@example.com", "events": "batch_failed"}, "`events`"),
            ({"emails": "x@y.example"}, "emails"),
        ):
            status, err = _notify(portal, alice, body)
            assert status == 400 and field in err["message"], (body, err)
        _s, again = portal.request("GET", "/api/v1/session/notify", token=alice)
        assert again["email"] == "alice@example.com" and again["events"] == ["batch_failed"]
        # admins set anyone's; operators nobody else's
        path = f"/api/v1/users/{again['user_id']}/notify"
        assert portal.request("GET", path, token=bob)[0] == 403
        assert portal.request("PUT", path, {"email": "x@y.example"}, token=bob)[0] == 403
        assert portal.request("PUT", "/api/v1/users/99999/notify", {}, token=root)[0] == 404

        for who in (carol, alice):
            _s, b = portal.request(
                "POST", "/api/v1/batches", {"script": "echo SECRET-OUTPUT-42\nfalse"}, token=who
            )
            portal.wait_batch(b["id"], who)
        failed = b["id"]
        wait_for(lambda: len(smtp.mails) >= 1)
        time.sleep(1.0)  # anything else would have come by now
        assert len(smtp.mails) == 1, [m[1] for m in smtp.mails]
        sender, rcpts, mail = smtp.mails[0]
        assert sender == "bashfleet@example.com" and rcpts == ["alice@example.com"]
        assert mail["To"] == "alice@example.com"
        assert failed in mail["Subject"] and "failed" in mail["Subject"]
        text = mail.get_payload(decode=True).decode()
        assert mail.get_content_type() == "text/plain"
        assert f"Batch: {failed}" in text and "Workspace: default" in text
        assert f"Link: https://fleet.example.com/batches/{failed}" in text
        assert "Counts:" in text and "failed 1" in text
        assert "SECRET-OUTPUT-42" not in mail.as_string()

        # an admin turns alice's mail off: her next failure mails nobody
        status, off = portal.request("PUT", path, {"events": []}, token=root)
        assert status == 200 and off["events"] == [] and off["email"] == "alice@example.com"
        _s, b = portal.request("POST", "/api/v1/batches", {"script": "false"}, token=alice)
        portal.wait_batch(b["id"], alice)
        _s, b = portal.request("POST", "/api/v1/batches", {"script": "true"}, token=bob)
        portal.wait_batch(b["id"], bob)
        wait_for(lambda: len(smtp.mails) >= 2)
        time.sleep(1.0)
        assert [m[1] for m in smtp.mails] == [["alice@example.com"], ["bob@example.com"]]
        assert "finished" in smtp.mails[1][2]["Subject"]

        # the server goes away: bob's failure is tried 3 times (backoff 0.2, 0.2), logged
        smtp.close()
        _s, b = portal.request("POST", "/api/v1/batches", {"script": "false"}, token=bob)
        portal.wait_batch(b["id"], bob)

        def attempts() -> list[dict[str, Any]]:
            _s, me = portal.request("GET", "/api/v1/session/notify", token=bob)
            return [d for d in me["deliveries"] if d["error"]]

        wait_for(lambda: len(attempts()) >= 6)  # batch_finished and batch_failed, 3 each
        rows = attempts()
        assert sorted(d["attempt"] for d in rows) == [1, 1, 2, 2, 3, 3]
        assert all("Connection" in d["error"] or "refused" in d["error"] for d in rows), rows
        assert {d["event"] for d in rows} == {"batch_failed", "batch_finished"}
        # the portal goes on
        assert portal.request("GET", "/api/v1/session", token=bob)[0] == 200
        _s, b = portal.request("POST", "/api/v1/batches", {"script": "true"}, token=bob)
        assert portal.wait_batch(b["id"], bob)["status"] == "succeeded"
