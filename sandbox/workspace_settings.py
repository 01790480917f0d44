"""Workspace settings: their validation, the secrets' encryption, and the resolution of a
workspace's stored settings into the ``WorkspaceEnvironment`` a batch runs in.

Secrets are sealed with Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) under a key
kept in the data folder (``DATA/workspace-secrets.key``, mode 0600, made on first use).
A sealed value names its workspace and variable, so a row copied to another workspace or
name does not open. Admin-set maxima for the per-class limits come from the environment
(``BASHFLEET_MAX_*``, see ``Maxima``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandbox.allowed_images import is_allowed
from sandbox.errors import BashfleetError, InputError
from sandbox.model import CommandClass, Limits
from sandbox.store import Store, WorkspaceRecord
from sandbox.workspace_env import Network, WorkspaceEnvironment

KEY_FILE = "workspace-secrets.key"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# What the sandbox sets itself, what changes how bash or the loader behave, and ours.
RESERVED = frozenset(
    {
        "BASHOPTS",
        "BASH_ENV",
        "CDPATH",
        "ENV",
        "EUID",
        "GLOBIGNORE",
        "HOME",
        "HOSTNAME",
        "IFS",
        "LANG",
        "LOGNAME",
        "OLDPWD",
        "PATH",
        "PPID",
        "PROMPT_COMMAND",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PWD",
        "SHELL",
        "SHELLOPTS",
        "TERM",
        "TMPDIR",
        "UID",
        "USER",
    }
)
RESERVED_PREFIXES = ("BASHFLEET_", "LD_", "BASH_")
MAX_VARIABLES = 64  # env and secrets, each
MAX_VALUE_CHARS = 4096  # one env value
MAX_SECRET_CHARS = 16384
MIN_SECRET_CHARS = 4  # shorter ones would blank ordinary text when output is redacted
LIMIT_FIELDS = ("cpus", "memory_bytes", "pids", "disk_bytes", "timeout_s")
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")


class SecretError(BashfleetError):
    """A sealed secret does not open (another key, or a row moved or altered)."""


@dataclass(frozen=True, slots=True)
class Maxima:
    """What an admin allows a workspace to ask for, per command (env ``BASHFLEET_MAX_CPUS``,
    ``BASHFLEET_MAX_MEMORY_MB``, ``BASHFLEET_MAX_PIDS``, ``BASHFLEET_MAX_DISK_MB``,
    ``BASHFLEET_MAX_TIMEOUT_S``)."""

    cpus: float = float(os.cpu_count() or 1)
    memory_bytes: int = 8 << 30
    pids: int = 4096
    disk_bytes: int = 50 << 30
    timeout_s: float = 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Maxima:
        base = cls()

        def number(name: str, default: float, scale: int = 1) -> float:
            raw = env.get(f"BASHFLEET_MAX_{name}", "")
            if not raw:
                return default * scale
            try:
                value = float(raw)
            except ValueError:
                raise BashfleetError(
                    f"BASHFLEET_MAX_{name} must be a number, not {raw!r}"
                ) from None
            if not 0 < value < 1e15:
                raise BashfleetError(f"BASHFLEET_MAX_{name} must be more than 0")
            return value * scale

        return cls(
            cpus=number("CPUS", base.cpus),
            memory_bytes=int(number("MEMORY_MB", base.memory_bytes >> 20, 1 << 20)),
            pids=int(number("PIDS", base.pids)),
            disk_bytes=int(number("DISK_MB", base.disk_bytes >> 20, 1 << 20)),
            timeout_s=number("TIMEOUT_S", base.timeout_s),
        )

    def json(self) -> dict[str, float]:
        return {f: getattr(self, f) for f in LIMIT_FIELDS}


# --- secrets ----------------------------------------------------------------------------


class SecretBox:
    """Seals and opens secret values with the data folder's key."""

    def __init__(self, key: bytes) -> None:
        from cryptography.fernet import Fernet

        self._fernet = Fernet(key)

    @classmethod
    def for_data(cls, data_dir: str | os.PathLike[str]) -> SecretBox:
        return cls(_key(Path(data_dir)))

    def seal(self, workspace_id: int, name: str, value: str) -> str:
        plain = json.dumps([workspace_id, name, value]).encode()
        return self._fernet.encrypt(plain).decode("ascii")

    def open(self, workspace_id: int, name: str, sealed: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            ws, stored_name, value = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError, TypeError) as e:
            raise SecretError(f"secret {name} of workspace {workspace_id} does not open") from e
        if ws != workspace_id or stored_name != name or not isinstance(value, str):
            raise SecretError(f"secret {name} was sealed for another workspace or name")
        return value


def _key(data: Path) -> bytes:
    from cryptography.fernet import Fernet

    data.mkdir(parents=True, exist_ok=True)
    path = data / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


# --- validation (no I/O) ----------------------------------------------------------------


def check_variable_name(name: Any, field: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(
            f"`{field}`: {str(name)[:70]!r} is not a variable name (letters, digits and '_', "
            "not starting with a digit, at most 64)"
        )
    if name in RESERVED or name.startswith(RESERVED_PREFIXES):
        raise InputError(f"`{field}`: {name} is reserved; the sandbox sets it or it changes bash")
    return name


def check_env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InputError('`env` is an object of variables, e.g. {"CI": "1"}')
    if len(value) > MAX_VARIABLES:
        raise InputError(f"`env` holds at most {MAX_VARIABLES} variables")
    out = {}
    for name, v in value.items():
        check_variable_name(name, f"env.{str(name)[:70]}")
        if not isinstance(v, str) or len(v) > MAX_VALUE_CHARS or "\x00" in v:
            raise InputError(
                f"`env.{name}` must be text of at most {MAX_VALUE_CHARS} characters, no NUL"
            )
        out[name] = v
    return out


def check_secrets(value: Any) -> dict[str, str | None]:
    """``{"NAME": "value"}`` sets, ``{"NAME": null}`` deletes."""
    if not isinstance(value, dict):
        raise InputError('`secrets` is an object, e.g. {"TOKEN": "value"} (null deletes one)')
    if len(value) > MAX_VARIABLES:
        raise InputError(f"`secrets` holds at most {MAX_VARIABLES} variables")
    out: dict[str, str | None] = {}
    for name, v in value.items():
        check_variable_name(name, f"secrets.{str(name)[:70]}")
        if v is not None and (
            not isinstance(v, str)
            or not MIN_SECRET_CHARS <= len(v) <= MAX_SECRET_CHARS
            or "\x00" in v
        ):
            raise InputError(
                f"`secrets.{name}` must be text of {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} "
                "characters without NUL, or null to delete it"
            )
        out[name] = v
    return out


def check_network(value: Any) -> str:
    if value not in [n.value for n in Network]:
        raise InputError("`network` is none or egress")
    return str(value)


def check_image_name(value: Any) -> str:
    if not isinstance(value, str) or not IMAGE_NAME.fullmatch(value):
        raise InputError("`image` is an image name such as bashfleet-dev:latest")
    return value


def check_limits(value: Any, maxima: Maxima) -> dict[str, dict[str, float]]:
    """``{"conditional": {"cpus": 2, "memory_bytes": ..., "pids": ..., "disk_bytes": ...,
    "timeout_s": ...}, ...}``: each within the admin's maxima."""
    classes = [c.value for c in CommandClass]
    if not isinstance(value, dict):
        raise InputError(f"`limits` is an object by class ({', '.join(classes)})")
    out: dict[str, dict[str, float]] = {}
    for cls, fields in value.items():
        if cls not in classes:
            raise InputError(f"`limits.{str(cls)[:30]}`: the classes are {', '.join(classes)}")
        if not isinstance(fields, dict):
            raise InputError(f"`limits.{cls}` is an object of {', '.join(LIMIT_FIELDS)}")
        out[cls] = {}
        for name, v in fields.items():
            field = f"limits.{cls}.{str(name)[:30]}"
            if name not in LIMIT_FIELDS:
                raise InputError(f"`{field}`: the limits are {', '.join(LIMIT_FIELDS)}")
            integral = name in ("memory_bytes", "pids", "disk_bytes")
            kinds = int if integral else (int, float)
            high = getattr(maxima, name)
            low = {"memory_bytes": 16 << 20, "pids": 8, "disk_bytes": 1 << 20}.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, kinds) or not low < v <= high:
                raise InputError(
                    f"`{field}` must be a{' whole' if integral else ''} number above {low} and "
                    f"at most {high:g} (the admin's maximum)"
                )
            out[cls][name] = v
    return out


# --- a change as a whole (the API's PUT and `bashfleet workspace set`) ------------------

SETTINGS = frozenset({"image", "network", "env", "secrets", "limits", "owner"})


def check_settings(
    store: Store, ws: WorkspaceRecord | None, body: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The checked columns to set and secrets to change; InputError names the field."""
    values: dict[str, Any] = {}
    if "image" in body:
        image = body["image"]
        if image == "":
            values["image"] = None  # the default image
        else:
            check_image_name(image)
            if not is_allowed(store, image):
                raise InputError(
                    f"`image`: {image} is not allowed; see GET /api/v1/images (an admin allows "
                    "one with POST /api/v1/images or `bashfleet image allow`)"
                )
            values["image"] = image
    if "network" in body:
        values["network"] = check_network(body["network"])
    if "env" in body:
        values["env"] = check_env(body["env"])
    if "limits" in body:
        values["limits"] = check_limits(body["limits"], Maxima.from_env())
    if "owner" in body:
        values.update(_owner(store, body["owner"]))
    secrets = check_secrets(body["secrets"]) if "secrets" in body else {}
    existing = set(store.workspaces.secret_names(ws.id)) if ws else set()
    after = (existing | {k for k, v in secrets.items() if v is not None}) - {
        k for k, v in secrets.items() if v is None
    }
    if len(after) > MAX_VARIABLES:
        raise InputError(f"`secrets`: a workspace holds at most {MAX_VARIABLES}")
    env_names = set(values.get("env", ws.env if ws else {}))
    both = sorted(env_names & after)
    if both:
        raise InputError(f"`secrets.{both[0]}`: {both[0]} is in `env` too; keep it in one")
    return values, secrets


def _owner(store: Store, value: Any) -> dict[str, int | None]:
    if value == {}:
        return {"owner_user_id": None, "owner_team_id": None}  # shared by everyone
    if not isinstance(value, dict) or len(value) != 1 or not set(value) <= {"user", "team"}:
        raise InputError('`owner` is {"user": NAME}, {"team": NAME}, or {} (shared by all)')
    kind, name = next(iter(value.items()))
    if not isinstance(name, str):
        raise InputError(f"`owner.{kind}` is a name")
    if kind == "user":
        found = store.accounts.find_user(name)
        if found is None:
            raise InputError(f"`owner.user`: no user {name[:64]!r}")
        return {"owner_user_id": found.id, "owner_team_id": None}
    team = store.teams.find(name)
    if team is None:
        raise InputError(f"`owner.team`: no team {name[:64]!r}")
    return {"owner_user_id": None, "owner_team_id": team.id}


def audit_detail(values: Mapping[str, Any], secrets: Mapping[str, str | None]) -> dict[str, Any]:
    """What the audit log keeps of a change: variable names, never values."""
    detail: dict[str, Any] = {k: v for k, v in values.items() if k != "env"}
    if "env" in values:
        detail["env"] = sorted(values["env"])  # names: a value may still be sensitive
    detail["secrets_set"] = sorted(k for k, v in secrets.items() if v is not None)
    detail["secrets_deleted"] = sorted(k for k, v in secrets.items() if v is None)
    return detail


# --- resolution -------------------------------------------------------------------------


def environment_for(
    store: Store,
    workspace: WorkspaceRecord,
    key: SecretBox,
    *,
    base: Limits | None = None,
    maxima: Maxima | None = None,
) -> WorkspaceEnvironment:
    """The environment a batch in ``workspace`` runs in: secrets opened, limits clamped to
    the admin's maxima (which may have dropped since they were set)."""
    maxima = maxima or Maxima.from_env()
    base = base or Limits()
    secrets = {
        name: key.open(workspace.id, name, sealed)
        for name, sealed in store.workspaces.sealed_secrets(workspace.id).items()
    }
    limits = {}
    for cls_value, fields in workspace.limits.items():
        try:
            cls = CommandClass(cls_value)
        except ValueError:
            continue
        clamp = {
            name: min(fields[name], getattr(maxima, name))
            for name in ("cpus", "memory_bytes", "pids", "disk_bytes")
            if name in fields
        }
        for name in ("memory_bytes", "pids", "disk_bytes"):
            if name in clamp:
                clamp[name] = int(clamp[name])
        limits[cls] = replace(base, **clamp)
    return WorkspaceEnvironment(
        image=workspace.image,
        network=Network(workspace.network),
        env=dict(workspace.env),
        secrets=secrets,
        limits=limits,
    )


def class_timeouts(workspace: WorkspaceRecord, maxima: Maxima | None = None) -> dict[str, float]:
    """Class value -> the workspace's timeout for it, clamped to the admin's maximum."""
    high = (maxima or Maxima.from_env()).timeout_s
    return {
        cls: min(float(fields["timeout_s"]), high)
        for cls, fields in workspace.limits.items()
        if "timeout_s" in fields
    }
