"""Settings from an optional TOML file, below environment variables and flags.

Precedence: command-line flags > environment variables > the TOML file >
defaults. The file is ``--config FILE``, ``$BASHFLEET_CONFIG``, or
``DATA/bashfleet.toml`` when it exists. Each key maps to one environment
variable (the README's configuration table); unknown keys are an error, so a
typo does not go unnoticed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import MutableMapping
from pathlib import Path

from sandbox.errors import BashfleetError

KEYS = {
    "data": "BASHFLEET_DATA",
    "database_url": "BASHFLEET_DATABASE_URL",
    "isolation": "BASHFLEET_ISOLATION",
    "image": "BASHFLEET_IMAGE",
    "submit_rate": "BASHFLEET_SUBMIT_RATE",
    "login_rate": "BASHFLEET_LOGIN_RATE",
    "secret_key": "BASHFLEET_SECRET_KEY",
    "admin_password": "BASHFLEET_ADMIN_PASSWORD",
    "docker_host": "DOCKER_HOST",
    "rootfs": "BASHFLEET_ROOTFS",
    # the portal's limits (README, "Reliability")
    "threads": "BASHFLEET_THREADS",
    "header_timeout_s": "BASHFLEET_HEADER_TIMEOUT_S",
    "body_timeout_s": "BASHFLEET_BODY_TIMEOUT_S",
    "io_timeout_s": "BASHFLEET_IO_TIMEOUT_S",
    "connections_per_address": "BASHFLEET_CONNECTIONS_PER_ADDRESS",
    "judge_deadline_s": "BASHFLEET_JUDGE_DEADLINE_S",
    "socket_auth_s": "BASHFLEET_SOCKET_AUTH_S",
    "sockets_per_user": "BASHFLEET_SOCKETS_PER_USER",
    "subscriptions_per_socket": "BASHFLEET_SUBSCRIPTIONS_PER_SOCKET",
    "socket_queue_kb": "BASHFLEET_SOCKET_QUEUE_KB",
    "auth_fail_rate": "BASHFLEET_AUTH_FAIL_RATE",
    "schedules_per_user": "BASHFLEET_SCHEDULES_PER_USER",
    "schedule_min_interval_s": "BASHFLEET_SCHEDULE_MIN_INTERVAL_S",
    "secure_cookies": "BASHFLEET_SECURE_COOKIES",
    "proxy_hops": "BASHFLEET_PROXY_HOPS",
    # the most a workspace may ask for, per command (README, "Workspaces")
    "max_cpus": "BASHFLEET_MAX_CPUS",
    "max_memory_mb": "BASHFLEET_MAX_MEMORY_MB",
    "max_pids": "BASHFLEET_MAX_PIDS",
    "max_disk_mb": "BASHFLEET_MAX_DISK_MB",
    "max_timeout_s": "BASHFLEET_MAX_TIMEOUT_S",
    # files, artifacts, retention (README, "Files in and out", "Retention")
    "upload_max_bytes": "BASHFLEET_UPLOAD_MAX_BYTES",
    "upload_extracted_bytes": "BASHFLEET_UPLOAD_EXTRACTED_BYTES",
    "upload_entries": "BASHFLEET_UPLOAD_ENTRIES",
    "download_max_bytes": "BASHFLEET_DOWNLOAD_MAX_BYTES",
    "artifact_max_bytes": "BASHFLEET_ARTIFACT_MAX_BYTES",
    "retention_days": "BASHFLEET_RETENTION_DAYS",
    "workspace_budget_bytes": "BASHFLEET_WORKSPACE_BUDGET_BYTES",
    "retention_every_s": "BASHFLEET_RETENTION_EVERY_S",
    "mcp_wait_s": "BASHFLEET_MCP_WAIT_S",
    "mcp_calls_per_user": "BASHFLEET_MCP_CALLS_PER_USER",
    # approvals and webhooks (README, "Approvals", "Webhooks")
    "approval_ttl_s": "BASHFLEET_APPROVAL_TTL_S",
    "webhook_allow_private": "BASHFLEET_WEBHOOK_ALLOW_PRIVATE",
    "webhook_backoff_s": "BASHFLEET_WEBHOOK_BACKOFF_S",
    # scale-out (README, "Scaling out")
    "broker": "BASHFLEET_BROKER",
    "cluster_key": "BASHFLEET_CLUSTER_KEY",
    "cluster_key_file": "BASHFLEET_CLUSTER_KEY_FILE",
    "node_timeout_s": "BASHFLEET_NODE_TIMEOUT_S",
    # e-mail notifications (README, "E-mail notifications")
    "smtp_url": "BASHFLEET_SMTP_URL",
    "smtp_from": "BASHFLEET_SMTP_FROM",
    "public_url": "BASHFLEET_PUBLIC_URL",
}


def load(path: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Read ``path`` and fill in the environment variables that are not set yet."""
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise BashfleetError(f"cannot read the config file {path}: {e.strerror}") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BashfleetError(f"{path} is not valid TOML: {e}") from e
    section = data.get("bashfleet", data)
    if not isinstance(section, dict):
        raise BashfleetError(f"{path}: [bashfleet] must be a table")
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise BashfleetError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}"
        )
    applied: dict[str, str] = {}
    for key, value in section.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise BashfleetError(f"{path}: `{key}` must be a string or a number")
        var = KEYS[key]
        if var not in env:
            env[var] = str(value)
            applied[var] = str(value)
    return applied


def find(explicit: str | None, data_hint: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("BASHFLEET_CONFIG"):
        return Path(os.environ["BASHFLEET_CONFIG"])
    if data_hint:
        candidate = Path(data_hint).expanduser() / "bashfleet.toml"
        if candidate.is_file():
            return candidate
    return None
