/* bashfleet schedules: list, create, edit, pause/resume and delete recurring batches.
 * Viewers see the list only; the server decides in the end (operators manage their own
 * schedules, admins every schedule) and its error messages are shown as they come. */
(function () {
  "use strict";

  var el = BF.el;
  var REFRESH_MS = 15000;
  var canEdit = BF.can("operator");
  // operators manage their own schedules, admins every schedule (the server checks too)
  function mayManage(s) {
    return BF.can("admin") || (canEdit && s.user_id === BF.user.id);
  }

  var schedules = [];
  var owners = {}; // user id -> name (admins can list users)
  var runs = {}; // schedule id -> {workspace, last: batch} from recent scheduled batches
  var editing = null; // the schedule being edited, or null when creating

  /* ---- formatting ------------------------------------------------------------------------ */

  function every(seconds) {
    var units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    for (var i = 0; i < units.length; i++) {
      var size = units[i][0];
      if (seconds >= size && seconds % size === 0) {
        var n = seconds / size;
        return "every " + (n === 1 ? "" : n + " ") + units[i][1] + (n === 1 ? "" : "s");
      }
    }
    return "every " + seconds + " s";
  }

  function until(iso) {
    if (!iso) return "";
    var s = (new Date(iso).getTime() - Date.now()) / 1000;
    if (isNaN(s)) return "";
    if (s < 0) return "due now";
    if (s < 60) return "in " + Math.max(1, Math.round(s)) + " s";
    if (s < 3600) return "in " + Math.round(s / 60) + " min";
    if (s < 86400) return "in " + Math.round(s / 3600) + " h";
    return "in " + Math.round(s / 86400) + " d";
  }

  function firstLine(script) {
    var lines = String(script || "").split("\n").map(function (l) { return l.trim(); }).filter(Boolean);
    if (!lines.length) return "";
    return lines[0] + (lines.length > 1 ? "  (+" + (lines.length - 1) + " more)" : "");
  }

  function runsHref(s) {
    return "/history?source=schedule&schedule=" + encodeURIComponent(s.id);
  }

  /* ---- confirmation ------------------------------------------------------------------------ */


  /* ---- list ------------------------------------------------------------------------------------ */

  function row(s) {
    var info = runs[s.id] || {};
    var last = info.last;
    var trigger = s.cron ? el("code", { class: "ops-trigger", title: "cron, UTC" }, s.cron) : el("span", { class: "ops-trigger" }, every(s.interval_s));
    var actions = el("div", { class: "ops-actions" }, el("a", { class: "btn btn-small", href: runsHref(s), title: "batches started by this schedule" }, "Runs"));
    if (mayManage(s)) {
      actions.appendChild(el("button", { type: "button", class: "btn btn-small btn-primary", dataset: { act: "run" }, "aria-label": "Run " + s.name + " now", title: "start a batch now; the next scheduled run stays as it is" }, "Run now"));
      actions.appendChild(el("button", { type: "button", class: "btn btn-small", dataset: { act: "edit" }, "aria-label": "Edit " + s.name }, "Edit"));
      actions.appendChild(
        el("button", { type: "button", class: "btn btn-small", dataset: { act: s.paused ? "resume" : "pause" }, "aria-label": (s.paused ? "Resume " : "Pause ") + s.name }, s.paused ? "Resume" : "Pause")
      );
      actions.appendChild(el("button", { type: "button", class: "btn btn-small btn-danger", dataset: { act: "delete" }, "aria-label": "Delete " + s.name }, "Delete"));
    }
    return el(
      "tr",
      { class: s.paused ? "is-paused" : "", dataset: { id: String(s.id), name: s.name, paused: String(s.paused) } },
      el("td", null, el("span", { class: "ops-sched-name" }, s.name), el("span", { class: "ops-cell-sub mono ops-truncate", title: s.template ? "template " + s.template : s.script }, s.template ? "template " + s.template : firstLine(s.script))),
      el("td", null, trigger),
      el("td", { class: "ops-hide-sm" }, s.workspace || info.workspace || el("span", { class: "muted", title: "workspace id" }, "#" + s.workspace_id)),
      el(
        "td",
        { class: "ops-next-cell" },
        s.paused
          ? el("span", { class: "muted" }, "—")
          : s.next_run_at
          ? el("span", { class: "ops-next", title: s.next_run_at }, BF.fmtTime(s.next_run_at), el("span", { class: "ops-next-rel", dataset: { until: s.next_run_at } }, until(s.next_run_at)))
          : el("span", { class: "muted" }, "not planned")
      ),
      el(
        "td",
        { class: "ops-hide-sm" },
        s.last_run_at ? el("span", { title: BF.fmtTime(s.last_run_at) }, BF.ago(s.last_run_at)) : el("span", { class: "muted" }, "never"),
        last ? el("a", { class: "ops-cell-sub", href: "/batches/" + encodeURIComponent(last.id), title: "latest run" }, BF.statusBadge(last.status)) : null
      ),
      el("td", null, el("span", { class: "badge ops-state " + (s.paused ? "ops-state-paused" : "ops-state-active") }, s.paused ? "paused" : "active")),
      el("td", { class: "ops-hide-sm" }, s.owner || owners[s.user_id] || el("span", { class: "muted" }, "user #" + s.user_id)),
      el("td", null, actions)
    );
  }

  function render() {
    var body = BF.clear(document.getElementById("schedules-body"));
    schedules.forEach(function (s) { body.appendChild(row(s)); });
    document.getElementById("schedules-empty").hidden = schedules.length > 0;
    document.getElementById("schedules-table").hidden = schedules.length === 0;
    document.getElementById("schedule-count").textContent = String(schedules.length);
  }

  function load() {
    var extras = [
      BF.api("GET", "/api/v1/batches?source=schedule&limit=200").then(function (page) {
        var map = {};
        (page.items || []).forEach(function (b) {
          if (b.schedule_id === null || b.schedule_id === undefined || map[b.schedule_id]) return;
          map[b.schedule_id] = { workspace: b.workspace, last: b }; // newest first
        });
        runs = map;
      }),
    ];
    if (BF.can("admin")) {
      extras.push(
        BF.api("GET", "/api/v1/users").then(function (res) {
          owners = {};
          (res.items || []).forEach(function (u) { owners[u.id] = u.name; });
        })
      );
    }
    return Promise.all([
      BF.api("GET", "/api/v1/schedules").then(function (res) {
        schedules = (res.items || []).slice().sort(function (a, b) { return a.name.localeCompare(b.name) || a.id - b.id; });
      }),
      Promise.all(extras).catch(function () { /* names are a nicety */ }),
    ])
      .then(render)
      .catch(BF.showError);
  }

  var lastDueLoad = 0;
  function tick() {
    var due = false;
    document.querySelectorAll("[data-until]").forEach(function (node) {
      node.textContent = until(node.dataset.until);
      if (new Date(node.dataset.until).getTime() < Date.now() - 1000) due = true;
    });
    // a schedule just ran: fetch its new next run (and its latest batch) soon
    if (due && Date.now() - lastDueLoad > 4000 && !document.hidden) {
      lastDueLoad = Date.now();
      load();
    }
  }

  /* ---- actions ------------------------------------------------------------------------------------- */

  function find(id) {
    for (var i = 0; i < schedules.length; i++) if (String(schedules[i].id) === String(id)) return schedules[i];
    return null;
  }

  function onAction(ev) {
    var btn = ev.target.closest("button[data-act]");
    if (!btn) return;
    var tr = btn.closest("tr[data-id]");
    var s = find(tr.dataset.id);
    if (!s) return;
    var act = btn.dataset.act;
    if (act === "edit") return openForm(s);
    if (act === "run") {
      btn.disabled = true;
      return BF.api("POST", "/api/v1/schedules/" + s.id + "/run")
        .then(function (batch) {
          BF.toast("Started " + s.name + ": batch " + batch.id, "ok");
          location.assign("/batches/" + encodeURIComponent(batch.id));
        })
        .catch(function (err) {
          btn.disabled = false;
          BF.showError(err);
        });
    }
    if (act === "pause" || act === "resume") {
      btn.disabled = true;
      return BF.api("POST", "/api/v1/schedules/" + s.id + "/" + act)
        .then(function () {
          BF.toast((act === "pause" ? "Paused " : "Resumed ") + s.name, "ok");
          return load();
        })
        .catch(function (err) {
          btn.disabled = false;
          BF.showError(err);
        })
        .then(function () { focusRow(s.id, "[data-act]:not([data-act=edit])"); });
    }
    if (act === "delete") {
      return BF.confirm("Delete schedule?", "“" + s.name + "” will stop running. Batches it already started stay in the history.", "Delete").then(function (ok) {
        if (!ok) return btn.focus();
        return BF.api("DELETE", "/api/v1/schedules/" + s.id)
          .then(function () {
            BF.toast("Deleted " + s.name, "ok");
            if (editing && editing.id === s.id) closeForm();
            return load();
          })
          .then(function () { document.getElementById("schedules-title").focus(); })
          .catch(BF.showError);
      });
    }
  }

  function focusRow(id, selector) {
    var tr = document.querySelector('#schedules-body tr[data-id="' + id + '"]');
    var target = tr && tr.querySelector(selector);
    if (target) target.focus();
  }

  /* ---- form ----------------------------------------------------------------------------------------- */

  var card, form, errorBox, saveBtn, newBtn;

  function kind() {
    return form.querySelector('input[name="kind"]:checked').value;
  }

  function showKind() {
    var cron = kind() === "cron";
    document.getElementById("s-cron-field").hidden = !cron;
    document.getElementById("s-interval-field").hidden = cron;
  }

  function setKind(value) {
    form.querySelector('input[name="kind"][value="' + value + '"]').checked = true;
    showKind();
  }

  function openForm(s) {
    editing = s || null;
    form.reset();
    errorBox.hidden = true;
    document.getElementById("schedule-form-title").textContent = s ? "Edit “" + s.name + "”" : "New schedule";
    saveBtn.textContent = s ? "Save changes" : "Create schedule";
    var ws = document.getElementById("s-workspace");
    // a schedule that runs a template keeps it unless a script is typed in (API: template)
    form.elements.script.required = !(s && s.template);
    form.elements.script.placeholder = s && s.template ? "runs template " + s.template + "; a script here replaces it" : "git pull\nmake test";
    if (s) {
      form.elements.name.value = s.name;
      form.elements.script.value = s.script;
      var known = s.workspace || (runs[s.id] && runs[s.id].workspace);
      ws.value = known || "";
      ws.placeholder = known ? "default" : "unchanged (workspace #" + s.workspace_id + ")";
      setKind(s.cron ? "cron" : "interval");
      form.elements.cron.value = s.cron || "";
      form.elements.interval_s.value = s.interval_s || "";
    } else {
      ws.placeholder = "default";
      setKind("cron");
    }
    card.hidden = false;
    if (newBtn) newBtn.setAttribute("aria-expanded", "true");
    card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    form.elements.name.focus();
  }

  function closeForm() {
    var was = editing;
    editing = null;
    card.hidden = true;
    if (newBtn) newBtn.setAttribute("aria-expanded", "false");
    if (was) focusRow(was.id, "[data-act=edit]");
    else if (newBtn) newBtn.focus();
  }

  function showError(message, field) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    if (field) field.focus();
  }

  function collect() {
    var f = form.elements;
    var body = {
      name: f.name.value.trim(),
      script: f.script.value,
    };
    var ws = f.workspace.value.trim();
    if (ws || !editing) body.workspace = ws || "default";
    if (kind() === "cron") {
      body.cron = f.cron.value.trim().replace(/\s+/g, " ");
      if (!body.cron) return showError("Enter a cron expression with five fields, e.g. */15 * * * *", f.cron);
    } else {
      var raw = f.interval_s.value.trim();
      if (!/^\d+$/.test(raw)) return showError("Enter the interval as a whole number of seconds.", f.interval_s);
      body.interval_s = parseInt(raw, 10);
    }
    if (editing) {
      // send only what changed: an unchanged trigger keeps its next run time
      var s = editing;
      if (body.name === s.name) delete body.name;
      if (body.script === s.script) delete body.script;
      if (body.workspace !== undefined && body.workspace === (s.workspace || (runs[s.id] && runs[s.id].workspace))) delete body.workspace;
      if (body.cron !== undefined && body.cron === s.cron) delete body.cron;
      if (body.interval_s !== undefined && body.interval_s === s.interval_s) delete body.interval_s;
    }
    return body;
  }

  function submit(ev) {
    ev.preventDefault();
    errorBox.hidden = true;
    var body = collect();
    if (!body) return;
    var req = editing ? BF.api("PATCH", "/api/v1/schedules/" + editing.id, body) : BF.api("POST", "/api/v1/schedules", body);
    saveBtn.disabled = true;
    req
      .then(function (s) {
        BF.toast((editing ? "Saved " : "Created ") + s.name + (s.next_run_at ? "; next run " + until(s.next_run_at) : ""), "ok");
        editing = null;
        card.hidden = true;
        if (newBtn) newBtn.setAttribute("aria-expanded", "false");
        return load().then(function () { focusRow(s.id, "[data-act=edit]"); });
      })
      .catch(function (err) {
        showError(err.message || String(err));
      })
      .then(function () { saveBtn.disabled = false; });
  }

  function start() {
    document.getElementById("schedules-title").setAttribute("tabindex", "-1");
    document.getElementById("schedules-body").addEventListener("click", onAction);
    card = document.getElementById("schedule-form-card");
    if (card && canEdit) {
      form = document.getElementById("schedule-form");
      errorBox = document.getElementById("schedule-error");
      saveBtn = document.getElementById("schedule-save");
      newBtn = document.getElementById("new-schedule");
      newBtn.addEventListener("click", function () { openForm(null); });
      document.getElementById("schedule-cancel").addEventListener("click", closeForm);
      form.addEventListener("submit", submit);
      form.querySelectorAll('input[name="kind"]').forEach(function (r) { r.addEventListener("change", showKind); });
      card.addEventListener("keydown", function (ev) {
        if (ev.key === "Escape") closeForm();
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) submit(ev);
      });
    }
    load();
    setInterval(function () {
      if (!document.hidden) load();
    }, REFRESH_MS);
    setInterval(tick, 2000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
