"""E-mail notification settings (sandbox/notify_email.py sends the mails).

    GET /session/notify            one's own address, events and the last 20 attempts
    PUT /session/notify            {"email": "a@b.c" | "", "events": [...]}   ("" stops mail)
    GET/PUT /users/ID/notify       the same for any user (admins)

``events`` are the webhook events: batch_finished, batch_failed, awaiting_approval,
schedule_failed_twice; mail is about the user's own batches.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from sandbox.notify_email import check_email, check_email_events
from sandbox.store import Role
from webapp import current_service
from webapp.auth import audit, current_user, requires
from webapp.body import json_object

notify_api = Blueprint("notify_api", __name__)
FIELDS = {"email", "events"}


def _json(user_id: int) -> dict[str, Any]:
    svc = current_service()
    s = svc.store.notify.get(user_id)
    return {
        "user_id": s.user_id,
        "email": s.email,
        "events": list(s.events),
        "smtp_configured": svc.mail is not None,
        "deliveries": [
            {
                "delivery": d.delivery,
                "event": d.event,
                "attempt": d.attempt,
                "error": d.error,
                "at": d.at.isoformat(),
            }
            for d in svc.store.notify.deliveries(user_id)
        ],
    }


def _put(user_id: int) -> Response:
    body = json_object(FIELDS)
    store = current_service().store
    current = store.notify.get(user_id)
    # both checked before anything is written: a rejected change changes nothing
    email = check_email(body["email"]) if "email" in body else current.email
    events = check_email_events(body["events"]) if "events" in body else current.events
    store.notify.set(user_id, email=email, events=events)
    audit("notify_changed", target=str(user_id), detail={"events": list(events)})
    return jsonify(_json(user_id))


@notify_api.get("/session/notify")
@requires(Role.VIEWER)
def my_settings() -> Response:
    return jsonify(_json(current_user().id))


@notify_api.put("/session/notify")
@requires(Role.VIEWER)
def change_mine() -> Response:
    return _put(current_user().id)


@notify_api.get("/users/<int:user_id>/notify")
@requires(Role.ADMIN)
def user_settings(user_id: int) -> Response:
    return jsonify(_json(user_id))


@notify_api.put("/users/<int:user_id>/notify")
@requires(Role.ADMIN)
def change_user(user_id: int) -> Response:
    return _put(user_id)
