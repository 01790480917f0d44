"""`bashfleet user ...` and `bashfleet token ...`: accounts on a data folder's database."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.errors import BashfleetError

if TYPE_CHECKING:  # the store (SQLAlchemy) loads only for the commands that use it
    from sandbox.store import Store

ROLES = ("viewer", "operator", "admin")


def open_store(data: Path, database_url: str | None = None) -> Store:
    from sandbox.store import Store, default_url, make_engine, migrate

    data.mkdir(parents=True, exist_ok=True)
    url = database_url or os.environ.get("BASHFLEET_DATABASE_URL") or default_url(data)
    engine = make_engine(url)
    migrate(engine)
    return Store.open(engine, data)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = sub.add_parser("user", help="portal users")
    user_sub = user.add_subparsers(dest="user_cmd", metavar="ACTION")
    add = user_sub.add_parser("add", help="add a user (prints a generated password)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    user_sub.add_parser("list", help="list users")
    passwd = user_sub.add_parser(
        "passwd", help="reset a user's password (prints a generated one); their sessions end"
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")

    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_cmd", metavar="ACTION")
    create = token_sub.add_parser("create", help="create a token for user NAME; printed once")
    create.add_argument("name", metavar="NAME", help="the user the token acts as")
    create.add_argument("--label", default="cli", help="what the token is for")


def run_user(args: argparse.Namespace, data: Path) -> int:
    from sandbox.store import Role

    store = open_store(data)
    try:
        if args.user_cmd in ("add", "passwd"):
            generated = not args.password_stdin
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
                if not 8 <= len(password) <= 1024:
                    raise BashfleetError("the password must have 8 to 1024 characters")
            else:
                password = secrets.token_urlsafe(15)
        if args.user_cmd == "passwd":
            found = store.accounts.find_user(args.name)
            if found is None:
                raise BashfleetError(f"no user {args.name!r}")
            store.accounts.set_password(found.id, password)
            store.audit.append("password_reset", actor="cli", user_id=found.id, target=found.name)
            print(f"password of {found.name} reset; their sessions end", file=sys.stderr)
            if generated:
                print("password (shown once):", file=sys.stderr)
                print(password)
            return 0
        if args.user_cmd == "add":
            if store.accounts.find_user(args.name) is not None:
                raise BashfleetError(f"user {args.name!r} exists already")
            user = store.accounts.create_user(args.name, password, Role(args.role))
            store.audit.append(
                "user_created", actor="cli", target=user.name, detail={"role": user.role.value}
            )
            print(f"created {user.name} ({user.role.value})", file=sys.stderr)
            if generated:
                print("password (shown once):", file=sys.stderr)
                print(password)
            return 0
        if args.user_cmd == "list":
            for u in store.accounts.list_users():
                state = " (disabled)" if u.disabled else ""
                print(f"{u.name}\t{u.role.value}{state}\t{u.created_at:%Y-%m-%d}")
            return 0
        raise BashfleetError(
            "say `bashfleet user add NAME --role ROLE`, `bashfleet user passwd NAME` or "
            "`bashfleet user list`"
        )
    finally:
        store.close()


def run_token(args: argparse.Namespace, data: Path) -> int:
    if args.token_cmd != "create":
        raise BashfleetError("say `bashfleet token create NAME`")
    store = open_store(data)
    try:
        user = store.accounts.find_user(args.name)
        if user is None:
            hint = f"bashfleet user add {args.name} --role operator"
            raise BashfleetError(f"no user {args.name!r}; add one with `{hint}`")
        new = store.accounts.create_token(user.id, args.label)
        store.audit.append("token_created", actor="cli", user_id=user.id, target=new.token.prefix)
        print(
            f"token for {user.name} ({user.role.value}); it is shown once: store it now. "
            "Use it as `Authorization: Bearer TOKEN`.",
            file=sys.stderr,
        )
        print(new.secret)
        return 0
    finally:
        store.close()


def ensure_admin(store: Store) -> str | None:
    """On an empty database, create `admin`; returns the one-time password if generated."""
    from sandbox.store import Role

    if store.accounts.list_users():
        return None
    password = os.environ.get("BASHFLEET_ADMIN_PASSWORD") or None
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(15)
    store.accounts.create_user("admin", password, Role.ADMIN)
    store.audit.append("user_created", actor="first-run", target="admin", detail={"role": "admin"})
    return password if generated else None
