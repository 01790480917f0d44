"""`bashfleet workspace ...`, `bashfleet team ...` and `bashfleet image allow|list`: on a
data folder's database, like `bashfleet user` (run it as whoever runs the portal).

Secret values never go on a command line (where `ps` and /proc/*/cmdline show them):
`--secret NAME` reads the value from standard input (one line per secret, in order; a
prompt without echo on a terminal) and `--secret-file NAME=PATH` from a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.accounts_cli import open_store
from sandbox.errors import BashfleetError, InputError

if TYPE_CHECKING:
    from sandbox.store import Store

CLASSES = ("safe", "conditional", "sequential", "dangerous")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ws = sub.add_parser("workspace", help="workspace settings (image, network, env, secrets...)")
    ws_sub = ws.add_subparsers(dest="workspace_cmd", metavar="ACTION")
    ws_sub.add_parser("list", help="list workspaces and their owners")
    show = ws_sub.add_parser("show", help="a workspace's settings (secret names, never values)")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    s = ws_sub.add_parser("set", help="change a workspace's settings (made if missing)")
    s.add_argument("name")
    s.add_argument("--image", help="an allowed image ('' for the default)")
    s.add_argument("--network", choices=("none", "egress"))
    s.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable")
    s.add_argument("--unset-env", action="append", default=[], metavar="K")
    s.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="set a secret; its value is read from stdin (never give it here)",
    )
    s.add_argument("--secret-file", action="append", default=[], metavar="NAME=PATH")
    s.add_argument("--delete-secret", action="append", default=[], metavar="NAME")
    s.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="CLASS.FIELD=N",
        help="e.g. conditional.cpus=2, dangerous.timeout_s=60",
    )
    s.add_argument("--owner", metavar="user:NAME|team:NAME|none")

    mv = ws_sub.add_parser(
        "move",
        help="move a workspace to another node of a cluster (through the portal's API)",
        description="Drains the workspace, archives it on its node and restores it on "
        "NODE (an admin's token in $BASHFLEET_TOKEN); prints the move as JSON.",
    )
    mv.add_argument("name")
    mv.add_argument("--to", required=True, metavar="NODE", help="the node to move it to")
    mv.add_argument("--url", default=None, help="the portal ($BASHFLEET_URL)")
    mv.add_argument("--force", action="store_true", help="its node is lost: start it empty on NODE")
    mv.add_argument("--no-wait", action="store_true", help="return once the move has started")
    team = sub.add_parser("team", help="teams that own workspaces")
    team_sub = team.add_subparsers(dest="team_cmd", metavar="ACTION")
    team_sub.add_parser("list", help="teams, members and quotas")
    add = team_sub.add_parser("add", help="add a team")
    add.add_argument("name")
    add.add_argument("--max-commands", type=int, default=0, help="0: no quota")
    add.add_argument("--max-bytes", type=int, default=0, help="0: no quota")
    member = team_sub.add_parser("member", help="add or remove a member")
    member.add_argument("name")
    member.add_argument("user")
    member.add_argument("--remove", action="store_true")


def add_image_parsers(img_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    allow = img_sub.add_parser("allow", help="allow an image of the local engine for workspaces")
    allow.add_argument("image")
    img_sub.add_parser("list", help="allowed images: present here, size, profile")


def run_image(args: argparse.Namespace, data: Path) -> int:
    from sandbox.allowed_images import allowed_images, local_image
    from sandbox.workspace_settings import check_image_name

    store = open_store(data)
    try:
        if args.image_cmd == "allow":
            image = check_image_name(args.image)
            if local_image(image) is None:
                raise BashfleetError(
                    f"{image} is not in the local Docker engine (or the engine does not "
                    "answer); build or load it first: `bashfleet image build`, `docker load`"
                )
            if store.images.add(image, "cli"):
                store.audit.append("image_allowed", actor="cli", target=image)
                print(f"allowed {image}", file=sys.stderr)
            else:
                print(f"{image} was allowed already", file=sys.stderr)
            return 0
        for row in allowed_images(store):
            size_bytes = row["size_bytes"]
            size = f"{size_bytes / 1e6:.0f} MB" if isinstance(size_bytes, int) else "-"
            present = "present" if row["present"] else "MISSING"
            print(
                f"{row['image']}\t{present}\t{size}\t{row['profile'] or '-'}\t{row['allowed_by']}"
            )
        return 0
    finally:
        store.close()


def run_workspace(args: argparse.Namespace, data: Path) -> int:
    if args.workspace_cmd == "move":
        from sandbox.cluster.move import move_through_api

        return move_through_api(
            args.url, args.name, args.to, force=args.force, wait=not args.no_wait
        )
    store = open_store(data)
    try:
        if args.workspace_cmd == "list":
            for ws in store.workspaces.list():
                print(f"{ws.name}\t{_owner_text(store, ws)}\t{ws.image or '-'}\t{ws.network}")
            return 0
        if args.workspace_cmd == "show":
            found = store.workspaces.find(args.name)
            if found is None:
                raise BashfleetError(f"no workspace {args.name!r}")
            shown = _shown(store, found)
            if args.json:
                print(json.dumps(shown, indent=2))
            else:
                for key, value in shown.items():
                    print(f"{key}: {json.dumps(value) if not isinstance(value, str) else value}")
            return 0
        if args.workspace_cmd == "set":
            return _set(store, args)
        raise BashfleetError("say `bashfleet workspace list|show NAME|set NAME ...`")
    finally:
        store.close()


def _set(store: Store, args: argparse.Namespace) -> int:
    from sandbox.workspace_settings import SecretBox, audit_detail, check_settings

    ws = store.workspaces.find(args.name)
    body: dict[str, Any] = {}
    if args.image is not None:
        body["image"] = args.image
    if args.network:
        body["network"] = args.network
    if args.env or args.unset_env:
        env = dict(ws.env) if ws else {}
        env.update(_pairs(args.env, "--env"))
        for name in args.unset_env:
            env.pop(name, None)
        body["env"] = env
    secrets: dict[str, str | None] = {}
    for name in args.secret:
        if "=" in name:
            raise BashfleetError(
                f"--secret takes a NAME only ({name.split('=')[0]}): the value is read from "
                "stdin or --secret-file, never from the command line"
            )
        secrets[name] = _read_secret(name)
    for name, path in _pairs(args.secret_file, "--secret-file").items():
        try:
            secrets[name] = Path(path).read_text().rstrip("\n")
        except OSError as e:
            raise BashfleetError(f"cannot read {path}: {e.strerror}") from e
    secrets.update(dict.fromkeys(args.delete_secret))
    if secrets:
        body["secrets"] = secrets
    if args.limit:
        limits = {k: dict(v) for k, v in ws.limits.items()} if ws else {}
        for key, raw in _pairs(args.limit, "--limit").items():
            cls, _, field = key.partition(".")
            try:
                value: float = int(raw) if raw.isdigit() else float(raw)
            except ValueError:
                raise InputError(f"--limit {key}: {raw!r} is not a number") from None
            limits.setdefault(cls, {})[field] = value
        body["limits"] = limits
    if args.owner:
        kind, _, name = args.owner.partition(":")
        if args.owner == "none":
            body["owner"] = {}
        elif kind in ("user", "team") and name:
            body["owner"] = {kind: name}
        else:
            raise InputError("--owner is user:NAME, team:NAME or none")
    values, secret_changes = check_settings(store, ws, body)
    if ws is None:
        ws = store.workspaces.get_or_create(args.name)
    box = SecretBox.for_data(store.workspaces.root.parent)
    sealed = {
        k: box.seal(ws.id, k, v) if v is not None else None for k, v in secret_changes.items()
    }
    changed = store.workspaces.change(ws.id, secrets=sealed, **values)
    store.audit.append(
        "workspace_changed",
        actor="cli",
        target=changed.name,
        detail=audit_detail(values, secret_changes),
    )
    print(f"workspace {changed.name} changed", file=sys.stderr)
    return 0


def _read_secret(name: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"value of {name}: ")
    line = sys.stdin.readline()
    if not line:
        raise BashfleetError(f"--secret {name}: no value on standard input")
    return line.rstrip("\n")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} takes KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def _owner_text(store: Store, ws: Any) -> str:
    if ws.owner_user_id is not None:
        return f"user:{store.accounts.get_user(ws.owner_user_id).name}"
    if ws.owner_team_id is not None:
        return f"team:{store.teams.get(ws.owner_team_id).name}"
    return "shared"


def _shown(store: Store, ws: Any) -> dict[str, Any]:
    return {
        "name": ws.name,
        "image": ws.image or "(default)",
        "network": ws.network,
        "env": dict(ws.env),
        "secrets": store.workspaces.secret_names(ws.id),
        "limits": {k: dict(v) for k, v in ws.limits.items()},
        "owner": _owner_text(store, ws),
    }


def run_team(args: argparse.Namespace, data: Path) -> int:
    from sandbox.store.workspaces import check_workspace_name

    store = open_store(data)
    try:
        if args.team_cmd == "list":
            for t in store.teams.list():
                quota = f"max_commands={t.max_commands or '-'} max_bytes={t.max_bytes or '-'}"
                print(f"{t.name}\t{','.join(t.members) or '-'}\t{quota}")
            return 0
        if args.team_cmd == "add":
            check_workspace_name(args.name)
            if args.max_commands < 0 or args.max_bytes < 0:
                raise InputError("quotas are 0 (none) or more")
            if store.teams.find(args.name) is not None:
                raise BashfleetError(f"team {args.name!r} exists already")
            store.teams.create(
                args.name, max_commands=args.max_commands or None, max_bytes=args.max_bytes or None
            )
            store.audit.append("team_created", actor="cli", target=args.name)
            return 0
        if args.team_cmd == "member":
            team = store.teams.find(args.name)
            user = store.accounts.find_user(args.user)
            if team is None or user is None:
                raise BashfleetError(f"no team {args.name!r} or no user {args.user!r}")
            if args.remove:
                store.teams.remove_member(team.id, user.id)
            else:
                store.teams.add_member(team.id, user.id)
            action = "team_member_removed" if args.remove else "team_member_added"
            store.audit.append(action, actor="cli", target=team.name, detail={"user": user.name})
            return 0
        raise BashfleetError("say `bashfleet team list|add NAME|member NAME USER [--remove]`")
    finally:
        store.close()
