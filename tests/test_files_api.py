"""Files in and out, artifacts, usage and the audit export/prune over HTTP, against a
real `bashfleet serve` (local isolation: commands run in the bwrap sandbox)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest

from tests.portal import Portal, running_portal

UPLOAD_CAP = 6 << 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    env = {"BASHFLEET_SUBMIT_RATE": "1000", "BASHFLEET_UPLOAD_MAX_BYTES": str(UPLOAD_CAP)}
    with running_portal(
        tmp_path_factory.mktemp("files"), env=env, extra=["--isolation", "local"]
    ) as p:
        yield p


def http(
    p: Portal,
    method: str,
    path: str,
    token: str,
    body: bytes | None = None,
    content_type: str = "application/octet-stream",
) -> tuple[int, dict[str, str], bytes]:
    conn = HTTPConnection("127.0.0.1", p.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        # the server may answer (413) before reading the whole body: read the answer then
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.headers), r.read()
    finally:
        conn.close()


def run(p: Portal, token: str, script: str, **extra: Any) -> dict[str, Any]:
    status, batch = p.request("POST", "/api/v1/batches", {"script": script, **extra}, token=token)
    assert status == 201, batch
    done = p.wait_batch(batch["id"], token)
    assert done["status"] == "succeeded", done
    return done


def targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_upload_list_and_download_round_trip(served: Portal) -> None:
    op = served.token("fay", "operator")
    run(served, op, "ls", workspace="proj")
    project = {
        "Makefile": b"all:\n\tcc -o hello hello.c\n",
        "hello.c": b'#include <stdio.h>\nint main(void){puts("hi");return 0;}\n',
        "data/big.bin": os.urandom(3 << 20),  # more than the 2 MiB a JSON body may have
        "data/empty": b"",
    }
    archive = targz(project)
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/proj/files?path=src", op, archive)
    assert status == 201, body
    done = json.loads(body)
    assert done["format"] == "tar" and done["files"] == 4 and done["path"] == "src"
    # the batch sees the files
    out = run(served, op, "cat src/hello.c | wc -c", workspace="proj")
    cid = out["commands"][0]["id"]
    _s, o = served.request("GET", f"/api/v1/batches/{out['id']}/commands/{cid}/output", token=op)
    assert o["stdout"].strip() == str(len(project["hello.c"]))
    status, _h, body = http(served, "GET", "/api/v1/workspaces/proj/tree?path=src", op)
    listing = json.loads(body)
    assert status == 200 and [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("data", "dir"),
        ("Makefile", "file"),
        ("hello.c", "file"),
    ]
    status, headers, body = http(
        served, "GET", "/api/v1/workspaces/proj/files?path=src/data/big.bin", op
    )
    assert status == 200 and body == project["data/big.bin"]
    assert headers["Content-Length"] == str(len(body))
    assert "attachment" in headers["Content-Disposition"]
    status, headers, body = http(served, "GET", "/api/v1/workspaces/proj/files?path=src", op)
    assert status == 200 and headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tf:
        got = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]
    assert got == project
    # a zip and a single file, with exact bytes
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z/one.txt", b"one\n")
    status, _h, body = http(
        served, "PUT", "/api/v1/workspaces/proj/files", op, zbuf.getvalue(), "application/zip"
    )
    assert status == 201 and json.loads(body)["format"] == "zip"
    blob = os.urandom(5000)
    status, _h, body = http(
        served, "PUT", "/api/v1/workspaces/proj/files?path=bin&name=blob", op, blob
    )
    assert status == 201 and json.loads(body)["format"] == "file", body
    assert http(served, "GET", "/api/v1/workspaces/proj/files?path=bin/blob", op)[2] == blob
    assert http(served, "GET", "/api/v1/workspaces/proj/files?path=z/one.txt", op)[2] == b"one\n"
    status, _h, body = http(served, "GET", "/api/v1/workspaces/proj/usage", op)
    use = json.loads(body)
    assert status == 200 and use["workspace_bytes"] >= (3 << 20) and use["output_bytes"] > 0


def test_refusals_are_clear_and_leave_nothing(served: Portal) -> None:
    op = served.token("gil", "operator")
    viewer = served.token("vic", "viewer")
    run(served, op, "ls", workspace="refusals")
    leftovers = served.data / "tmp" / "uploads"
    for method, path in (
        ("GET", "/api/v1/workspaces/nope/tree"),
        ("GET", "/api/v1/workspaces/nope/files?path=a"),
        ("GET", "/api/v1/workspaces/nope/usage"),
        ("PUT", "/api/v1/workspaces/nope/files"),
    ):
        status, _h, body = http(served, method, path, op, b"x" if method == "PUT" else None)
        assert status == 404 and json.loads(body)["error"] == "not_found", (path, body)
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/refusals/files?name=a", viewer, b"x")
    assert status == 403
    # another operator, not given the workspace, does not learn that it exists
    other = served.token("ola", "operator")
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/refusals/files?name=a", other, b"x")
    assert status == 404 and json.loads(body)["error"] == "not_found", body
    # over the cap by its Content-Length: 413 before the body is read (a client
    # that kept sending would get a broken pipe; this one waits for the answer)
    conn = HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.putrequest("PUT", "/api/v1/workspaces/refusals/files?name=big")
    conn.putheader("Authorization", f"Bearer {op}")
    conn.putheader("Content-Length", str(UPLOAD_CAP + 1))
    conn.endheaders(b"x" * 1024)
    answer = conn.getresponse()
    assert answer.status == 413 and json.loads(answer.read())["error"] == "too_large"
    conn.close()
    # over it without saying so (chunked): the endpoint stops reading at the cap
    chunks = (os.urandom(1 << 20) for _ in range(UPLOAD_CAP // (1 << 20) + 2))
    req = urllib.request.Request(
        served.url + "/api/v1/workspaces/refusals/files?name=big", data=chunks, method="PUT"
    )
    req.add_header("Authorization", f"Bearer {op}")
    req.add_header("Transfer-Encoding", "chunked")
    outcome = "accepted"
    try:
        with urllib.request.urlopen(req, timeout=60):
            pass
    except urllib.error.HTTPError as e:
        outcome = f"{e.code} {json.loads(e.read())['error']}"
    except urllib.error.URLError:
        outcome = "cut"  # the answer came before the client had sent it all
    assert outcome in ("413 too_large", "cut"), outcome
    assert not (served.data / "workspaces" / "refusals" / "big").exists()
    slip = targz({"../../escape": b"x"})
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/refusals/files", op, slip)
    assert status == 400 and json.loads(body)["error"] == "unsafe_archive"
    assert "nothing was extracted" in json.loads(body)["message"]
    for bad in ("..", "a/../../b", "%00"):
        status, _h, body = http(served, "GET", f"/api/v1/workspaces/refusals/tree?path={bad}", op)
        assert status == 400, (bad, body)
    assert not list(leftovers.iterdir())
    assert not (served.data / "escape").exists() and not (served.data.parent / "escape").exists()
    ws = served.data / "workspaces" / "refusals"
    assert sorted(os.listdir(ws)) == []
    status, audit = served.request(
        "GET", "/api/v1/audit?action=workspace_refused", token=served.token("root", "admin")
    )
    # refusals of a workspace that exists are audited (unknown names are plain 404s)
    assert [row["target"] for row in audit["items"]] == ["refusals"], audit
    # uploading while a batch runs there is refused (409), and allowed again after
    status, batch = served.request(
        "POST", "/api/v1/batches", {"script": "sleep 20", "workspace": "refusals"}, token=op
    )
    assert served.wait_running(batch["id"], op, 1)
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/refusals/files?name=f", op, b"x")
    assert status == 409 and json.loads(body)["error"] == "busy"
    served.request("POST", f"/api/v1/batches/{batch['id']}/cancel", token=op)
    served.wait_batch(batch["id"], op)
    status, _h, body = http(served, "PUT", "/api/v1/workspaces/refusals/files?name=f", op, b"x")
    assert status == 201, body


def test_a_planted_symlink_is_never_followed(served: Portal) -> None:
    op = served.token("hal", "operator")
    outside = served.data.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    ws = served.data / "workspaces" / "planted"
    run(served, op, "ls", workspace="planted")
    # what a command could plant (it sees other paths inside its sandbox; the server sees
    # these): a link to a folder outside, and a link to a file outside
    (ws / "out").symlink_to(outside)
    (ws / "leak").symlink_to(outside / "secret")
    before = sorted(os.listdir(outside))
    for path, archive in (
        ("out", targz({"x": b"pwned"})),
        ("", targz({"out/x": b"pwned"})),
        ("", targz({"leak": b"overwrite"})),
    ):
        status, _h, body = http(
            served, "PUT", f"/api/v1/workspaces/planted/files?path={path}", op, archive
        )
        assert status == 409 and json.loads(body)["error"] == "symlink_in_the_way", body
    assert sorted(os.listdir(outside)) == before
    assert (outside / "secret").read_text() == "host secret\n"
    for path in ("leak", "out/secret"):
        status, _h, body = http(served, "GET", f"/api/v1/workspaces/planted/files?path={path}", op)
        assert status == 409 and b"host secret" not in body, (path, body)
    status, _h, body = http(served, "GET", "/api/v1/workspaces/planted/files?path=", op)
    assert status == 200 and b"host secret" not in gzip_text(body)
    status, _h, body = http(served, "GET", "/api/v1/workspaces/planted/tree", op)
    entries = {e["name"]: e for e in json.loads(body)["entries"]}
    assert entries["out"]["type"] == "link" and entries["out"]["target"] == str(outside)


def gzip_text(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


def test_artifacts_are_kept_when_the_workspace_changes(served: Portal) -> None:
    op = served.token("ida", "operator")
    first = run(
        served,
        op,
        "mkdir -p dist sub/deep && echo v1 > dist/app.whl && echo '<p>r</p>' > report.html"
        " && echo x > sub/deep/notes.txt && ln -sf /etc/passwd dist/evil.whl",
        workspace="arts",
        artifacts=["dist/*.whl", "report.html", "**/notes.txt", "missing/*"],
    )
    assert first["artifacts"] == ["dist/*.whl", "report.html", "**/notes.txt", "missing/*"]
    status, listing = served.request("GET", f"/api/v1/batches/{first['id']}/artifacts", token=op)
    assert status == 200 and listing["collecting"] is False
    items = {a["path"]: a for a in listing["items"]}
    assert sorted(items) == ["dist/app.whl", "report.html", "sub/deep/notes.txt"]  # no link
    assert items["dist/app.whl"]["sha256"] == hashlib.sha256(b"v1\n").hexdigest()
    run(served, op, "echo v2 > dist/app.whl && rm report.html", workspace="arts")
    status, headers, body = http(
        served, "GET", f"/api/v1/batches/{first['id']}/artifacts/dist/app.whl", op
    )
    assert status == 200 and body == b"v1\n"
    assert headers["X-Checksum-Sha256"] == items["dist/app.whl"]["sha256"]
    assert http(served, "GET", f"/api/v1/batches/{first['id']}/artifacts/report.html", op)[0] == 200
    base = f"/api/v1/batches/{first['id']}/artifacts"
    for missing in ("dist/evil.whl", "../../etc/passwd", "nothing"):
        assert http(served, "GET", f"{base}/{missing}", op)[0] == 404, missing
    for bad in (["../x"], "dist/*", ["/abs"], ["a"] * 21, [5]):
        status, body_ = served.request(
            "POST", "/api/v1/batches", {"script": "ls", "artifacts": bad}, token=op
        )
        assert status == 400 and "artifacts" in body_["message"], (bad, body_)


def test_audit_export_and_prune(served: Portal) -> None:
    admin = served.token("ada", "admin")
    op = served.token("joe", "operator")
    status, headers, body = http(served, "GET", "/api/v1/audit?format=csv", admin)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["id", "at", "actor", "user_id", "address", "action", "target", "detail"]
    assert len(rows) > 2 and any(r[5] == "token_created" for r in rows[1:])
    assert http(served, "GET", "/api/v1/audit?format=csv", op)[0] == 403
    assert http(served, "GET", "/api/v1/audit?format=xml", admin)[0] == 400
    for bad in ("", "yesterday", "2999-01-01"):
        status, _h, body = http(served, "DELETE", f"/api/v1/audit?before={bad}", admin)
        assert status == 400, (bad, body)
    assert http(served, "DELETE", "/api/v1/audit?before=2000-01-01", op)[0] == 403
    total = served.request("GET", "/api/v1/audit?limit=1", token=admin)[1]["total"]
    time.sleep(0.05)
    cut = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 0.0))
    time.sleep(1.1)
    status, _h, body = http(served, "DELETE", f"/api/v1/audit?before={cut}", admin)
    pruned = json.loads(body)
    assert status == 200 and pruned["deleted"] >= 1, body
    left = served.request("GET", "/api/v1/audit?limit=500", token=admin)[1]
    assert left["total"] < total + 5
    assert any(e["action"] == "audit_pruned" for e in left["items"])
    assert all(e["at"] >= cut for e in left["items"])
    with sqlite3.connect(served.data / "bashfleet.db") as db:  # still append-only otherwise
        for sql in ("DELETE FROM audit_events", "UPDATE audit_events SET actor = 'x'"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)
