/* The batch view: header, commands table, live output per command, timeline and graph.
 *
 * Order of events: we subscribe (BF.followBatch) first, so output starts streaming at
 * once, and fetch GET /api/v1/batches/ID meanwhile. Live statuses that arrive before the
 * batch are kept and applied over it; a status only replaces what we show when it is at
 * least as new (its `at` against the record's latest timestamp). Every DOM change waits
 * for the next animation frame (BF.frame), whatever the rate of events.
 */
(function () {
  "use strict";
  var BF = window.BF;
  var batchId = document.body.dataset.batchId;
  var ACTIVE = { pending: 1, queued: 1, running: 1, awaiting_approval: 1 };
  var CANCELLABLE = ACTIVE;
  var AUTO_EXPAND = 3; // batches this small show every output at once
  var MAX_LINES = 5000; // the window of an open command's output
  var BIG_BATCH = 200; // more commands than this: collapsed ones keep a smaller window...
  var COLLAPSED_LINES = 1000; // ...so thousands of outputs cannot eat the tab's memory

  var $ = function (id) { return document.getElementById(id); };
  var tableEl = $("commands");
  var CHUNK = 50; // rows per <tbody>: the unit the browser may skip when it is off screen
  var statusEl = $("batch-status");
  var countsEl = $("batch-counts");
  var cancelBatchBtn = $("cancel-batch");
  var rerunAllBtn = $("rerun-all");
  var rerunFailedBtn = $("rerun-failed");
  var RERUN_FAILED = ["failed", "timed_out", "interrupted", "skipped"];
  var errorEl = $("batch-error");
  var operator = BF.can("operator");

  var batch = null; // the record from GET, kept current
  var batchFinal = null; // {status, counts, makespan_s} once the batch has ended
  var cmds = []; // by index
  var byId = {};
  var early = {}; // command id -> newest live status seen before the batch arrived
  var logs = {}; // command id -> BF.LogView
  var dirtyRows = new Set();
  var headDirty = false;
  var timelineDirty = false;
  var lastTimeline = 0;
  var timelineTimer = null;
  var gantt = null;
  var graph = null;

  function ms(iso) {
    if (!iso) return null;
    var t = Date.parse(iso);
    return isNaN(t) ? null : t;
  }

  /* ---- live ------------------------------------------------------------------------------- */

  function logFor(cid, index) {
    var v = logs[cid];
    if (!v) {
      var base = "/api/v1/batches/" + encodeURIComponent(batchId) + "/commands/" + encodeURIComponent(cid) + "/log?stream=";
      v = logs[cid] = new BF.LogView({ index: index, maxLines: collapsedMax(), stdoutUrl: base + "stdout", stderrUrl: base + "stderr" });
    }
    if (index !== undefined && index !== null) v.setIndex(index);
    return v;
  }

  function collapsedMax() {
    return cmds.length > BIG_BATCH ? COLLAPSED_LINES : MAX_LINES;
  }

  var follower = BF.followBatch(batchId, {
    output: function (msg) {
      logFor(msg.command_id, msg.index).write(msg.stream, msg.data);
      var c = byId[msg.command_id];
      if (c) {
        c[msg.stream + "_bytes"] = Math.max(c[msg.stream + "_bytes"] || 0, msg.offset + msg.nbytes);
        if (c.expanded) markRow(c);
      }
    },
    gap: function (cid, stream, from, to) {
      var c = byId[cid];
      fillGap(logFor(cid, c ? c.index : undefined), cid, stream, from, to);
    },
    status: function (p) {
      var c = byId[p.command_id];
      if (!c) {
        early[p.command_id] = p;
        return;
      }
      applyStatus(c, p);
    },
    batch: function (p) {
      batchFinal = p;
      if (batch) batch.status = p.status;
      headDirty = true;
      schedule();
      setTimeout(refresh, 400); // exact start/finish times from the store
    },
    ready: function (ack) {
      if (BF.isFinal(ack.status) && !batchFinal) {
        batchFinal = { status: ack.status };
        headDirty = true;
        schedule();
      }
    },
    error: function (err) {
      if (err.error === "not_found") showError("There is no batch " + batchId + ".");
      else BF.showError(err);
    },
  });
  window.addEventListener("pagehide", function () { follower.stop(); });

  /* Bytes the stream skipped: older than the server's backlog, or (a race on subscribe)
   * sent before the backlog and so never shown. A gap of up to MAX_FILL bytes is fetched
   * from the REST API while the stream's newer chunks wait; a bigger one is only noted. */
  var MAX_FILL = 2 << 20;
  function fillGap(log, cid, stream, from, to) {
    if (to - from > MAX_FILL || log.holding(stream)) {
      log.gap(stream, from, to);
      return;
    }
    log.hold(stream);
    var path = "/api/v1/batches/" + encodeURIComponent(batchId) + "/commands/" + encodeURIComponent(cid) +
      "/output?offset=" + from + "&limit=" + (to - from);
    BF.api("GET", path).then(
      function (out) {
        var text = out && typeof out[stream] === "string" ? out[stream] : null;
        var got = out ? out[stream + "_next_offset"] : null;
        if (text !== null && got === to) log.release(stream, text);
        else log.release(stream, null, from, to);
      },
      function () { log.release(stream, null, from, to); }
    );
  }

  function applyStatus(c, p) {
    var at = p.at * 1000;
    if (at < c._at) return; // what we show is newer
    c._at = at;
    var was = c.status;
    c.status = p.status;
    c.reason = p.reason || null;
    if (p.executor) c.executor = p.executor;
    if (p["class"]) c["class"] = p["class"];
    if (p.exit_code !== undefined) c.exit_code = p.exit_code;
    if (p.signal !== undefined) c.signal = p.signal;
    if (p.truncated) c.truncated = true;
    c.attempt = p.attempt;
    if (p.status === "pending" || p.status === "queued") {
      if (p.reason) c.waited = p.reason;
      if (p.status === "queued") c.start = c.end = null;
    } else if (p.status === "running") {
      if (was !== "running" || !c.start) c.start = at;
      c.end = null;
      c.duration_s = null;
    } else if (BF.isFinal(p.status)) {
      c.end = at;
      c.duration_s = p.duration_s;
      if (!c.start && p.duration_s) c.start = at - p.duration_s * 1000;
    }
    markRow(c);
    headDirty = true;
    timelineDirty = true;
    schedule();
  }

  /* ---- the batch record --------------------------------------------------------------------- */

  function normalize(c) {
    c.start = ms(c.started_at);
    c.end = ms(c.finished_at);
    c._at = Math.max(ms(c.queued_at) || 0, c.start || 0, c.end || 0);
    return c;
  }

  function load() {
    BF.api("GET", "/api/v1/batches/" + encodeURIComponent(batchId)).then(
      function (b) {
        batch = b;
        cmds = b.commands.map(normalize).sort(function (x, y) { return x.index - y.index; });
        byId = {};
        cmds.forEach(function (c) {
          byId[c.id] = c;
          if (logs[c.id]) {
            logs[c.id].setIndex(c.index);
            logs[c.id].setMax(collapsedMax());
          }
        });
        if (BF.isFinal(b.status) && !batchFinal) batchFinal = { status: b.status, counts: b.counts };
        buildRows();
        buildGraph();
        Object.keys(early).forEach(function (cid) {
          if (byId[cid]) applyStatus(byId[cid], early[cid]);
        });
        early = {};
        headDirty = timelineDirty = true;
        schedule();
        var hash = /^#cmd-(\d+)$/.exec(location.hash);
        if (hash && cmds[Number(hash[1]) - 1]) {
          var c = cmds[Number(hash[1]) - 1];
          expand(c, true);
          c.row.tr.scrollIntoView({ block: "center" });
        } else if (cmds.length <= AUTO_EXPAND) {
          cmds.forEach(function (c) { expand(c, true); });
        }
      },
      function (err) {
        if (err.status === 404) showError("There is no batch " + batchId + ".");
        else showError("Cannot load the batch: " + err.message);
      }
    );
  }

  /* after the batch ends: take the store's exact times (a final record is final) */
  function refresh() {
    BF.api("GET", "/api/v1/batches/" + encodeURIComponent(batchId)).then(function (b) {
      if (!batch || !BF.isFinal(batch.status) || BF.isFinal(b.status)) batch = b;
      if (BF.isFinal(b.status)) batchFinal = Object.assign({}, batchFinal, { status: b.status, counts: b.counts });
      b.commands.forEach(function (fresh) {
        var c = byId[fresh.id];
        if (!c) return;
        normalize(fresh);
        if (BF.isFinal(fresh.status) || fresh._at >= c._at) {
          ["status", "reason", "executor", "exit_code", "signal", "duration_s", "truncated", "stdout_bytes", "stderr_bytes", "start", "end", "_at", "approval", "approval_by"].forEach(function (k) {
            if (fresh[k] !== null && fresh[k] !== undefined) c[k] = fresh[k];
          });
          if (!fresh.reason && BF.isFinal(fresh.status)) c.reason = null;
          markRow(c);
        }
      });
      headDirty = timelineDirty = true;
      schedule();
    }, function () {});
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
    statusEl.textContent = "unknown";
    statusEl.dataset.status = "";
  }

  /* ---- rendering (only from the animation frame) -------------------------------------------- */

  function markRow(c) {
    dirtyRows.add(c);
    schedule();
  }

  function schedule() {
    BF.frame(render);
  }

  function render() {
    dirtyRows.forEach(updateRow);
    dirtyRows.clear();
    if (headDirty) {
      headDirty = false;
      renderHead();
    }
    var now = Date.now();
    if (timelineDirty && gantt && now - lastTimeline >= Math.max(200, cmds.length / 5)) {
      timelineDirty = false;
      lastTimeline = now;
      gantt.update(cmds.map(barOf), now);
    } else if (timelineDirty && !timelineTimer) {
      timelineTimer = setTimeout(function () {
        timelineTimer = null;
        schedule();
      }, 250);
    }
    if (graph) {
      cmds.forEach(function (c) {
        if (c._gStatus !== c.status) {
          c._gStatus = c.status;
          graph.setStatus(c.index, c.status);
        }
      });
    }
  }

  function barOf(c) {
    return { index: c.index, command: c.command, cls: c["class"], executor: c.executor, status: c.status, start: c.start, end: c.end, duration_s: c.duration_s };
  }

  function batchStatus() {
    if (batchFinal) return batchFinal.status;
    if (!batch) return "";
    var any = { running: 0, queued: 0, pending: 0, done: 0 };
    cmds.forEach(function (c) {
      if (ACTIVE[c.status]) any[c.status === "awaiting_approval" ? "pending" : c.status]++;
      else any.done++;
    });
    if (any.running || (any.done && (any.pending || any.queued))) return "running";
    if (any.queued) return "queued";
    if (any.pending) return "pending";
    // a final status never goes back: the database may answer a moment behind the stream
    if (BF.isFinal(batch.status)) batchFinal = { status: batch.status, counts: batch.counts };
    return batch.status;
  }

  function renderHead() {
    var st = batchStatus();
    if (st) {
      statusEl.className = "badge st-" + st;
      statusEl.dataset.status = st;
      statusEl.textContent = st.replace("_", " ");
    }
    if (cancelBatchBtn) cancelBatchBtn.disabled = !batch || BF.isFinal(st);
    var ended = !!batch && BF.isFinal(st);
    if (rerunAllBtn) rerunAllBtn.disabled = !ended;
    if (rerunFailedBtn) {
      rerunFailedBtn.disabled = !ended || !cmds.some(function (c) { return RERUN_FAILED.indexOf(c.status) >= 0; });
    }
    if (!batch) return;
    $("batch-policy").textContent = (batch.on_failure || "skip_dependents").replace("_", " ") +
      (batch.deadline_s ? " · deadline " + BF.fmtDuration(batch.deadline_s) : "") +
      (batch.rerun_of ? " · re-run of " + batch.rerun_of : "");
    $("batch-source").textContent = batch.source + (batch.schedule_id ? " (schedule " + batch.schedule_id + ")" : "");
    $("batch-user").textContent = batch.user || "—";
    $("batch-workspace").textContent = batch.workspace;
    $("batch-priority").textContent = String(batch.priority) + (batch.retries ? " · " + batch.retries + " retries" : "") + (batch.timeout_s ? " · timeout " + BF.fmtDuration(batch.timeout_s) : "");
    $("batch-created").textContent = BF.fmtTime(batch.created_at);
    // counts from the commands themselves: live, not only at the end
    var counts = {};
    cmds.forEach(function (c) { counts[c.status] = (counts[c.status] || 0) + 1; });
    var frag = document.createDocumentFragment();
    Object.keys(counts).sort().forEach(function (k) {
      frag.appendChild(BF.el("span", { class: "count st-" + k, dataset: { status: k } }, counts[k] + " " + k.replace("_", " ")));
    });
    frag.appendChild(BF.el("span", { class: "muted small" }, cmds.length + (cmds.length === 1 ? " command" : " commands")));
    BF.clear(countsEl).appendChild(frag);
    $("batch-makespan").textContent = makespan(st);
  }

  function makespan(st) {
    if (batchFinal && batchFinal.makespan_s !== undefined && batchFinal.makespan_s !== null) return BF.fmtDuration(batchFinal.makespan_s);
    var starts = cmds.map(function (c) { return c.start; }).filter(Boolean);
    if (!starts.length) return BF.isFinal(st) ? "—" : "not started";
    var t0 = Math.min.apply(null, starts);
    if (BF.isFinal(st)) {
      var ends = cmds.map(function (c) { return c.end; }).filter(Boolean);
      return ends.length ? BF.fmtDuration((Math.max.apply(null, ends) - t0) / 1000) : "—";
    }
    return BF.fmtDuration((Date.now() - t0) / 1000) + " so far";
  }

  /* ---- the commands table --------------------------------------------------------------------- */

  function buildRows() {
    var frag = document.createDocumentFragment();
    var body = null;
    cmds.forEach(function (c, i) {
      if (i % CHUNK === 0) {
        body = BF.el("tbody", { class: "rows-chunk", role: "rowgroup" });
        frag.appendChild(body);
      }
      var cls = BF.classBadge(c["class"]);
      cls.title = c.reasons.join("; ");
      var row = {
        exec: BF.el("td", { class: "exec", role: "cell" }),
        status: BF.el("td", { class: "status", role: "cell" }),
        dur: BF.el("td", { class: "num dur", role: "cell" }),
        exit: BF.el("td", { class: "num exit", role: "cell" }),
        why: BF.el("td", { class: "why small", role: "cell" }),
        actions: BF.el("td", { class: "actions", role: "cell" }),
      };
      row.tr = BF.el(
        "tr",
        {
          class: "command",
          role: "row",
          tabindex: "0",
          "aria-expanded": "false",
          dataset: { index: c.index, commandId: c.id },
        },
        BF.el("td", { class: "num", role: "cell" }, "#" + (c.index + 1)),
        BF.el("td", { class: "cmd", role: "cell", title: c.command }, BF.el("span", { class: "cmd-text" }, c.command)),
        BF.el("td", { role: "cell" }, cls),
        row.exec, row.status, row.dur, row.exit, row.why, row.actions
      );
      if (operator) {
        row.cancel = BF.el("button", { type: "button", class: "btn btn-small btn-danger cancel-command", hidden: true, "aria-label": "cancel command #" + (c.index + 1) }, "Cancel");
        row.approve = BF.el("button", { type: "button", class: "btn btn-small btn-primary approve-command", hidden: true, "aria-label": "approve command #" + (c.index + 1) }, "Approve");
        row.reject = BF.el("button", { type: "button", class: "btn btn-small btn-danger reject-command", hidden: true, "aria-label": "reject command #" + (c.index + 1) }, "Reject");
        row.actions.appendChild(row.approve);
        row.actions.appendChild(row.reject);
        row.actions.appendChild(row.cancel);
      }
      c.row = row;
      updateRow(c);
      body.appendChild(row.tr);
    });
    Array.prototype.forEach.call(tableEl.querySelectorAll("tbody"), function (b) { b.remove(); });
    tableEl.appendChild(frag);
  }

  function updateRow(c) {
    var r = c.row;
    if (!r) return;
    if (r.shown !== c.status) {
      r.shown = c.status;
      BF.clear(r.status).appendChild(BF.statusBadge(c.status));
      r.tr.dataset.status = c.status;
      if (r.cancel) {
        var awaiting = c.status === "awaiting_approval";
        r.cancel.hidden = !CANCELLABLE[c.status] || awaiting; // Reject is its cancel
        if (!CANCELLABLE[c.status]) r.cancel.disabled = false;
        r.approve.hidden = r.reject.hidden = !awaiting;
        r.approve.disabled = r.reject.disabled = false;
      }
    }
    setText(r.exec, c.executor || "");
    var dur = c.status === "running" && c.start ? (Date.now() - c.start) / 1000 : c.duration_s;
    setText(r.dur, BF.fmtDuration(dur));
    setText(r.exit, c.exit_code !== null && c.exit_code !== undefined ? String(c.exit_code) : c.signal ? "signal " + c.signal : "");
    var waiting = c.status === "pending" || c.status === "queued";
    var reason = c.reason || "";
    // a finished command may still carry the wait reason it had before it ran
    if (!waiting && /^waits for /.test(reason)) {
      c.waited = reason;
      reason = "";
    }
    var why = reason || (c.waited && !waiting ? "waited: " + c.waited : "");
    if (c.approval === "approved" && c.approval_by && why.indexOf("approved by") < 0) {
      why = ("approved by " + c.approval_by + (why ? "; " + why : ""));
    }
    setText(r.why, why);
    r.why.classList.toggle("muted", !reason);
    if (c.expanded) {
      var log = logs[c.id];
      if (log) {
        var meta = "stdout " + BF.fmtBytes(c.stdout_bytes || 0) + " · stderr " + BF.fmtBytes(c.stderr_bytes || 0);
        if (c.truncated) meta += " · truncated by the output limit";
        log.setMeta(meta);
        log.setDone(BF.isFinal(c.status));
      }
    }
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function expand(c, open) {
    if (!c.row) return;
    if (open === undefined) open = !c.expanded;
    if (open === !!c.expanded) return;
    c.expanded = open;
    c.row.tr.setAttribute("aria-expanded", String(open));
    c.row.tr.classList.toggle("open", open);
    var log = logFor(c.id, c.index);
    log.setMax(open ? MAX_LINES : collapsedMax());
    if (open) {
      var td = BF.el("td", { colspan: "9", role: "cell" });
      c.row.detail = BF.el("tr", { class: "detail", role: "row", dataset: { index: c.index } }, td);
      c.row.tr.parentNode.insertBefore(c.row.detail, c.row.tr.nextSibling);
      log.attach(td);
      markRow(c);
    } else {
      log.detach();
      if (c.row.detail) c.row.detail.remove();
      c.row.detail = null;
    }
  }

  tableEl.addEventListener("click", function (ev) {
    var decide = ev.target.closest("button.approve-command, button.reject-command");
    if (decide) {
      ev.stopPropagation();
      decideCommand(byId[decide.closest("tr.command").dataset.commandId], decide.classList.contains("approve-command"), decide);
      return;
    }
    var btn = ev.target.closest("button.cancel-command");
    if (btn) {
      ev.stopPropagation();
      cancelCommand(byId[btn.closest("tr.command").dataset.commandId], btn);
      return;
    }
    if (ev.target.closest("tr.detail, a, button")) return;
    var tr = ev.target.closest("tr.command");
    if (tr && !(window.getSelection && String(window.getSelection()).length)) expand(byId[tr.dataset.commandId]);
  });
  tableEl.addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr.command");
    if (!tr || ev.target !== tr) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      expand(byId[tr.dataset.commandId]);
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      var c = byId[tr.dataset.commandId];
      var next = c ? cmds[c.index + (ev.key === "ArrowDown" ? 1 : -1)] : null;
      var sib = next && next.row ? next.row.tr : null;
      if (sib) {
        ev.preventDefault();
        sib.focus();
      }
    }
  });

  function decideCommand(c, approve, btn) {
    if (!c) return;
    var verb = approve ? "approve" : "reject";
    var body;
    if (!approve) {
      var reason = window.prompt("Reject #" + (c.index + 1) + "? Reason (optional):", "");
      if (reason === null) return;
      body = reason.trim() ? { reason: reason.trim() } : {};
    }
    btn.disabled = true;
    BF.api("POST", "/api/v1/batches/" + encodeURIComponent(batchId) + "/commands/" + encodeURIComponent(c.id) + "/" + verb, body).then(
      function (fresh) {
        c.approval = fresh.approval;
        c.approval_by = fresh.approval_by;
        BF.toast((approve ? "Approved #" : "Rejected #") + (c.index + 1), "ok");
      },
      function (err) {
        btn.disabled = false;
        BF.showError(err);
      }
    );
  }

  function cancelCommand(c, btn) {
    if (!c) return;
    btn.disabled = true;
    BF.api("POST", "/api/v1/batches/" + encodeURIComponent(batchId) + "/commands/" + encodeURIComponent(c.id) + "/cancel").then(
      function () { BF.toast("Cancelling #" + (c.index + 1), "ok"); },
      function (err) {
        btn.disabled = false;
        BF.showError(err);
      }
    );
  }

  if (cancelBatchBtn) {
    cancelBatchBtn.addEventListener("click", function () {
      cancelBatchBtn.disabled = true;
      BF.api("POST", "/api/v1/batches/" + encodeURIComponent(batchId) + "/cancel").then(
        function () { BF.toast("Cancelling the batch", "ok"); },
        function (err) {
          cancelBatchBtn.disabled = false;
          BF.showError(err);
        }
      );
    });
  }

  function rerun(only, btn) {
    btn.disabled = true;
    BF.api("POST", "/api/v1/batches/" + encodeURIComponent(batchId) + "/rerun", { only: only }).then(
      function (created) { location.assign("/batches/" + encodeURIComponent(created.id)); },
      function (err) {
        btn.disabled = false;
        BF.showError(err);
      }
    );
  }
  if (rerunAllBtn) rerunAllBtn.addEventListener("click", function () { rerun("all", rerunAllBtn); });
  if (rerunFailedBtn) rerunFailedBtn.addEventListener("click", function () { rerun("failed", rerunFailedBtn); });

  /* ---- graph and timeline ---------------------------------------------------------------------- */

  function focusCommand(index) {
    var c = cmds[index];
    if (!c) return;
    expand(c, true);
    c.row.tr.scrollIntoView({ block: "center" });
    c.row.tr.focus({ preventScroll: true });
  }

  function buildGraph() {
    var levels = BF.Graph.levelsFromNeeds(cmds);
    var nodes = cmds.map(function (c) {
      return {
        index: c.index, command: c.command, cls: c["class"], level: levels[c.index], status: c.status,
        title: "#" + (c.index + 1) + " " + c["class"] + (c.reasons.length ? ": " + c.reasons.join("; ") : "") + "\n" + c.command,
      };
    });
    var edges = [];
    cmds.forEach(function (c) {
      (c.needs || []).forEach(function (n) {
        edges.push({ before: n, after: c.index, reason: "#" + (c.index + 1) + " waits for #" + (n + 1) });
      });
    });
    graph = BF.Graph.draw($("graph"), nodes, edges, { maxNodes: 1500, onSelect: focusCommand });
    cmds.forEach(function (c) { c._gStatus = c.status; });
    var note = $("graph-note");
    note.hidden = graph.shown >= graph.total;
    note.textContent = "Drawing the first " + graph.shown + " of " + graph.total + " commands.";
    gantt = new BF.Gantt($("timeline"), { onSelect: focusCommand });
  }

  // running rows, the timeline and the makespan move with the clock
  setInterval(function () {
    var live = false;
    cmds.forEach(function (c) {
      if (c.status === "running") {
        markRow(c);
        live = true;
      }
    });
    if (live || (batch && !batchFinal)) {
      headDirty = true;
      timelineDirty = timelineDirty || live;
      schedule();
    }
  }, 1000);

  headDirty = true;
  schedule();
  load();
})();
