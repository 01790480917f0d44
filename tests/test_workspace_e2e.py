"""Issue 13's end-to-end case through a real portal and the real engine: an admin allows
the ``dev`` image; an operator makes workspace ``proj`` with a secret, uploads a small C +
Python project as a tarball, and runs one batch that builds it (``make``), tests it
(``python3 -m unittest``), commits it (``git``) and echoes the secret. Everything succeeds;
the secret is nowhere in stored, streamed or downloaded output (nor anywhere in the data
folder in clear); the built binary downloads byte-identical to one built the same way in a
throwaway container."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from bashfleet.client import Client
from sandbox.image import DEV_IMAGE
from tests.portal import Portal, running_portal
from tests.workspace_project import DEV_SCRIPT, GIT_ENV, project_tarball, reference_binary

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "tok-5f2c9a81-Very-Secret"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    env = {"BASHFLEET_SUBMIT_RATE": "1000"}
    with running_portal(tmp_path_factory.mktemp("e2e"), env=env) as p:
        yield p


def _raw(p: Portal, method: str, path: str, token: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(p.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/gzip")
    with urllib.request.urlopen(req, timeout=120) as r:
        return bytes(r.read())


def _stream(client: Client, batch_id: str, into: list[dict[str, Any]]) -> None:
    for name, payload in client.stream(batch_id):
        if name == "command_output":
            into.append(payload)


def test_a_dev_workspace_builds_tests_commits_and_keeps_its_secret(served: Portal) -> None:
    admin = served.token("root", "admin")
    op = served.token("olga", "operator")
    # the admin allows the dev image (built by `bashfleet image build --profile dev`)
    status, allowed = served.request("POST", "/api/v1/images", {"image": DEV_IMAGE}, token=admin)
    assert status in (200, 201), allowed
    status, images = served.request("GET", "/api/v1/images", token=op)
    assert DEV_IMAGE in json.dumps(images)
    # the operator makes `proj` on it, with plain variables and a secret
    settings = {"image": DEV_IMAGE, "env": GIT_ENV, "secrets": {"SECRET": SECRET}}
    status, ws = served.request("PUT", "/api/v1/workspaces/proj", settings, token=op)
    assert status == 200, ws
    assert ws["image"] == DEV_IMAGE and ws["secrets"] == ["SECRET"]
    assert SECRET not in json.dumps(ws)
    # the project goes in as a tarball
    _raw(served, "PUT", "/api/v1/workspaces/proj/files?path=", op, project_tarball())
    status, tree = served.request("GET", "/api/v1/workspaces/proj/tree?path=", token=op)
    assert status == 200 and {"Makefile", "hello.c"} <= {e["name"] for e in tree["entries"]}

    with Client(served.url, op) as client:
        batch = client.submit(DEV_SCRIPT, workspace="proj")
        streamed: list[dict[str, Any]] = []
        follower = threading.Thread(target=_stream, args=(client, batch["id"], streamed))
        follower.start()
        done = served.wait_batch(batch["id"], op, timeout=300)
        follower.join(60)
    assert not follower.is_alive()
    assert done["status"] == "succeeded", [(c["command"], c["status"]) for c in done["commands"]]
    assert all(c["status"] == "succeeded" for c in done["commands"])

    stored = ""
    for c in done["commands"]:
        status, out = served.request(
            "GET", f"/api/v1/batches/{batch['id']}/commands/{c['id']}/output", token=op
        )
        assert status == 200
        stored += out["stdout"] + out["stderr"]
    assert "hello from C" in stored and "OK" in stored and "Bash Fleet" in stored
    assert "secret=***" in stored
    live = "".join(str(e["data"]) for e in streamed)
    assert "secret=***" in live
    downloaded = b"".join(
        _raw(served, "GET", f"/api/v1/batches/{batch['id']}/commands/{c['id']}/log", op)
        for c in done["commands"]
    )
    assert b"secret=***" in downloaded
    for text in (stored, live, downloaded.decode(errors="replace")):
        assert SECRET not in text
    # nowhere in the data folder in clear: not in output files, the database or the log
    for path in Path(served.data).rglob("*"):
        if path.is_file() and not path.is_symlink() and "workspaces" not in path.parts:
            assert SECRET.encode() not in path.read_bytes(), path

    # the binary, downloaded, equals one built the same way in a throwaway container
    built = _raw(served, "GET", "/api/v1/workspaces/proj/files?path=hello", op)
    assert built == reference_binary(docker.from_env())
    # and the commit is there
    status, tree = served.request("GET", "/api/v1/workspaces/proj/tree?path=", token=op)
    assert ".git" in {e["name"] for e in tree["entries"]}
