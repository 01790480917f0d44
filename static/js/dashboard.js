/* bashfleet dashboard: running and recent batches, pools, scaling decisions and live
 * charts (uPlot) fed by the page's Socket.IO `metrics` and `scaling` events.
 * Server text only ever reaches the page as text (BF.el children / textContent). */
(function () {
  "use strict";

  var el = BF.el;
  var POOLS = ["safe", "conditional", "sequential", "dangerous"];
  var WINDOW_S = 300; // rolling chart window
  var BATCH_POLL_MS = 3000;
  var BATCH_MIN_GAP_MS = 2000; // metrics-triggered refreshes at most this often
  var MAX_DECISIONS = 50;

  /* ---- batches ------------------------------------------------------------------------- */

  var ACTIVE = "pending,queued,running";
  var lastLoad = 0;
  var loading = false;

  function shortId(id) {
    return id.length > 10 ? id.slice(-8) : id;
  }

  /* A stacked bar: succeeded, failed-ish, running, waiting; plus "done/total". */
  function progress(b) {
    var counts = b.counts || {};
    var total = b.command_count || 0;
    var groups = { ok: 0, bad: 0, run: 0, other: 0 };
    Object.keys(counts).forEach(function (s) {
      var n = counts[s] || 0;
      if (s === "succeeded") groups.ok += n;
      else if (s === "running") groups.run += n;
      else if (s === "pending" || s === "queued" || s === "awaiting_approval") groups.other += n;
      else groups.bad += n;
    });
    var done = groups.ok + groups.bad;
    var bar = el("span", { class: "ops-progress", "aria-hidden": "true" });
    ["ok", "bad", "run"].forEach(function (k) {
      if (!groups[k] || !total) return;
      var seg = el("span", { class: "ops-seg ops-seg-" + k });
      seg.style.width = ((100 * groups[k]) / total).toFixed(2) + "%";
      bar.appendChild(seg);
    });
    var parts = [done + "/" + total];
    if (groups.bad) parts.push(groups.bad + " not ok");
    if (groups.run) parts.push(groups.run + " running");
    return el("span", { class: "ops-progress-wrap", title: countsTitle(counts) }, bar, el("span", { class: "ops-progress-text" }, parts.join(" · ")));
  }

  function countsTitle(counts) {
    return Object.keys(counts)
      .map(function (s) { return s.replace("_", " ") + ": " + counts[s]; })
      .join(", ");
  }

  function batchRow(b) {
    var href = "/batches/" + encodeURIComponent(b.id);
    var tr = el(
      "tr",
      { class: "ops-rowlink", dataset: { id: b.id, href: href } },
      el("td", null, BF.statusBadge(b.status)),
      el("td", null, el("a", { href: href, class: "mono ops-id", title: b.id }, shortId(b.id)), b.workspace && b.workspace !== "default" ? el("span", { class: "muted small ops-ws" }, " · " + b.workspace) : null),
      el("td", null, el("span", { class: "ops-source src-" + b.source }, b.source)),
      el("td", null, b.user || ""),
      el("td", null, progress(b)),
      el("td", { class: "num muted", title: BF.fmtTime(b.created_at) }, BF.ago(b.created_at))
    );
    return tr;
  }

  function fill(bodyId, emptyId, items) {
    var body = BF.clear(document.getElementById(bodyId));
    items.forEach(function (b) { body.appendChild(batchRow(b)); });
    document.getElementById(emptyId).hidden = items.length > 0;
    body.closest("table").hidden = items.length === 0;
  }

  function loadBatches() {
    if (loading || document.hidden) return;
    loading = true;
    lastLoad = Date.now();
    Promise.all([
      BF.api("GET", "/api/v1/batches?limit=50&status=" + ACTIVE),
      BF.api("GET", "/api/v1/batches?limit=12"),
      BF.api("GET", "/api/v1/approvals"),
    ])
      .then(function (res) {
        showApprovals(res[2].items || []);
        var active = res[0].items || [];
        var activeIds = {};
        active.forEach(function (b) { activeIds[b.id] = true; });
        fill("running-body", "running-empty", active);
        fill("recent-body", "recent-empty", (res[1].items || []).filter(function (b) { return !activeIds[b.id]; }).slice(0, 10));
        document.getElementById("running-count").textContent = String(res[0].total);
        document.getElementById("stat-running").textContent = String(res[0].total);
        document.getElementById("batches-updated").textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (err) {
        if (err && err.status !== 401) BF.showError(err);
      })
      .then(function () { loading = false; });
  }

  /* ---- approvals ------------------------------------------------------------------------- */

  function approvalItem(a) {
    var href = "/batches/" + encodeURIComponent(a.batch_id);
    var li = el("li", { class: "ops-approval", dataset: { commandId: a.command_id } },
      el("div", { class: "row spread" },
        el("a", { href: href, class: "mono" }, "#" + (a.index + 1) + " " + (a.command.length > 60 ? a.command.slice(0, 59) + "…" : a.command)),
        BF.classBadge(a["class"])),
      el("div", { class: "muted small" }, "in " + a.workspace + " by " + (a.user || "?") + (a.two_person ? " · two-person rule" : "") +
        " · expires " + new Date(a.expires_at).toLocaleString()));
    if (a.may_decide) {
      var approve = el("button", { type: "button", class: "btn btn-small btn-primary", "aria-label": "approve #" + (a.index + 1) + " of batch " + shortId(a.batch_id) }, "Approve");
      approve.addEventListener("click", function () {
        approve.disabled = true;
        BF.api("POST", "/api/v1/batches/" + encodeURIComponent(a.batch_id) + "/commands/" + encodeURIComponent(a.command_id) + "/approve").then(
          function () { BF.toast("Approved #" + (a.index + 1), "ok"); li.remove(); loadBatches(); },
          function (err) { approve.disabled = false; BF.showError(err); }
        );
      });
      li.appendChild(el("div", { class: "row" }, approve, el("a", { class: "btn btn-small", href: href }, "Open")));
    }
    return li;
  }

  function showApprovals(items) {
    var list = document.getElementById("approvals-list");
    if (!list) return;
    BF.clear(list);
    items.forEach(function (a) { list.appendChild(approvalItem(a)); });
    document.getElementById("approvals-count").textContent = String(items.length);
    document.getElementById("approvals-empty").hidden = items.length > 0;
  }

  /* Click anywhere on a row (not just the link) opens the batch; keyboard users use the link. */
  function rowClicks(tbodyId) {
    document.getElementById(tbodyId).addEventListener("click", function (ev) {
      if (ev.target.closest("a, button")) return;
      var tr = ev.target.closest("tr[data-href]");
      if (tr && !window.getSelection().toString()) location.assign(tr.dataset.href);
    });
  }

  /* ---- pools ----------------------------------------------------------------------------- */

  function showPools(pools) {
    if (!pools) return;
    POOLS.forEach(function (name) {
      var p = pools[name];
      var node = document.getElementById("pool-" + name);
      if (!p || !node) return;
      var prevLimit = node.dataset.limit;
      node.dataset.limit = String(p.limit);
      node.dataset.running = String(p.running);
      node.dataset.queued = String(p.queued);
      node.querySelector(".ops-pool-running").textContent = String(p.running);
      node.querySelector(".ops-pool-limit").textContent = String(p.limit);
      node.querySelector(".ops-pool-queued").textContent = p.queued + " queued";
      node.classList.toggle("is-busy", p.running > 0);
      node.classList.toggle("is-full", p.running >= p.limit && p.limit > 0);
      node.classList.toggle("has-queue", p.queued > 0);
      var meter = node.querySelector(".ops-meter");
      meter.setAttribute("aria-valuemax", String(p.limit));
      meter.setAttribute("aria-valuenow", String(Math.min(p.running, p.limit)));
      meter.setAttribute("aria-valuetext", p.running + " of " + p.limit + " slots, " + p.queued + " queued");
      var frac = p.limit > 0 ? Math.min(1, p.running / p.limit) : 0;
      node.querySelector(".ops-meter-fill").style.width = (frac * 100).toFixed(1) + "%";
      if (prevLimit && prevLimit !== String(p.limit)) {
        var change = node.querySelector(".ops-pool-change");
        change.textContent = "limit " + prevLimit + " → " + p.limit;
        node.classList.remove("flash");
        void node.offsetWidth; // restart the animation
        node.classList.add("flash");
      }
    });
  }

  /* ---- scaling decisions ------------------------------------------------------------------ */

  var seen = {};

  function decisionKey(d) {
    return d.pool + "@" + d.at + ":" + d.before + ">" + d.after;
  }

  function decisionItem(d) {
    var when = new Date(d.at * 1000);
    var dir = d.after > d.before ? "up" : d.after < d.before ? "down" : "same";
    return el(
      "li",
      { class: "ops-decision dir-" + dir, dataset: { pool: d.pool } },
      el("time", { class: "ops-decision-time mono", datetime: isNaN(when) ? null : when.toISOString(), title: isNaN(when) ? "" : when.toLocaleString() }, isNaN(when) ? "" : when.toLocaleTimeString()),
      el("span", { class: "badge cls-" + d.pool }, d.pool),
      el(
        "span",
        { class: "ops-decision-change mono" },
        String(d.before),
        el("span", { class: "ops-arrow", "aria-label": dir === "up" ? "grew to" : "shrank to" }, dir === "up" ? " ↗ " : " ↘ "),
        String(d.after)
      ),
      el("span", { class: "ops-decision-reason" }, d.reason || "")
    );
  }

  /* Newest first, ordered by the decision's time; `live` ones flash once. */
  function addDecision(d, live) {
    if (!d || typeof d.pool !== "string") return;
    var key = decisionKey(d);
    if (seen[key]) return;
    seen[key] = true;
    var list = document.getElementById("scaling-list");
    var item = decisionItem(d);
    item.dataset.at = String(d.at);
    var before = null;
    for (var i = 0; i < list.children.length; i++) {
      if (+list.children[i].dataset.at <= d.at) {
        before = list.children[i];
        break;
      }
    }
    list.insertBefore(item, before);
    if (live) item.classList.add("is-new");
    while (list.children.length > MAX_DECISIONS) list.removeChild(list.lastChild);
    document.getElementById("scaling-empty").hidden = list.children.length > 0;
  }

  /* ---- stats strip ------------------------------------------------------------------------ */

  function fmtSecs(v) {
    return v === null || v === undefined ? "–" : BF.fmtDuration(v);
  }

  function showStats(m) {
    setText("stat-throughput", m.throughput_per_min !== undefined ? String(Math.round(m.throughput_per_min)) : "–");
    var d = m.duration_s || {};
    setText("stat-p95", fmtSecs(d.p95));
    setText("stat-p50", "p50 " + fmtSecs(d.p50));
    setText("stat-wait", fmtSecs((m.queue_wait_s || {}).p95));
    var by = m.commands_by_status || {};
    var total = 0;
    Object.keys(by).forEach(function (k) { total += by[k]; });
    var bad = total - (by.succeeded || 0) - (by.skipped || 0);
    setText("stat-finished", String(Math.round(total)));
    setText("stat-failed", Math.round(bad) + " not ok · " + Math.round(by.skipped || 0) + " skipped");
    if (m.host) {
      setText("stat-cpu", Math.round(m.host.cpu_percent) + "% CPU");
      setText("stat-mem", "memory " + Math.round(m.host.memory_percent) + "% · " + BF.fmtBytes(m.host.memory_available) + " free");
    }
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  /* ---- charts -------------------------------------------------------------------------------- */

  var charts = [];
  var CHART_H = 170;

  function axisSeconds(u, vals) {
    return vals.map(function (v) {
      if (v === null || v === undefined) return "";
      if (v === 0) return "0";
      return v < 1 ? Math.round(v * 1000) + " ms" : v < 60 ? +v.toFixed(1) + " s" : Math.round(v / 60) + " min";
    });
  }

  function makeChart(id, series, opts) {
    var fig = document.getElementById(id);
    var body = fig.querySelector(".ops-chart-body");
    var data = [[]];
    series.forEach(function () { data.push([]); });
    var chart = {
      fig: fig,
      body: body,
      data: data,
      pick: opts.pick,
      plot: null,
    };
    var uopts = {
      width: Math.max(200, body.clientWidth),
      height: CHART_H,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: series.length > 1 || opts.legend === true },
      scales: { x: { time: true, range: xRange }, y: opts.yRange ? { range: opts.yRange } : { range: function (u, min, max) { return [0, Math.max(opts.yMin || 1, max * 1.15)]; } } },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3", width: 1 }, ticks: { stroke: "#e5e7eb", width: 1 }, font: "11px system-ui, sans-serif", space: 90, values: axisTime },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3", width: 1 }, ticks: { show: false }, size: 52, font: "11px system-ui, sans-serif", values: opts.yValues },
      ],
      series: [{ label: "time", value: function (u, v) { return v === null ? "–" : new Date(v * 1000).toLocaleTimeString(); } }].concat(
        series.map(function (s) {
          return { label: s.label, stroke: s.color, width: 2, fill: s.fill || null, spanGaps: true, points: { show: false }, value: s.value };
        })
      ),
    };
    chart.plot = new uPlot(uopts, data, body);
    charts.push(chart);
    return chart;
  }

  /* At least a minute wide, so a young chart does not stretch one point across */
  function xRange(u, min, max) {
    if (min === null || max === null || !isFinite(min) || !isFinite(max)) {
      var now = Date.now() / 1000;
      return [now - 60, now];
    }
    return max - min < 60 ? [max - 60, max] : [min, max];
  }

  function axisTime(u, vals) {
    return vals.map(function (v) {
      var d = new Date(v * 1000);
      return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    });
  }

  function pctValue(u, v) { return v === null || v === undefined ? "–" : v.toFixed(1) + "%"; }
  function secValue(u, v) { return v === null || v === undefined ? "–" : BF.fmtDuration(v); }

  function buildCharts() {
    if (typeof window.uPlot !== "function") return;
    makeChart("chart-cpu", [{ label: "CPU", color: "#0369a1", fill: "rgba(3,105,161,0.10)", value: pctValue }], {
      yRange: [0, 100],
      yValues: function (u, vals) { return vals.map(function (v) { return v + "%"; }); },
      pick: function (m) { return [m.host ? m.host.cpu_percent : null]; },
    });
    makeChart("chart-mem", [{ label: "Memory", color: "#7c3aed", fill: "rgba(124,58,237,0.10)", value: pctValue }], {
      yRange: [0, 100],
      yValues: function (u, vals) { return vals.map(function (v) { return v + "%"; }); },
      pick: function (m) { return [m.host ? m.host.memory_percent : null]; },
    });
    makeChart("chart-throughput", [{ label: "commands/min", color: "#15803d", fill: "rgba(21,128,61,0.10)" }], {
      yMin: 5,
      pick: function (m) { return [m.throughput_per_min !== undefined ? m.throughput_per_min : null]; },
    });
    makeChart(
      "chart-latency",
      [
        { label: "p50", color: "#15803d", value: secValue },
        { label: "p95", color: "#d97706", value: secValue },
        { label: "p99", color: "#b91c1c", value: secValue },
      ],
      {
        yMin: 0.01,
        yValues: axisSeconds,
        pick: function (m) {
          var d = m.duration_s || {};
          return [num(d.p50), num(d.p95), num(d.p99)];
        },
      }
    );
    if (window.ResizeObserver) {
      var ro = new ResizeObserver(resizeCharts);
      charts.forEach(function (c) { ro.observe(c.body); });
    }
    window.addEventListener("resize", resizeCharts);
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  var resizeQueued = false;
  function resizeCharts() {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(function () {
      resizeQueued = false;
      charts.forEach(function (c) {
        var w = Math.max(200, Math.floor(c.body.clientWidth));
        if (w !== c.plot.width) c.plot.setSize({ width: w, height: CHART_H });
      });
    });
  }

  function addPoint(m, at) {
    charts.forEach(function (c) {
      var values = c.pick(m);
      var xs = c.data[0];
      // the seed point carries the browser's clock, live points the server's: if they
      // disagree, the newer source wins rather than stalling the chart
      while (xs.length && at <= xs[xs.length - 1]) c.data.forEach(function (arr) { arr.pop(); });
      xs.push(at);
      values.forEach(function (v, i) { c.data[i + 1].push(num(v)); });
      var cut = 0;
      while (cut < xs.length && xs[cut] < at - WINDOW_S) cut++;
      if (cut) c.data.forEach(function (arr) { arr.splice(0, cut); });
      c.plot.setData(c.data);
      c.fig.dataset.points = String(xs.length);
    });
  }

  /* ---- nodes (scale-out; the card stays hidden in the embedded mode) ------------------------------ */

  function showNodes(body) {
    var card = document.getElementById("nodes-card");
    var list = document.getElementById("nodes-list");
    if (!card || !list || !body || body.mode !== "cluster") return;
    card.hidden = false;
    list.textContent = "";
    (body.nodes || []).forEach(function (n) {
      var li = document.createElement("li");
      li.className = "ops-pool ops-node node-" + (n.status === "live" ? "live" : "lost");
      li.dataset.node = n.name;
      var head = document.createElement("div");
      head.className = "ops-pool-head";
      var name = document.createElement("span");
      name.className = "badge";
      name.textContent = n.name + (n.status === "live" ? "" : " (lost)");
      var nums = document.createElement("span");
      nums.className = "ops-pool-nums";
      nums.textContent = n.running + " / " + n.slots;
      head.appendChild(name);
      head.appendChild(nums);
      var foot = document.createElement("div");
      foot.className = "ops-pool-foot muted small";
      var free = Math.round((n.free_memory || 0) / (1 << 30) * 10) / 10;
      var spaces = (n.workspaces || []).join(", ") || "no workspaces";
      foot.textContent = free + " GiB free · " + spaces;
      li.appendChild(head);
      li.appendChild(foot);
      list.appendChild(li);
    });
  }

  function loadNodes() {
    if (document.hidden) return;
    BF.api("GET", "/api/v1/nodes").then(showNodes).catch(function () { /* optional */ });
  }

  /* ---- wiring ---------------------------------------------------------------------------------- */

  var lastMetrics = 0;

  /* Without the live connection (proxy without websockets, reconnecting), the pools and
   * numbers still follow the REST metrics at the batch-polling pace. */
  function pollMetricsIfQuiet() {
    if (Date.now() - lastMetrics < 5000 || document.hidden) return;
    BF.api("GET", "/api/v1/metrics")
      .then(function (m) {
        if (Date.now() - lastMetrics < 5000) return;
        showPools(m.pools);
        showStats(m);
        (m.scaling || []).forEach(function (d) { addDecision(d, false); });
      })
      .catch(function () { /* the batch refresh reports errors */ });
  }

  function onMetrics(m) {
    if (!m || typeof m !== "object") return;
    lastMetrics = Date.now();
    showPools(m.pools);
    showStats(m);
    var at = m.host && typeof m.host.at === "number" ? m.host.at : Date.now() / 1000;
    addPoint(m, at);
    if (Date.now() - lastLoad >= BATCH_MIN_GAP_MS) loadBatches();
  }

  function start() {
    rowClicks("running-body");
    rowClicks("recent-body");
    buildCharts();
    loadBatches();
    loadNodes();
    setInterval(function () {
      loadBatches();
      pollMetricsIfQuiet();
      loadNodes();
    }, BATCH_POLL_MS);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) loadBatches(); });

    BF.api("GET", "/api/v1/metrics")
      .then(function (m) {
        showPools(m.pools);
        showStats(m);
        (m.scaling || []).forEach(function (d) { addDecision(d, false); });
        if (!lastMetrics) addPoint(m, Date.now() / 1000 - 1);
      })
      .catch(BF.showError);

    var sock = BF.socket();
    sock.on("metrics", onMetrics);
    sock.on("scaling", function (d) { addDecision(d, true); });
  }

  // exposed for tests and for debugging in the console
  BF.dashboard = { addDecision: addDecision, onMetrics: onMetrics, charts: charts };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
