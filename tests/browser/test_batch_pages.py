"""The new-batch page (editor, classification, planned graph, submit) and the batch view
(live output, cancel, statuses, timeline, inert output, bounded log window), in Chromium.

Fixtures from tests/browser/conftest.py: ``portal_url`` (a running ``bashfleet serve
--isolation local``), ``logged_in_page`` (a Playwright page signed in as admin), ``api``
(``api(method, path, json=None) -> (status, json)`` with an admin token) and ``shot``
(``shot(page, name)`` saves a screenshot artifact).
"""

from __future__ import annotations

import time
from typing import Any

FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "interrupted", "refused")


def _submit(api: Any, script: str, **extra: Any) -> dict[str, Any]:
    status, batch = api("POST", "/api/v1/batches", {"script": script, **extra})
    assert status == 201, batch
    return batch


def _open_batch(page: Any, portal_url: str, batch_id: str) -> None:
    page.goto(f"{portal_url}/batches/{batch_id}")
    page.wait_for_selector("tr.command")


def _expand(page: Any, index: int) -> Any:
    """Open command ``index``'s output (once) and return its log container."""
    row = page.locator(f"tr.command[data-index='{index}']")
    if row.get_attribute("aria-expanded") != "true":
        row.click()
    log = page.locator(f".log[data-index='{index}']")
    log.wait_for()
    return log


def _row_status(page: Any, index: int) -> Any:
    return page.locator(f"tr.command[data-index='{index}'] [data-status]")


def _wait_batch_final(page: Any, timeout_ms: int = 12_000) -> str:
    handle = page.wait_for_function(
        """final => { const s = document.getElementById('batch-status').dataset.status;
                      return final.includes(s) ? s : false; }""",
        arg=list(FINAL),
        timeout=timeout_ms,
    )
    status: str = handle.json_value()
    return status


def _collect_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on(
        "console",
        lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    return errors


# --- the new-batch page ---------------------------------------------------------------------


def test_editor_classifies_as_you_type_and_draws_the_graph(
    logged_in_page: Any, portal_url: str, shot: Any
) -> None:
    page = logged_in_page
    errors = _collect_errors(page)
    page.goto(f"{portal_url}/batches/new")
    page.click("#script")
    page.keyboard.type("echo a > a.txt\ncat a.txt\nrm -rf build\nls", delay=10)

    rows = page.locator("#statement-rows tr.statement")
    page.wait_for_selector("#statement-rows tr.statement[data-index='3']")
    assert rows.count() == 4
    expected = {0: "sequential", 1: "safe", 2: "dangerous", 3: "safe"}
    for index, cls in expected.items():
        row = page.locator(f"#statement-rows tr.statement[data-index='{index}']")
        assert row.locator(f".badge.cls-{cls}").count() == 1
    # reasons on hover (title) and in the accessible list
    first = page.locator("#statement-rows tr.statement[data-index='0']")
    assert "redirects output into a.txt" in (first.get_attribute("title") or "")
    assert "redirects output into a.txt" in first.inner_text()
    assert "a.txt" in first.inner_text()
    assert "redirects output" in (page.locator("#gutter .gl").first.get_attribute("title") or "")
    # ...and on keyboard focus: the caret's statement is described under the editor
    page.keyboard.press("Control+Home")
    page.wait_for_function(
        "() => document.getElementById('current-statement')"
        ".textContent.includes('redirects output')"
    )

    # the planned graph: a node per statement coloured by class, edges with their reason
    graph = page.locator("svg#graph")
    assert graph.locator("g.node").count() == 4
    assert "k-dangerous" in (graph.locator("g.node[data-index='2']").get_attribute("class") or "")
    edge_titles = graph.locator("g.edge > title").all_text_contents()
    assert any("a.txt" in t for t in edge_titles), edge_titles
    assert graph.locator("g.edge[data-before='0'][data-after='1']").count() == 1

    # typing more reclassifies (debounced)
    page.keyboard.press("Control+End")
    page.keyboard.type("\nmake -C x", delay=10)
    page.wait_for_selector("#statement-rows tr.statement[data-index='4'] .badge.cls-conditional")
    assert graph.locator("g.node").count() == 5
    shot(page, "new-batch-editor")
    assert not errors, errors


def test_a_script_too_large_is_reported_not_sent(logged_in_page: Any, portal_url: str) -> None:
    page = logged_in_page
    page.goto(f"{portal_url}/batches/new")
    page.evaluate(
        """() => {
          const t = document.getElementById('script');
          t.value = 'echo ' + 'x'.repeat(1100000);
          t.dispatchEvent(new Event('input'));
        }"""
    )
    page.wait_for_selector("#classify-status.error")
    assert "at most" in page.inner_text("#classify-status")
    assert page.locator("#editor").get_attribute("data-state") == "error"


def test_submit_navigates_to_the_batch_view(
    logged_in_page: Any, portal_url: str, api: Any, shot: Any
) -> None:
    page = logged_in_page
    page.goto(f"{portal_url}/batches/new")
    page.fill("#priority", "7")
    page.fill("#retries", "1")
    page.select_option("#on-failure", "continue")
    page.fill("#deadline", "120")
    page.click("#script")
    page.keyboard.type("echo hello-from-the-editor", delay=5)
    page.wait_for_selector("#statement-rows tr.statement[data-index='0']")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda url: "/batches/" in url and not url.endswith("/batches/new"))
    batch_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert batch_id != "new"
    status, batch = api("GET", f"/api/v1/batches/{batch_id}")
    assert status == 200
    assert batch["priority"] == 7 and batch["retries"] == 1 and batch["source"] == "web"
    assert batch["on_failure"] == "continue" and batch["deadline_s"] == 120
    assert _wait_batch_final(page) == "succeeded"
    log = _expand(page, 0)
    page.wait_for_function(
        "el => el.textContent.includes('hello-from-the-editor')", arg=log.element_handle()
    )
    shot(page, "batch-after-submit")


def test_the_submit_button_shows_a_refusal(logged_in_page: Any, portal_url: str) -> None:
    page = logged_in_page
    page.goto(f"{portal_url}/batches/new")
    page.fill("#script", "echo hi")
    page.fill("#priority", "11")
    page.click("#submit")
    page.wait_for_selector("#submit-error:not([hidden])")
    assert "Priority" in page.inner_text("#submit-error")
    assert page.url.endswith("/batches/new")


# --- the batch view ---------------------------------------------------------------------------


def test_output_lines_arrive_before_the_batch_ends(
    logged_in_page: Any, portal_url: str, api: Any
) -> None:
    page = logged_in_page
    errors = _collect_errors(page)
    batch = _submit(api, 'for i in $(seq 1 40); do echo "line $i"; sleep 0.1; done')
    _open_batch(page, portal_url, batch["id"])
    log = _expand(page, 0)
    handle = log.element_handle()
    page.wait_for_function("el => el.textContent.includes('line 3')", arg=handle, timeout=8000)
    _s, now = api("GET", f"/api/v1/batches/{batch['id']}")
    assert now["status"] not in FINAL, "the output came only after the batch had ended"
    assert page.locator("#batch-status").get_attribute("data-status") not in FINAL
    assert _wait_batch_final(page) == "succeeded"
    page.wait_for_function("el => el.textContent.includes('line 40')", arg=handle)
    lines = page.locator(".log[data-index='0'] .ln").all_text_contents()
    assert lines == [f"line {i}" for i in range(1, 41)]  # each line exactly once, in order
    assert not errors, errors


def test_cancel_a_running_command(logged_in_page: Any, portal_url: str, api: Any) -> None:
    page = logged_in_page
    batch = _submit(api, "sleep 30\necho other")
    _open_batch(page, portal_url, batch["id"])
    page.wait_for_selector("tr.command[data-index='0'] [data-status='running']", timeout=8000)
    started = time.monotonic()
    page.click("tr.command[data-index='0'] button.cancel-command")
    page.wait_for_selector("tr.command[data-index='0'] [data-status='cancelled']", timeout=10_000)
    assert time.monotonic() - started < 10
    assert _row_status(page, 1).get_attribute("data-status") == "succeeded"
    assert _wait_batch_final(page) in ("cancelled", "failed", "succeeded")
    assert page.locator("tr.command[data-index='0'] button.cancel-command").is_hidden()
    # the store's writer commits status changes just after they are streamed (persist.py)
    deadline = time.monotonic() + 5
    while True:
        _s, after = api("GET", f"/api/v1/batches/{batch['id']}")
        if after["commands"][0]["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after["commands"][0]["status"] == "cancelled"


def test_cancel_the_batch(logged_in_page: Any, portal_url: str, api: Any) -> None:
    page = logged_in_page
    batch = _submit(api, "sleep 30\nsleep 31")
    _open_batch(page, portal_url, batch["id"])
    page.wait_for_selector("tr.command [data-status='running']", timeout=8000)
    page.click("#cancel-batch")
    assert _wait_batch_final(page) == "cancelled"
    assert page.locator("#cancel-batch").is_disabled()


def test_final_statuses_reasons_and_the_timeline(
    logged_in_page: Any, portal_url: str, api: Any, shot: Any
) -> None:
    page = logged_in_page
    batch = _submit(api, "echo a > a.txt\ncat a.txt\nfalse > b.txt\ncat b.txt")
    _open_batch(page, portal_url, batch["id"])
    assert _wait_batch_final(page) == "failed"
    want = {0: "succeeded", 1: "succeeded", 2: "failed", 3: "skipped"}
    for index, status in want.items():
        page.wait_for_selector(f"tr.command[data-index='{index}'] [data-status='{status}']")
    failed = page.locator("tr.command[data-index='2']")
    assert failed.locator("td.exit").inner_text().strip() == "1"
    why = page.locator("tr.command[data-index='3'] td.why").inner_text()
    assert "reads b.txt, which #3 failed to write" in why
    # reasons on hover of the class badge
    badge = page.locator("tr.command[data-index='0'] .badge.cls-sequential")
    assert "redirects output" in (badge.get_attribute("title") or "")
    # the header: counts and makespan
    assert "2 succeeded" in page.inner_text("#batch-counts")
    assert page.inner_text("#batch-makespan").strip() not in ("", "…")

    # the timeline: one bar per command that ran, labelled and titled
    page.wait_for_selector("#timeline g.bar[data-index='1'][data-status='succeeded']")
    page.wait_for_function("() => document.querySelectorAll('#timeline g.bar').length === 3")
    bars = page.locator("#timeline g.bar")
    titles = {
        int(bars.nth(i).get_attribute("data-index")): bars.nth(i).locator("title").text_content()
        for i in range(bars.count())
    }
    assert set(titles) == {0, 1, 2}
    assert "echo a > a.txt" in titles[0] and "cat a.txt" in titles[1]
    page.wait_for_selector("#timeline g.bar[data-index='2'][data-status='failed']")
    assert page.locator("#timeline .lane-label").count() >= 2  # sequential and safe lanes
    assert page.locator("#timeline .axis text").count() >= 2
    # the graph from `needs`, coloured by status
    assert page.locator("svg#graph g.node").count() == 4
    assert page.locator("svg#graph g.edge").count() == 2
    assert page.locator("svg#graph g.node[data-index='3'][data-status='skipped']").count() == 1
    shot(page, "batch-final")


def test_hostile_output_is_inert(logged_in_page: Any, portal_url: str, api: Any, shot: Any) -> None:
    page = logged_in_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))  # conftest dismisses it
    script = (
        "echo '<img src=x onerror=alert(1)><script>alert(2)</script>'\n"
        "printf '\\e]8;;javascript:alert(3)\\e\\\\click\\e]8;;\\e\\\\\\n'\n"
        "printf '\\e[31mred\\e[0m\\n'"
    )
    batch = _submit(api, script)
    _open_batch(page, portal_url, batch["id"])
    assert _wait_batch_final(page) == "succeeded"
    logs = [_expand(page, i) for i in range(3)]
    page.wait_for_function(
        "el => el.textContent.includes('alert(2)')", arg=logs[0].element_handle()
    )
    page.wait_for_function("el => el.textContent.includes('click')", arg=logs[1].element_handle())
    page.wait_for_function("el => el.textContent.includes('red')", arg=logs[2].element_handle())
    page.wait_for_timeout(300)

    assert logs[0].inner_text().strip() == "<img src=x onerror=alert(1)><script>alert(2)</script>"
    assert logs[1].inner_text().strip() == "click"
    assert page.locator(".log img, .log script, .log a, .log iframe").count() == 0
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.locator(".log[data-index='2'] span.ansi-fg-1").inner_text() == "red"
    assert dialogs == []
    shot(page, "hostile-output")


def test_the_log_window_is_bounded(
    logged_in_page: Any, portal_url: str, api: Any, shot: Any
) -> None:
    page = logged_in_page
    batch = _submit(api, "seq 1 20000")
    _open_batch(page, portal_url, batch["id"])
    log = _expand(page, 0)
    page.wait_for_function(
        "el => el.lastElementChild && el.lastElementChild.textContent === '20000'",
        arg=log.element_handle(),
        timeout=10_000,
    )
    count = page.locator(".log[data-index='0'] .ln").count()
    assert 0 < count <= 5000
    assert page.locator(".log[data-index='0'] .ln").first.inner_text() == str(20001 - count)
    note = page.locator(".log-note[data-index='0']")
    assert note.is_visible()
    assert f"{20000 - count} earlier lines hidden" in note.inner_text()
    assert "download the full log" in note.inner_text()
    download = page.locator(".logview[data-index='0'] a", has_text="Download stdout")
    href = download.get_attribute("href") or ""
    assert href.endswith("/log?stream=stdout") and batch["id"] in href
    shot(page, "bounded-window")


def test_the_last_window_of_100000_lines_renders_fast(
    logged_in_page: Any, portal_url: str, api: Any
) -> None:
    page = logged_in_page
    batch = _submit(api, "seq 1 100000")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _s, b = api("GET", f"/api/v1/batches/{batch['id']}")
        if b["status"] in FINAL:
            break
        time.sleep(0.1)
    page.goto(f"{portal_url}/batches/{batch['id']}")  # one command: opened at once
    page.wait_for_function(
        """() => {
          const l = document.querySelector(".log[data-index='0']");
          const last = l && l.lastElementChild;
          if (!last || last.textContent !== '100000') return false;
          window.__rendered = performance.now();
          return true;
        }""",
        timeout=10_000,
        polling=10,
    )
    elapsed_ms = page.evaluate("window.__rendered")  # since navigation started
    assert page.locator(".log[data-index='0'] .ln").count() <= 5000
    assert elapsed_ms < 2000, f"the last window took {elapsed_ms:.0f} ms"


def test_rerun_failed_from_the_batch_page(logged_in_page: Any, portal_url: str, api: Any) -> None:
    page = logged_in_page
    batch = _submit(api, "echo a > a.txt\nfalse > b.txt\ncat b.txt\ncat a.txt")
    _open_batch(page, portal_url, batch["id"])
    assert _wait_batch_final(page) == "failed"
    assert "skip dependents" in page.inner_text("#batch-policy")
    page.wait_for_selector("#rerun-failed:not([disabled])")
    page.click("#rerun-failed")
    page.wait_for_url(lambda url: batch["id"] not in url and "/batches/" in url)
    page.wait_for_selector("tr.command")
    assert f"re-run of {batch['id']}" in page.inner_text("#batch-policy")
    commands = page.locator("tr.command td.cmd .cmd-text").all_inner_texts()
    assert commands == ["false > b.txt", "cat b.txt"]
    status, again = api("GET", f"/api/v1/batches/{page.url.rsplit('/', 1)[-1]}")
    assert status == 200 and again["rerun_of"] == batch["id"]
