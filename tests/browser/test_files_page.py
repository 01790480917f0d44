"""The files page: browse a workspace, upload an archive (progress, refusal shown as
text), download a file; the batch page lists artifacts. Names with markup stay text."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import PageProblems

Api = Callable[..., tuple[int, Any]]
Shot = Callable[[Page, str], Path]


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _wait(api: Api, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _s, b = api("GET", f"/api/v1/batches/{batch_id}")
        if b["status"] not in ("pending", "queued", "running"):
            return dict(b)
        time.sleep(0.1)
    raise AssertionError("the batch did not end")


def test_browse_upload_download_and_artifacts(
    logged_in_page: Page, api: Api, shot: Shot, tmp_path: Path, page_problems: PageProblems
) -> None:
    page = logged_in_page
    status, batch = api(
        "POST",
        "/api/v1/batches",
        {
            "script": "mkdir -p dist && echo built > dist/app.bin && echo x > '<img src=x>.txt'",
            "workspace": "webfiles",
            "artifacts": ["dist/*.bin"],
        },
    )
    assert status == 201, batch
    assert _wait(api, batch["id"])["status"] == "succeeded"
    page.goto("/files")
    expect(page).to_have_url("/workspaces/default/files")
    page.goto("/workspaces/webfiles/files")
    rows = page.locator("#files-body tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("dist/")
    expect(page.locator("#files-body")).to_contain_text("<img src=x>.txt")  # as text
    assert page.locator("#files-body img").count() == 0
    expect(page.locator("#usage")).to_contain_text("Folder")
    # upload an archive into a folder, with progress
    page.locator("#files-body a", has_text="dist/").click()
    expect(page.locator("#crumbs")).to_contain_text("dist")
    archive = tmp_path / "proj.tar.gz"
    archive.write_bytes(_tgz({"a/readme.txt": b"hello from the page\n"}))
    page.set_input_files("#upload-file", str(archive))
    page.click("#upload-go")
    expect(page.locator("#upload-status")).to_contain_text("Uploaded: 1 file(s)")
    expect(page.locator("#files-body")).to_contain_text("a/")
    page.locator("#files-body a", has_text="a/").click()
    with page.expect_download() as download:
        page.locator("#files-body a", has_text="readme.txt").click()
    assert Path(download.value.path()).read_bytes() == b"hello from the page\n"
    # a hostile archive: refused, the message shown as text
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(_tgz({"../../escape": b"x"}))
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-go")
    expect(page.locator("#upload-status")).to_contain_text("nothing was extracted")
    shot(page, "files-page")
    # the batch page links its artifacts and the workspace's files
    page.goto(f"/batches/{batch['id']}")
    link = page.locator("#artifacts-list a")
    expect(link).to_have_text("dist/app.bin")
    with page.expect_download() as art:
        link.click()
    assert Path(art.value.path()).read_bytes() == b"built\n"
    expect(page.locator("#workspace-files")).to_have_attribute("href", "/workspaces/webfiles/files")
    assert page_problems.errors == [] and page_problems.dialogs == []
