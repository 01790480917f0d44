/* bashfleet history: every batch, newest first, with search (the API's `q`), status and
 * source filters and "Load more" (the API's `next_cursor`). The filters live in the URL
 * query string (?q=&status=a,b&source=&schedule=) so a filtered view can be shared. */
(function () {
  "use strict";

  var el = BF.el;
  var PAGE = 50;
  var STATUSES = ["running", "pending", "queued", "succeeded", "failed", "timed_out", "cancelled", "interrupted", "refused", "rejected"];
  var SOURCES = ["web", "api", "schedule", "cli"];

  var form, qInput, sourceSelect, body, moreBtn;
  var state = { q: "", status: [], source: "", schedule: "" };
  var cursor = null;
  var shown = 0;
  var seq = 0; // answers to older requests are dropped
  var typing = null;

  /* ---- URL <-> state ------------------------------------------------------------------- */

  function readUrl() {
    var p = new URLSearchParams(location.search);
    state.q = (p.get("q") || "").slice(0, 200);
    state.status = (p.get("status") || "")
      .split(",")
      .filter(function (s) { return STATUSES.indexOf(s) >= 0; });
    state.source = SOURCES.indexOf(p.get("source")) >= 0 ? p.get("source") : "";
    state.schedule = /^\d{1,12}$/.test(p.get("schedule") || "") ? p.get("schedule") : "";
  }

  function urlFor(s) {
    var p = new URLSearchParams();
    if (s.q) p.set("q", s.q);
    if (s.status.length) p.set("status", s.status.join(","));
    if (s.source) p.set("source", s.source);
    if (s.schedule) p.set("schedule", s.schedule);
    var qs = p.toString();
    return location.pathname + (qs ? "?" + qs : "");
  }

  function writeUrl(push) {
    var url = urlFor(state);
    if (url === location.pathname + location.search) return;
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }

  function stateToForm() {
    qInput.value = state.q;
    sourceSelect.value = state.source;
    form.querySelectorAll('input[name="status"]').forEach(function (box) {
      box.checked = state.status.indexOf(box.value) >= 0;
    });
    var sf = document.getElementById("schedule-filter");
    sf.hidden = !state.schedule;
    if (state.schedule) showScheduleFilter(sf);
  }

  function formToState() {
    state.q = qInput.value.trim().slice(0, 200);
    state.source = sourceSelect.value;
    state.status = Array.prototype.map.call(form.querySelectorAll('input[name="status"]:checked'), function (b) { return b.value; });
  }

  function showScheduleFilter(box) {
    var label = el("strong", null, "schedule #" + state.schedule);
    BF.clear(box).appendChild(
      el(
        "span",
        { class: "ops-active-filter" },
        "Only runs of ",
        label,
        el("button", { type: "button", class: "btn btn-small", "aria-label": "Remove the schedule filter", onclick: function () {
          state.schedule = "";
          writeUrl(true);
          stateToForm();
          load(true);
        } }, "×")
      )
    );
    BF.api("GET", "/api/v1/schedules/" + encodeURIComponent(state.schedule))
      .then(function (s) { label.textContent = "“" + s.name + "” (#" + s.id + ")"; })
      .catch(function () { /* deleted schedule: keep the number */ });
  }

  /* ---- rows -------------------------------------------------------------------------------- */

  function progress(b) {
    var counts = b.counts || {};
    var total = b.command_count || 0;
    var g = { ok: 0, bad: 0, run: 0 };
    Object.keys(counts).forEach(function (s) {
      var n = counts[s] || 0;
      if (s === "succeeded") g.ok += n;
      else if (s === "running") g.run += n;
      else if (s !== "pending" && s !== "queued") g.bad += n;
    });
    var bar = el("span", { class: "ops-progress", "aria-hidden": "true" });
    ["ok", "bad", "run"].forEach(function (k) {
      if (!g[k] || !total) return;
      var seg = el("span", { class: "ops-seg ops-seg-" + k });
      seg.style.width = ((100 * g[k]) / total).toFixed(2) + "%";
      bar.appendChild(seg);
    });
    var text = g.ok + g.bad + "/" + total + (g.bad ? " · " + g.bad + " not ok" : "") + (g.run ? " · " + g.run + " running" : "");
    var title = Object.keys(counts).map(function (s) { return s.replace("_", " ") + ": " + counts[s]; }).join(", ");
    return el("span", { class: "ops-progress-wrap", title: title }, bar, el("span", { class: "ops-progress-text" }, text));
  }

  function duration(b) {
    var start = b.started_at ? new Date(b.started_at).getTime() : NaN;
    if (isNaN(start)) return "";
    var end = b.finished_at ? new Date(b.finished_at).getTime() : Date.now();
    return BF.fmtDuration(Math.max(0, (end - start) / 1000)) + (b.finished_at ? "" : " …");
  }

  function row(b) {
    var href = "/batches/" + encodeURIComponent(b.id);
    return el(
      "tr",
      { class: "ops-rowlink", dataset: { id: b.id, href: href, status: b.status } },
      el("td", null, BF.statusBadge(b.status)),
      el("td", null, el("a", { href: href, class: "mono ops-id", title: b.id }, b.id.length > 10 ? b.id.slice(-8) : b.id)),
      el("td", null, el("span", { class: "ops-source src-" + b.source }, b.source), b.schedule_id ? el("a", { class: "ops-cell-sub nowrap", href: "/history?schedule=" + b.schedule_id }, "schedule #" + b.schedule_id) : null),
      el("td", null, b.user || ""),
      el("td", { class: "ops-hide-sm" }, b.workspace || ""),
      el("td", null, progress(b)),
      el("td", { class: "ops-hide-sm nowrap", title: BF.fmtTime(b.created_at) }, BF.ago(b.created_at)),
      el("td", { class: "num nowrap" }, duration(b))
    );
  }

  /* ---- loading ------------------------------------------------------------------------------ */

  function query(next) {
    var p = new URLSearchParams();
    p.set("limit", String(PAGE));
    if (state.q) p.set("q", state.q);
    if (state.status.length) p.set("status", state.status.join(","));
    if (state.source) p.set("source", state.source);
    if (state.schedule) p.set("schedule_id", state.schedule); // honoured once the API filters by schedule
    if (next) p.set("cursor", next);
    return "/api/v1/batches?" + p.toString();
  }

  function load(reset, pagesLeft) {
    var mine = ++seq;
    if (reset) {
      cursor = null;
      shown = 0;
    }
    var table = document.getElementById("history-table");
    table.classList.add("ops-loading");
    moreBtn.disabled = true;
    return BF.api("GET", query(reset ? null : cursor))
      .then(function (page) {
        if (mine !== seq) return;
        if (reset) BF.clear(body);
        var items = page.items || [];
        if (state.schedule) {
          items = items.filter(function (b) { return String(b.schedule_id) === state.schedule; });
        }
        items.forEach(function (b) { body.appendChild(row(b)); });
        shown += items.length;
        cursor = page.next_cursor || null;
        // a client-side schedule filter can leave a page empty: fetch on, a little
        if (state.schedule && cursor && items.length === 0 && (pagesLeft === undefined ? 5 : pagesLeft) > 0) {
          return load(false, (pagesLeft === undefined ? 5 : pagesLeft) - 1);
        }
        summarise(page.total);
      })
      .catch(function (err) {
        if (mine === seq) BF.showError(err);
      })
      .then(function () {
        if (mine !== seq) return;
        table.classList.remove("ops-loading");
        moreBtn.disabled = false;
        moreBtn.hidden = !cursor;
      });
  }

  function summarise(total) {
    var filtered = state.q || state.status.length || state.source || state.schedule;
    document.getElementById("history-empty").hidden = shown > 0;
    document.getElementById("history-table").hidden = shown === 0;
    var count = state.schedule ? shown + (cursor ? "+" : "") : String(total);
    document.getElementById("history-summary").textContent =
      count + (count === "1" ? " batch" : " batches") + (filtered ? " match the filters" : " in total");
    document.getElementById("history-count").textContent = shown ? "Showing " + shown + (state.schedule ? "" : " of " + total) : "";
  }

  /* ---- events --------------------------------------------------------------------------------- */

  function changed(push) {
    formToState();
    writeUrl(push);
    load(true);
  }

  function start() {
    form = document.getElementById("history-filters");
    qInput = document.getElementById("f-q");
    sourceSelect = document.getElementById("f-source");
    body = document.getElementById("history-body");
    moreBtn = document.getElementById("load-more");

    readUrl();
    stateToForm();
    load(true);

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearTimeout(typing);
      changed(true);
    });
    qInput.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () { changed(false); }, 300);
    });
    sourceSelect.addEventListener("change", function () { changed(true); });
    form.querySelectorAll('input[name="status"]').forEach(function (box) {
      box.addEventListener("change", function () { changed(true); });
    });
    document.getElementById("f-clear").addEventListener("click", function () {
      state = { q: "", status: [], source: "", schedule: "" };
      stateToForm();
      writeUrl(true);
      load(true);
      qInput.focus();
    });
    moreBtn.addEventListener("click", function () { load(false); });
    window.addEventListener("popstate", function () {
      readUrl();
      stateToForm();
      load(true);
    });
    body.addEventListener("click", function (ev) {
      if (ev.target.closest("a, button")) return;
      var tr = ev.target.closest("tr[data-href]");
      if (tr && !window.getSelection().toString()) location.assign(tr.dataset.href);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
