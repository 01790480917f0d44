"""The browser pages: server-rendered shells (Jinja) that fetch their data from the
REST API with the session cookie and follow it live over Socket.IO.

No page embeds user data in a script: values reach JavaScript through ``data-``
attributes and JSON, and every page is served with a strict Content Security
Policy (scripts and styles only from this origin, no inline script, no framing).
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session
from werkzeug.wrappers import Response as BaseResponse

from sandbox.store import Role, UserRecord
from sandbox.webhooks import EVENTS
from webapp.auth import session_user

pages = Blueprint("pages", __name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def secure_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _page(template: str, *, role: Role = Role.VIEWER, **context: object) -> BaseResponse | str:
    user = session_user()
    if user is None:
        target = request.full_path.rstrip("?") if request.query_string else request.path
        return redirect(f"/login?next={quote(target, safe='/')}")
    if not user.role.allows(role):
        return Response(
            render_template("forbidden.html", user=user, csrf=session.get("csrf"), needed=role),
            status=403,
        )
    return render_template(template, user=user, csrf=session.get("csrf"), **context)


@pages.get("/login")
def login() -> BaseResponse | str:
    if session_user() is not None:
        return redirect(_next_path())
    return render_template("login.html", user=None, next_path=_next_path())


def _next_path() -> str:
    """Where to go after login: a path on this site only. Browsers drop tabs and newlines
    and read ``\\`` as ``/``, so ``/%09/evil``, ``/\\evil`` and ``//evil`` all leave the
    site: anything with a control character, a backslash or a leading ``//`` (as sent
    or once decoded) goes to ``/``."""
    target = request.args.get("next", "/")
    decoded = unquote(target)
    if (
        len(target) > 500
        or not target.startswith("/")
        or any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in target + decoded)
        or target.startswith("//")
        or decoded.startswith("//")
        or urlsplit(target).netloc
    ):
        return "/"
    return target


@pages.get("/")
def dashboard() -> BaseResponse | str:
    return _page("dashboard.html", active="dashboard")


@pages.get("/batches/new")
def new_batch() -> BaseResponse | str:
    return _page("new_batch.html", role=Role.OPERATOR, active="new")


@pages.get("/batches/<batch_id>")
def batch(batch_id: str) -> BaseResponse | str:
    return _page("batch.html", active="history", batch_id=batch_id[:64])


@pages.get("/history")
def history() -> BaseResponse | str:
    return _page("history.html", active="history")


@pages.get("/schedules")
def schedules() -> BaseResponse | str:
    return _page("schedules.html", active="schedules")


@pages.get("/workspaces")
def workspaces() -> BaseResponse | str:
    return _page("workspaces.html", active="workspaces")


@pages.get("/workspaces/<name>/files")
def workspace_files(name: str) -> BaseResponse | str:
    return _page("files.html", active="files", workspace=name[:64])


@pages.get("/files")
def files() -> BaseResponse:
    return redirect("/workspaces/default/files")


@pages.get("/account")
def account() -> BaseResponse | str:
    """One's own name and role, API tokens and e-mail settings (any signed-in user); the
    mail events are those of sandbox/webhooks.py, as the notify API accepts them."""
    return _page("account.html", active="account", mail_events=EVENTS)


@pages.get("/admin")
def admin() -> BaseResponse | str:
    return _page("admin.html", role=Role.ADMIN, active="admin")


def can(user: UserRecord | None, role: str) -> bool:
    return user is not None and user.role.allows(Role(role))


@pages.app_context_processor
def _helpers() -> dict[str, object]:
    return {"can": can}
