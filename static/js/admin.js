/* bashfleet admin: users (add, role, disable/enable), API tokens (create with the secret
 * shown once, revoke) and the audit log (paged by cursor, filtered by action).
 * Secrets are put into read-only inputs as values; nothing from the server is HTML. */
(function () {
  "use strict";

  var el = BF.el;
  var AUDIT_PAGE = 50;

  var users = [];
  var tokens = [];
  var auditCursor = null;
  var auditShown = 0;
  var auditSeq = 0;

  function userName(id) {
    for (var i = 0; i < users.length; i++) if (users[i].id === id) return users[i].name;
    return "user #" + id;
  }

  function isMe(u) {
    return u.name === BF.user.name;
  }

  /* ---- shared bits -------------------------------------------------------------------------- */

  function formError(id, err) {
    var box = document.getElementById(id);
    if (!err) {
      box.hidden = true;
      return;
    }
    box.textContent = err.message || String(err);
    box.hidden = false;
  }

  function showSecret(prefix, name, value) {
    document.getElementById(prefix + "-name").textContent = name;
    var input = document.getElementById(prefix + "-value");
    input.value = value;
    document.getElementById(prefix).hidden = false;
    input.focus();
    input.select();
  }

  /* ---- users ---------------------------------------------------------------------------------- */

  function userRow(u) {
    var me = isMe(u);
    var role = el("select", { class: "ops-role-select", "aria-label": "Role of " + u.name, dataset: { act: "role" }, disabled: me, title: me ? "you cannot change your own role here" : null });
    ["viewer", "operator", "admin"].forEach(function (r) {
      var opt = el("option", { value: r }, r);
      if (r === u.role) opt.selected = true;
      role.appendChild(opt);
    });
    var toggle = me
      ? null
      : el(
          "button",
          { type: "button", class: "btn btn-small" + (u.disabled ? "" : " btn-danger"), dataset: { act: u.disabled ? "enable" : "disable" }, "aria-label": (u.disabled ? "Enable " : "Disable ") + u.name },
          u.disabled ? "Enable" : "Disable"
        );
    return el(
      "tr",
      { class: u.disabled ? "ops-user-disabled" : "", dataset: { id: String(u.id), name: u.name } },
      el("td", null, el("span", { class: "ops-user-name" }, u.name), me ? el("span", { class: "ops-you" }, "you") : null),
      el("td", null, role),
      el("td", null, el("span", { class: "badge " + (u.disabled ? "ops-state-disabled" : "ops-state-active") }, u.disabled ? "disabled" : "active")),
      el("td", { class: "ops-hide-sm nowrap", title: BF.fmtTime(u.created_at) }, BF.ago(u.created_at)),
      el("td", { class: "num" }, toggle)
    );
  }

  function renderUsers() {
    var body = BF.clear(document.getElementById("users-body"));
    users.forEach(function (u) { body.appendChild(userRow(u)); });
    document.getElementById("user-count").textContent = String(users.length);
    var select = document.getElementById("t-user");
    var keep = select.value;
    BF.clear(select);
    users.forEach(function (u) {
      if (u.disabled) return;
      select.appendChild(el("option", { value: String(u.id) }, u.name + (isMe(u) ? " (you)" : "")));
    });
    if (keep && select.querySelector('option[value="' + keep + '"]')) select.value = keep;
    else {
      var mine = users.filter(isMe)[0];
      if (mine) select.value = String(mine.id);
    }
  }

  function loadUsers() {
    return BF.api("GET", "/api/v1/users").then(function (res) {
      users = res.items || [];
      renderUsers();
    });
  }

  function findUser(id) {
    return users.filter(function (u) { return String(u.id) === String(id); })[0];
  }

  function changeUser(u, body, what) {
    return BF.api("PATCH", "/api/v1/users/" + u.id, body)
      .then(function (updated) {
        BF.toast(updated.name + ": " + what, "ok");
        return Promise.all([loadUsers(), loadAudit(true)]);
      })
      .catch(function (err) {
        BF.showError(err);
        return loadUsers();
      });
  }

  function onUserAction(ev) {
    var btn = ev.target.closest("button[data-act]");
    if (!btn) return;
    var u = findUser(btn.closest("tr").dataset.id);
    if (!u) return;
    if (btn.dataset.act === "enable") {
      changeUser(u, { disabled: false }, "enabled").then(function () { refocus("users-body", u.id, "button[data-act]"); });
    } else {
      BF.confirm("Disable " + u.name + "?", u.name + " will be logged out and their API tokens stop working until an admin enables the account again.", "Disable").then(function (ok) {
        if (!ok) return btn.focus();
        changeUser(u, { disabled: true }, "disabled").then(function () { refocus("users-body", u.id, "button[data-act]"); });
      });
    }
  }

  function onRoleChange(ev) {
    var select = ev.target.closest("select[data-act=role]");
    if (!select) return;
    var u = findUser(select.closest("tr").dataset.id);
    if (!u || select.value === u.role) return;
    changeUser(u, { role: select.value }, "role is now " + select.value).then(function () { refocus("users-body", u.id, "select"); });
  }

  function refocus(bodyId, id, selector) {
    var node = document.querySelector("#" + bodyId + ' tr[data-id="' + id + '"] ' + selector);
    if (node) node.focus();
  }

  function addUser(ev) {
    ev.preventDefault();
    var form = ev.target;
    formError("user-error", null);
    var name = form.elements.name.value.trim();
    var password = form.elements.password.value;
    if (!name) {
      formError("user-error", { message: "Enter a name." });
      return form.elements.name.focus();
    }
    if (password && password.length < 8) {
      formError("user-error", { message: "The password must have at least 8 characters (or leave it empty to generate one)." });
      return form.elements.password.focus();
    }
    var body = { name: name, role: form.elements.role.value };
    if (password) body.password = password;
    var submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    BF.api("POST", "/api/v1/users", body)
      .then(function (u) {
        form.reset();
        form.elements.role.value = "operator";
        if (u.password) showSecret("user-secret", u.name, u.password);
        else BF.toast("Added " + u.name, "ok");
        return Promise.all([loadUsers(), loadAudit(true)]);
      })
      .catch(function (err) { formError("user-error", err); })
      .then(function () { submit.disabled = false; });
  }

  /* ---- tokens --------------------------------------------------------------------------------- */

  function tokenRow(t) {
    var revoked = !!t.revoked_at;
    return el(
      "tr",
      { class: revoked ? "ops-token-revoked" : "", dataset: { id: String(t.id), name: t.name } },
      el("td", null, t.name, el("span", { class: "ops-cell-sub", title: BF.fmtTime(t.created_at) }, "created " + BF.ago(t.created_at))),
      el("td", null, el("code", { class: "ops-prefix" }, t.prefix + "…")),
      el("td", null, userName(t.user_id)),
      el("td", { class: "ops-hide-sm nowrap", title: BF.fmtTime(t.last_used_at) }, t.last_used_at ? BF.ago(t.last_used_at) : el("span", { class: "muted" }, "never")),
      el("td", null, el("span", { class: "badge " + (revoked ? "ops-state-revoked" : "ops-state-active"), title: revoked ? BF.fmtTime(t.revoked_at) : null }, revoked ? "revoked" : "active")),
      el("td", { class: "num" }, revoked ? null : el("button", { type: "button", class: "btn btn-small btn-danger", dataset: { act: "revoke" }, "aria-label": "Revoke token " + t.name + " (" + t.prefix + ")" }, "Revoke"))
    );
  }

  function renderTokens() {
    var showRevoked = document.getElementById("t-show-revoked").checked;
    var visible = tokens.filter(function (t) { return showRevoked || !t.revoked_at; });
    var body = BF.clear(document.getElementById("tokens-body"));
    visible.forEach(function (t) { body.appendChild(tokenRow(t)); });
    document.getElementById("tokens-empty").hidden = visible.length > 0;
    document.getElementById("tokens-table").hidden = visible.length === 0;
    document.getElementById("token-count").textContent = String(tokens.filter(function (t) { return !t.revoked_at; }).length);
  }

  function loadTokens() {
    return BF.api("GET", "/api/v1/tokens?all=1").then(function (res) {
      tokens = (res.items || []).slice().sort(function (a, b) { return b.id - a.id; });
      renderTokens();
    });
  }

  function createToken(ev) {
    ev.preventDefault();
    var form = ev.target;
    formError("token-error", null);
    var name = form.elements.name.value.trim() || "api";
    var userId = parseInt(form.elements.user_id.value, 10);
    var body = { name: name };
    if (!isNaN(userId)) body.user_id = userId;
    var submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    BF.api("POST", "/api/v1/tokens", body)
      .then(function (t) {
        form.elements.name.value = "";
        showSecret("token-secret", "“" + t.name + "” for " + userName(t.user_id), t.token);
        return Promise.all([loadTokens(), loadAudit(true)]);
      })
      .catch(function (err) { formError("token-error", err); })
      .then(function () { submit.disabled = false; });
  }

  function onTokenAction(ev) {
    var btn = ev.target.closest("button[data-act=revoke]");
    if (!btn) return;
    var id = btn.closest("tr").dataset.id;
    var t = tokens.filter(function (x) { return String(x.id) === id; })[0];
    if (!t) return;
    BF.revokeToken(t, userName(t.user_id), btn)
      .then(function (revoked) {
        if (!revoked) return;
        return Promise.all([loadTokens(), loadAudit(true)]).then(function () {
          document.getElementById("tokens-title").focus();
        });
      })
      .catch(BF.showError);
  }

  /* ---- audit log -------------------------------------------------------------------------------- */

  function compact(detail) {
    if (!detail || typeof detail !== "object") return "";
    return Object.keys(detail)
      .map(function (k) {
        var v = detail[k];
        var text = typeof v === "string" ? v.replace(/\s+/g, " ") : JSON.stringify(v);
        if (text && text.length > 300) text = text.slice(0, 300) + "…";
        return k + "=" + text;
      })
      .join("  ");
  }

  function actionClass(action) {
    if (/failed|rate_limited|revoked|deleted|cancelled/.test(action)) return "act-bad";
    if (/^user_/.test(action)) return "act-user";
    if (/^token_/.test(action)) return "act-token";
    if (/^batch_|^command_/.test(action)) return "act-batch";
    if (/^schedule_/.test(action)) return "act-schedule";
    return "";
  }

  function detailCell(entry) {
    var text = compact(entry.detail);
    if (!text) return el("td", { class: "muted" }, "—");
    var box = el("div", { class: "ops-detail" }, text);
    if (text.length <= 140) return el("td", null, box);
    box.classList.add("is-clipped");
    box.id = "audit-detail-" + entry.id;
    var toggle = el("button", { type: "button", class: "btn btn-small ops-detail-toggle", "aria-expanded": "false", "aria-controls": box.id }, "more");
    toggle.addEventListener("click", function () {
      var open = box.classList.toggle("is-clipped") === false;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "less" : "more";
    });
    return el("td", null, box, toggle);
  }

  function auditRow(e) {
    return el(
      "tr",
      { dataset: { id: String(e.id), action: e.action } },
      el("td", { class: "ops-when", title: BF.fmtTime(e.at) }, BF.fmtTime(e.at), el("span", { class: "ops-cell-sub" }, BF.ago(e.at))),
      el("td", null, e.actor || ""),
      el("td", null, el("span", { class: "ops-action " + actionClass(e.action) }, e.action)),
      el("td", { class: "mono small" }, e.target || ""),
      el("td", { class: "ops-hide-sm mono small" }, e.address || ""),
      detailCell(e)
    );
  }

  function loadAudit(reset) {
    var mine = ++auditSeq;
    var p = new URLSearchParams();
    p.set("limit", String(AUDIT_PAGE));
    var action = document.getElementById("a-action").value;
    if (action) p.set("action", action);
    if (!reset && auditCursor) p.set("cursor", auditCursor);
    var more = document.getElementById("audit-more");
    more.disabled = true;
    return BF.api("GET", "/api/v1/audit?" + p.toString())
      .then(function (page) {
        if (mine !== auditSeq) return;
        var body = document.getElementById("audit-body");
        if (reset) {
          BF.clear(body);
          auditShown = 0;
        }
        (page.items || []).forEach(function (e) { body.appendChild(auditRow(e)); });
        auditShown += (page.items || []).length;
        auditCursor = page.next_cursor || null;
        document.getElementById("audit-total").textContent = String(page.total);
        document.getElementById("audit-empty").hidden = auditShown > 0;
        document.getElementById("audit-table").hidden = auditShown === 0;
        document.getElementById("audit-count").textContent = auditShown ? "Showing " + auditShown + " of " + page.total : "";
        more.hidden = !auditCursor;
      })
      .catch(function (err) {
        if (mine === auditSeq) BF.showError(err);
      })
      .then(function () { more.disabled = false; });
  }

  /* ---- wiring ------------------------------------------------------------------------------------- */

  function start() {
    document.getElementById("user-form").addEventListener("submit", addUser);
    document.getElementById("token-form").addEventListener("submit", createToken);
    var usersBody = document.getElementById("users-body");
    usersBody.addEventListener("click", onUserAction);
    usersBody.addEventListener("change", onRoleChange);
    document.getElementById("tokens-body").addEventListener("click", onTokenAction);
    document.getElementById("t-show-revoked").addEventListener("change", renderTokens);
    document.getElementById("a-action").addEventListener("change", function () { loadAudit(true); });
    document.getElementById("audit-filter").addEventListener("submit", function (ev) {
      ev.preventDefault();
      loadAudit(true);
    });
    document.getElementById("audit-refresh").addEventListener("click", function () { loadAudit(true); });
    document.getElementById("audit-more").addEventListener("click", function () { loadAudit(false); });
    document.querySelectorAll("[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () { BF.copy(document.getElementById(btn.dataset.copy)); });
    });
    document.querySelectorAll("[data-dismiss]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var box = document.getElementById(btn.dataset.dismiss);
        box.querySelector("input").value = ""; // the secret leaves the page
        box.hidden = true;
      });
    });

    loadUsers()
      .then(loadTokens) // owner names need the users
      .catch(BF.showError);
    loadAudit(true);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
