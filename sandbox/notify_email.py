"""E-mail notifications: the webhook events (sandbox/webhooks.py ``EVENTS``) mailed to
the batch's owner, when they gave an address and chose the event.

Settings: ``BASHFLEET_SMTP_URL`` (``smtp://user:pass@host:port``, ``smtps://...`` for
TLS from the start, ``smtp://...?starttls=1`` to upgrade; user and password optional,
percent-encoded) and ``BASHFLEET_SMTP_FROM`` (the From address). Without a URL nothing is
mailed. ``BASHFLEET_PUBLIC_URL`` (the portal's address as people reach it), when set,
adds a link to the batch. Mails are plain text: batch id, status, workspace, owner,
counts; never the output of a command (it may hold secrets), never a command's text.

Like webhooks, the bus only queues: one thread plans and sends, and a failed attempt is
tried again after ``BASHFLEET_WEBHOOK_BACKOFF_S`` (1, 4, 16 s); every attempt is in the
``email_deliveries`` table.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.errors import BashfleetError, InputError
from sandbox.events import Event
from sandbox.notify_queue import NotifyQueue
from sandbox.store import Store
from sandbox.webhooks import EVENTS, backoff, describe_event, wanted

log = logging.getLogger(__name__)

SMTP_URL_ENV = "BASHFLEET_SMTP_URL"
SMTP_FROM_ENV = "BASHFLEET_SMTP_FROM"
PUBLIC_URL_ENV = "BASHFLEET_PUBLIC_URL"
TIMEOUT_S = 10.0
MAX_EMAIL = 254
# deliberately narrow: one @, no spaces, quotes, angle brackets, commas or control chars
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)


def check_email(value: Any) -> str | None:
    """An address, or None to stop mail; InputError names the field."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_EMAIL or not EMAIL.fullmatch(value):
        raise InputError("`email` is an address like name@example.com (or null)")
    if ".." in value.split("@")[1] or "." not in value.split("@")[1]:
        raise InputError("`email` has no valid domain")
    return value


def check_email_events(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"`events` is a list of: {', '.join(EVENTS)} (empty: no mail)")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise InputError(f"`events`: unknown {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in value)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: bool  # smtps: TLS from the first byte
    starttls: bool
    user: str | None
    password: str | None
    sender: str


def smtp_settings(environ: Mapping[str, str] = os.environ) -> SmtpSettings | None:
    """The SMTP server to use, None when none is configured; BashfleetError if malformed."""
    url = environ.get(SMTP_URL_ENV, "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BashfleetError(f"{SMTP_URL_ENV} is not a valid URL: {e}") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise BashfleetError(f"{SMTP_URL_ENV} is smtp://[user:pass@]host[:port] or smtps://...")
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0] in ("1", "true", "yes")
    sender = environ.get(SMTP_FROM_ENV, "").strip()
    if check_email(sender) is None:
        raise BashfleetError(f"{SMTP_FROM_ENV} (the From address) is needed with {SMTP_URL_ENV}")
    tls = parts.scheme == "smtps"
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if tls else 25),
        tls=tls,
        starttls=starttls and not tls,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sender=sender,
    )


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """One mail; OSError or smtplib.SMTPException when it did not go."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.tls:
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT_S, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT_S)
    with smtp:
        if settings.starttls:
            smtp.starttls(context=context)
        if settings.user is not None:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(message)


def compose(
    sender: str, to: str, event: str, info: Mapping[str, Any], public_url: str
) -> EmailMessage:
    """The plain-text mail for one event: no command output, no command text."""
    titles = {
        "batch_finished": "finished",
        "batch_failed": "failed",
        "awaiting_approval": "awaits approval",
        "schedule_failed_twice": "failed twice in a row (schedule)",
    }
    subject = f"[bashfleet] batch {info['id']} {titles.get(event, event)}: {info['status']}"
    lines = [
        f"Event: {event}",
        f"Batch: {info['id']}",
        f"Status: {info['status']}",
        f"Workspace: {info['workspace']}",
        f"Submitted by: {info['user']}",
        f"Source: {info['source']}",
        f"Commands: {info['commands']}",
    ]
    if info.get("schedule_id") is not None:
        lines.append(f"Schedule: {info['schedule_id']}")
    counts = info.get("counts") or {}
    if counts:
        lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if public_url:
        lines.append(f"Link: {public_url.rstrip('/')}/batches/{info['id']}")
    lines += ["", "Output is not included in mails; open the portal to see it."]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content("\n".join(lines) + "\n")
    return message


@dataclass
class _Mail:
    user_id: int
    event: str
    message: EmailMessage
    id: str
    attempt: int = 1


class EmailNotifier(NotifyQueue[_Mail]):
    """Subscribe it to the event bus; it only queues there. One thread plans the mails,
    sends them and wakes retries (mail is rare; one connection at a time is plenty)."""

    what = "mails"

    def __init__(
        self,
        store: Store,
        settings: SmtpSettings,
        *,
        public_url: str | None = None,
        backoff_s: Sequence[float] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.public_url = os.environ.get(PUBLIC_URL_ENV, "") if public_url is None else public_url
        super().__init__(wanted, backoff() if backoff_s is None else backoff_s, "bashfleet-mail")

    def plan(self, event: Event) -> list[_Mail]:
        return self._mails(event)

    def dispatch(self, item: _Mail) -> None:
        self._attempt(item)

    def _mails(self, e: Event) -> list[_Mail]:
        batch = self.store.batches.get(getattr(e, "batch_id", ""))
        if batch.user_id is None:
            return []
        who = self.store.notify.get(batch.user_id)
        if who.email is None or who.disabled or not who.events:
            return []
        names, info, _extra = describe_event(self.store, e)
        return [
            _Mail(
                who.user_id,
                name,
                compose(self.settings.sender, who.email, name, info, self.public_url),
                uuid.uuid4().hex,
            )
            for name in names
            if name in who.events
        ]

    def _attempt(self, m: _Mail) -> None:
        error: str | None = None
        try:
            send(self.settings, m.message)
        except Exception as e:  # network, TLS, SMTP refusals: all logged, maybe retried
            error = f"{type(e).__name__}: {e}"
        try:
            self.store.notify.log(
                m.user_id, event=m.event, delivery=m.id, attempt=m.attempt, error=error
            )
        except Exception:
            log.exception("cannot log mail %s", m.id)
        if error is not None:
            self.retry(m)
