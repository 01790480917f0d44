/* The new-batch page: a monospace editor whose statements are classified as you type
 * (POST /api/v1/classify, debounced), a per-line gutter and tint coloured by class,
 * an accessible list of statements, the planned graph, and the submit form.
 *
 * The editor is a plain <textarea> (wrap=off, fixed line height) with two layers kept in
 * step with its scroll position: the gutter (line numbers, class marks, a title with the
 * reasons) and a tint behind the text. Nothing from the server is ever parsed as HTML.
 */
(function () {
  "use strict";
  var BF = window.BF;
  var DEBOUNCE_MS = 250;
  var MAX_BYTES = 1 << 20; // the portal's default script limit (sandbox.pipeline)
  var MAX_ROWS = 1000; // statement rows listed below the editor
  var LINE_H = 20; // px; must match .editor line-height in batch.css

  var form = document.getElementById("batch-form");
  var text = document.getElementById("script");
  var editor = document.getElementById("editor");
  var gutter = document.getElementById("gutter");
  var tint = document.getElementById("tint");
  var status = document.getElementById("classify-status");
  var current = document.getElementById("current-statement");
  var rows = document.getElementById("statement-rows");
  var rowsNote = document.getElementById("statements-note");
  var svg = document.getElementById("graph");
  var graphNote = document.getElementById("graph-note");
  var submitBtn = document.getElementById("submit");
  var submitError = document.getElementById("submit-error");
  var summary = document.getElementById("plan-summary");

  var result = null; // last good classification
  var lineToStmt = []; // 1-based line -> [statement index, ...] (`a; b` share a line)
  var RANK = { safe: 0, conditional: 1, sequential: 2, dangerous: 3 };
  var graph = null;
  var seq = 0;
  var timer = null;
  var lineCount = 0;
  var submitting = false;

  /* ---- layers: gutter + tint -------------------------------------------------------- */

  function countLines(s) {
    var n = 1;
    for (var i = s.indexOf("\n"); i >= 0; i = s.indexOf("\n", i + 1)) n++;
    return n;
  }

  function stmtTitle(st) {
    var parts = ["#" + (st.index + 1) + " " + st["class"]];
    if (st.reasons.length) parts.push(st.reasons.join("; "));
    if (st.reads.length) parts.push("reads " + st.reads.join(", "));
    if (st.writes.length) parts.push("writes " + st.writes.join(", "));
    if (st.needs.length) parts.push("waits for " + st.needs.map(function (n) { return "#" + (n + 1); }).join(", "));
    return parts.join(" — ");
  }

  function renderLayers() {
    var n = countLines(text.value);
    lineCount = n;
    var gf = document.createDocumentFragment();
    var tf = document.createDocumentFragment();
    for (var line = 1; line <= n; line++) {
      var on = stmtsAt(line);
      var worst = null;
      on.forEach(function (x) {
        if (!worst || (RANK[x["class"]] || 0) > (RANK[worst["class"]] || 0)) worst = x;
      });
      var cls = worst ? "k-" + worst["class"] : "";
      var first = on.some(function (x) { return x.line === line; });
      var g = document.createElement("div");
      g.className = "gl " + cls + (first ? " first" : "");
      g.textContent = String(line);
      if (on.length) g.title = on.map(stmtTitle).join("\n");
      gf.appendChild(g);
      var t = document.createElement("div");
      t.className = "tl " + cls;
      tf.appendChild(t);
    }
    BF.clear(gutter).appendChild(gf);
    BF.clear(tint).appendChild(tf);
    syncScroll();
  }

  function syncScroll() {
    var y = "translateY(" + -text.scrollTop + "px)";
    gutter.style.transform = y;
    tint.style.transform = y;
  }

  function mapLines(stmts) {
    lineToStmt = [];
    stmts.forEach(function (st, i) {
      var span = countLines(st.command);
      for (var k = 0; k < span; k++) (lineToStmt[st.line + k] = lineToStmt[st.line + k] || []).push(i);
    });
  }

  function stmtsAt(line) {
    var list = result ? lineToStmt[line] : null;
    return list ? list.map(function (i) { return result.statements[i]; }) : [];
  }

  /* ---- classification ------------------------------------------------------------------ */

  function byteLength(s) {
    return new TextEncoder().encode(s).length;
  }

  function setStatus(msg, kind) {
    status.textContent = msg;
    status.className = "classify-status small " + (kind === "error" ? "error" : "muted");
  }

  function schedule() {
    editor.dataset.state = result ? "stale" : editor.dataset.state;
    if (timer) clearTimeout(timer);
    timer = setTimeout(classify, DEBOUNCE_MS);
    if (countLines(text.value) !== lineCount) renderLayers();
  }

  function classify() {
    timer = null;
    var script = text.value;
    var mine = ++seq;
    if (!script.trim()) {
      apply(null);
      editor.dataset.state = "empty";
      setStatus("Type commands to see how each one is classified.");
      return;
    }
    var size = byteLength(script);
    if (size > MAX_BYTES) {
      editor.dataset.state = "error";
      setStatus("The script is " + BF.fmtBytes(size) + "; the portal accepts at most " + BF.fmtBytes(MAX_BYTES) + ". Split it into several batches.", "error");
      return;
    }
    editor.dataset.state = result ? "stale" : "busy";
    BF.api("POST", "/api/v1/classify", { script: script }).then(
      function (data) {
        if (mine !== seq) return; // a newer request is on its way
        apply(data);
        editor.dataset.state = "ok";
      },
      function (err) {
        if (mine !== seq) return;
        editor.dataset.state = "error";
        if (err.code === "invalid_input" && /no commands|empty/.test(err.message)) {
          apply(null);
          setStatus("No commands yet (only blank lines or comments).");
          return;
        }
        setStatus("Cannot classify: " + err.message, "error");
      }
    );
  }

  function apply(data) {
    result = data;
    var stmts = data ? data.statements : [];
    mapLines(stmts);
    renderLayers();
    renderRows(stmts);
    renderGraph(data);
    showCurrent();
    if (!data) {
      summary.textContent = "";
      return;
    }
    var counts = {};
    stmts.forEach(function (st) { counts[st["class"]] = (counts[st["class"]] || 0) + 1; });
    var parts = ["safe", "conditional", "sequential", "dangerous"]
      .filter(function (c) { return counts[c]; })
      .map(function (c) { return counts[c] + " " + c; });
    var msg = stmts.length + (stmts.length === 1 ? " statement" : " statements") + ": " + parts.join(", ") +
      " · " + data.edges.length + (data.edges.length === 1 ? " dependency" : " dependencies") +
      " · " + data.levels.length + (data.levels.length === 1 ? " level" : " levels");
    setStatus(msg);
    summary.textContent = msg;
  }

  function list(items) {
    return items.length ? items.join(", ") : "";
  }

  function renderRows(stmts) {
    var frag = document.createDocumentFragment();
    stmts.slice(0, MAX_ROWS).forEach(function (st) {
      var reasons = BF.el("ul", { class: "reasons" }, st.reasons.map(function (r) { return BF.el("li", null, r); }));
      var badge = BF.classBadge(st["class"]);
      badge.title = st.reasons.join("; ");
      frag.appendChild(
        BF.el(
          "tr",
          {
            class: "statement k-" + st["class"],
            tabindex: "0",
            title: stmtTitle(st),
            dataset: { index: st.index, line: st.line },
            "aria-label": stmtTitle(st) + " — line " + st.line + ": " + st.command,
          },
          BF.el("td", { class: "num" }, "#" + (st.index + 1)),
          BF.el("td", null, badge),
          BF.el("td", { class: "cmd" }, st.command),
          BF.el("td", null, reasons),
          BF.el("td", { class: "mono small" }, list(st.reads)),
          BF.el("td", { class: "mono small" }, list(st.writes)),
          BF.el("td", { class: "small" }, st.needs.map(function (n) { return "#" + (n + 1); }).join(", "))
        )
      );
    });
    BF.clear(rows).appendChild(frag);
    rowsNote.hidden = stmts.length <= MAX_ROWS;
    rowsNote.textContent = "Showing the first " + MAX_ROWS + " of " + stmts.length + " statements.";
  }

  function renderGraph(data) {
    var stmts = data ? data.statements : [];
    var nodes = stmts.map(function (st) {
      return { index: st.index, command: st.command, cls: st["class"], level: st.level, title: stmtTitle(st) + "\n" + st.command };
    });
    graph = BF.Graph.draw(svg, nodes, data ? data.edges : [], {
      maxNodes: 1500,
      empty: "The plan appears here as you type.",
      onSelect: function (i) { goToStatement(i); },
    });
    graphNote.hidden = graph.shown >= graph.total;
    graphNote.textContent = "Drawing the first " + graph.shown + " of " + graph.total + " statements.";
  }

  /* ---- where the caret is ---------------------------------------------------------------- */

  function caretLine() {
    var pos = text.selectionStart || 0;
    return countLines(text.value.slice(0, pos));
  }

  var lastShown = null;
  function showCurrent() {
    var on = stmtsAt(caretLine());
    var key = on.map(stmtTitle).join("|");
    if (key === lastShown) return;
    lastShown = key;
    BF.clear(current);
    Array.prototype.forEach.call(rows.querySelectorAll("tr.current"), function (tr) { tr.classList.remove("current"); });
    if (graph) graph.highlight(on.length ? on[0].index : null);
    on.forEach(function (st) {
      var line = BF.el("span", { class: "current-one" }, BF.el("span", { class: "muted" }, "#" + (st.index + 1) + " "), BF.classBadge(st["class"]),
        " " + stmtTitle(st).split(" — ").slice(1).join(" — "));
      current.appendChild(line);
      var row = rows.querySelector('tr[data-index="' + st.index + '"]');
      if (row) row.classList.add("current");
    });
  }

  function goToStatement(index) {
    if (!result || !result.statements[index]) return;
    var line = result.statements[index].line;
    var pos = 0;
    for (var l = 1; l < line; l++) {
      pos = text.value.indexOf("\n", pos) + 1;
      if (pos === 0) break;
    }
    text.focus();
    text.setSelectionRange(pos, pos);
    var top = (line - 1) * LINE_H;
    if (top < text.scrollTop || top > text.scrollTop + text.clientHeight - LINE_H * 2) text.scrollTop = Math.max(0, top - LINE_H * 3);
    showCurrent();
  }

  /* the reasons on hover over the text itself: the textarea's title follows the pointer */
  function hoverTitle(ev) {
    if (!result) return;
    var rect = text.getBoundingClientRect();
    var padTop = 8; // .editor textarea padding-top in batch.css
    var line = Math.floor((ev.clientY - rect.top - padTop + text.scrollTop) / LINE_H) + 1;
    var title = stmtsAt(line).map(stmtTitle).join("\n");
    if (text.title !== title) text.title = title;
  }

  /* ---- submit ------------------------------------------------------------------------------ */

  function fail(msg) {
    submitError.textContent = msg;
    submitError.hidden = false;
  }

  function submit() {
    if (submitting) return;
    submitError.hidden = true;
    var script = text.value;
    if (!script.trim()) return fail("Write at least one command.");
    var el = form.elements;
    var workspace = el.workspace.value.trim() || "default";
    var priority = Number(el.priority.value);
    if (!Number.isInteger(priority) || priority < 1 || priority > 10) return fail("Priority is a whole number from 1 to 10.");
    var retries = Number(el.retries.value || 0);
    if (!Number.isInteger(retries) || retries < 0 || retries > 5) return fail("Retries is a whole number from 0 to 5.");
    var body = { script: script, workspace: workspace, priority: priority, retries: retries };
    var t = el.timeout_s.value.trim();
    if (t) {
      var timeout = Number(t);
      if (!(timeout > 0)) return fail("The timeout is a number of seconds above 0 (or empty for none).");
      body.timeout_s = timeout;
    }
    if (el.on_failure && el.on_failure.value) body.on_failure = el.on_failure.value;
    var d = el.deadline_s ? el.deadline_s.value.trim() : "";
    if (d) {
      var deadline = Number(d);
      if (!(deadline > 0)) return fail("The deadline is a number of seconds above 0 (or empty for none).");
      body.deadline_s = deadline;
    }
    submitting = true;
    submitBtn.disabled = true;
    submitBtn.textContent = "Submitting…";
    BF.api("POST", "/api/v1/batches", body).then(
      function (batch) {
        location.assign("/batches/" + encodeURIComponent(batch.id));
      },
      function (err) {
        submitting = false;
        submitBtn.disabled = false;
        submitBtn.textContent = "Run batch";
        fail("Not submitted: " + err.message);
        BF.showError(err);
      }
    );
  }

  /* ---- wiring -------------------------------------------------------------------------------- */

  text.addEventListener("input", schedule);
  text.addEventListener("scroll", syncScroll);
  text.addEventListener("keyup", showCurrent);
  text.addEventListener("click", showCurrent);
  text.addEventListener("focus", showCurrent);
  text.addEventListener("select", showCurrent);
  text.addEventListener("mousemove", hoverTitle);
  if (window.ResizeObserver) new ResizeObserver(syncScroll).observe(text);

  rows.addEventListener("focusin", function (ev) {
    var tr = ev.target.closest("tr.statement");
    if (!tr || !graph) return;
    var prev = rows.querySelector("tr.current");
    if (prev) prev.classList.remove("current");
    tr.classList.add("current");
    graph.highlight(Number(tr.dataset.index));
  });
  rows.addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr.statement");
    if (!tr) return;
    if (ev.key === "Enter") {
      ev.preventDefault();
      goToStatement(Number(tr.dataset.index));
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      var next = ev.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) {
        ev.preventDefault();
        next.focus();
      }
    }
  });
  rows.addEventListener("dblclick", function (ev) {
    var tr = ev.target.closest("tr.statement");
    if (tr) goToStatement(Number(tr.dataset.index));
  });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    submit();
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      submit();
    }
  });

  renderLayers();
  renderGraph(null);
  if (text.value.trim()) classify(); // the browser restored a draft
})();
