"""The batch view with a 100,000-line output, in Debian's Chromium (Playwright).

1. Stored: a finished command printed 100,000 lines; open its batch page (a batch
   of one command shows its output at once). Time from navigation to the last line
   being on screen (target under 1 s).
2. Live: the page is open while the command prints 100,000 lines as fast as it can.
   Time from the command's end to the last line on screen, and the longest
   main-thread stall seen meanwhile (a requestAnimationFrame probe): the page must
   stay responsive.
Baseline in the same run: the same 100,000 lines put into one <pre> with
textContent (what a naive page does), timed the same way.

Run: .venv/bin/python benchmarks/bench_render.py   (starts its own server on SQLite)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _util import machine
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.portal import ADMIN_PASSWORD, running_portal

LINES = 100_000
PROBE = """() => { window.__gaps = []; let last = performance.now();
  function tick(t) {
    window.__gaps.push(t - last); last = t; window.__raf = requestAnimationFrame(tick);
  }
  window.__raf = requestAnimationFrame(tick); }"""


def last_line_visible(page: Page, index: int, text: str, timeout_ms: float = 30_000) -> float:
    started = time.perf_counter()
    page.wait_for_function(
        """([i, text]) => { const log = document.querySelector(`.log[data-index="${i}"]`);
             const last = log && log.lastElementChild;  // one element per line
             return !!last && last.textContent === text; }""",
        arg=[index, text],
        timeout=timeout_ms,
        polling="raf",
    )
    return time.perf_counter() - started


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_portal(Path(tmp), extra=["--isolation", "local"]) as portal,
    ):
        token = portal.token("bench", "operator")
        status, stored = portal.request(
            "POST", "/api/v1/batches", {"script": f"seq 1 {LINES}"}, token=token
        )
        assert status == 201, stored
        assert portal.wait_batch(stored["id"], token)["status"] == "succeeded"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-background-networking"],
            )
            context = browser.new_context(base_url=portal.url)
            res = context.request.post(
                "/api/v1/session", data={"name": "admin", "password": ADMIN_PASSWORD}
            )
            assert res.ok, res.text()
            page = context.new_page()

            # 1. stored output (a batch of one command opens its output by itself)
            page.goto("/login")  # warm the cache: the timing is the batch page's own
            page.evaluate(PROBE)
            started = time.perf_counter()
            page.goto(f"/batches/{stored['id']}")
            page.evaluate(PROBE)
            last_line_visible(page, 0, str(LINES))
            stored_s = time.perf_counter() - started
            stored_gap = max(page.evaluate("window.__gaps"))
            lines_in_dom = page.locator('.log[data-index="0"] .ln').count()

            # 2. live output
            status, live = portal.request(
                "POST",
                "/api/v1/batches",
                {"script": f"sleep 2 && seq 1 {LINES}"},
                token=token,
            )
            assert status == 201, live
            page.goto(f"/batches/{live['id']}")
            page.evaluate(PROBE)
            done = portal.wait_batch(live["id"], token)
            ended = time.perf_counter()
            assert done["status"] == "succeeded"
            last_line_visible(page, 0, str(LINES))
            live_s = time.perf_counter() - ended
            live_gap = max(page.evaluate("window.__gaps"))

            # baseline: one <pre>, textContent = everything
            text = "".join(f"{i}\n" for i in range(1, LINES + 1))
            naive = page.evaluate(
                """(text) => new Promise(done => { const t0 = performance.now();
                     const pre = document.createElement('pre'); document.body.appendChild(pre);
                     pre.textContent = text; pre.scrollIntoView({block: 'end'});
                     requestAnimationFrame(() => requestAnimationFrame(
                       () => done((performance.now() - t0) / 1000))); })""",
                text,
            )
            browser.close()
    print(f"machine: {machine()}")
    print(
        f"stored {LINES:,} lines: last window on screen {stored_s * 1000:.0f} ms after "
        f"navigation (target < 1000 ms); longest frame {stored_gap:.0f} ms; {lines_in_dom:,} lines "
        "kept in the page"
    )
    print(
        f"live {LINES:,} lines: last line on screen {live_s * 1000:.0f} ms after the command "
        f"ended; longest frame while streaming {live_gap:.0f} ms"
    )
    print(f"baseline, all {LINES:,} lines in one <pre>: {naive * 1000:.0f} ms to first paint")


if __name__ == "__main__":
    main()
