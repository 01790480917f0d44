"""`bashfleet workspace`, `bashfleet team` and `bashfleet image allow|list` on a data
folder: secrets come from stdin or a file (never argv), are shown by name only, and
audited without values; a refused change stores nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.portal import BASHFLEET


def bf(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASHFLEET, "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_workspace_set_show_list_with_secrets_from_stdin_and_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secret_file = tmp_path / "deploy.key"
    secret_file.write_text("file-secret-9876\n")
    done = bf(
        data,
        "workspace",
        "set",
        "proj",
        "--network",
        "egress",
        "--env",
        "CI=1",
        "--secret",
        "API_TOKEN",
        "--secret-file",
        f"DEPLOY_KEY={secret_file}",
        "--limit",
        "conditional.cpus=1.5",
        "--limit",
        "dangerous.timeout_s=60",
        stdin="stdin-secret-1234\n",
    )
    assert done.returncode == 0, done.stderr
    shown = bf(data, "workspace", "show", "proj", "--json")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["network"] == "egress" and settings["env"] == {"CI": "1"}
    assert settings["secrets"] == ["API_TOKEN", "DEPLOY_KEY"]
    assert settings["limits"] == {"conditional": {"cpus": 1.5}, "dangerous": {"timeout_s": 60}}
    assert settings["owner"] == "shared"
    for text in (shown.stdout, bf(data, "workspace", "show", "proj").stdout):
        assert "stdin-secret-1234" not in text and "file-secret-9876" not in text
    assert bf(data, "workspace", "list").stdout.split() == ["proj", "shared", "-", "egress"]
    raw = (data / "bashfleet.db").read_bytes()
    assert b"stdin-secret-1234" not in raw and b"file-secret-9876" not in raw
    with sqlite3.connect(data / "bashfleet.db") as db:
        (detail,) = db.execute(
            "select detail from audit_events where action = 'workspace_changed'"
        ).fetchone()
    assert json.loads(detail)["secrets_set"] == ["API_TOKEN", "DEPLOY_KEY"]
    assert "secret-1234" not in detail and "9876" not in detail
    # delete one, unset a variable
    done = bf(data, "workspace", "set", "proj", "--delete-secret", "API_TOKEN", "--unset-env", "CI")
    assert done.returncode == 0, done.stderr
    settings = json.loads(bf(data, "workspace", "show", "proj", "--json").stdout)
    assert settings["secrets"] == ["DEPLOY_KEY"] and settings["env"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--secret", "TOKEN=plain-on-argv"], "never from the command line"),
        (["--env", "PATH=/tmp"], "env.PATH"),
        (["--network", "egress", "--limit", "safe.cpus=100000"], "limits.safe.cpus"),
        (["--image", "not-allowed:1"], "not allowed"),
        (["--owner", "team:nobody"], "owner.team"),
        (["--owner", "someone"], "--owner"),
    ],
)
def test_refused_changes_store_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    data = tmp_path / "data"
    assert bf(data, "workspace", "set", "w", "--env", "A=1").returncode == 0
    before = bf(data, "workspace", "show", "w", "--json").stdout
    done = bf(data, "workspace", "set", "w", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert bf(data, "workspace", "show", "w", "--json").stdout == before


def test_teams_and_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert bf(data, "user", "add", "alice", "--role", "operator").returncode == 0
    assert bf(data, "team", "add", "core", "--max-commands", "3").returncode == 0
    assert bf(data, "team", "member", "core", "alice").returncode == 0
    assert bf(data, "team", "list").stdout.split()[:2] == ["core", "alice"]
    assert bf(data, "workspace", "set", "w", "--owner", "team:core").returncode == 0
    assert "team:core" in bf(data, "workspace", "list").stdout
    refused = bf(data, "image", "allow", "surely-not-here:0")
    assert refused.returncode == 2 and "not in the local Docker engine" in refused.stderr
    listed = bf(data, "image", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in listed.stdout.splitlines() if r.startswith("bashfleet-sandbox:latest"))
    assert row.split("\t")[1] == "present" and row.split("\t")[3] == "base"
    # `image build` is still there
    assert "--tag" in bf(data, "image", "build", "--help").stdout
