/* bashfleet account: one's own API tokens (create with the secret shown once, revoke) and
 * e-mail notification settings with the last delivery attempts; a password change. Any
 * signed-in user.
 * The secret goes into a read-only input as its value; nothing from the server is HTML. */
(function () {
  "use strict";

  var el = BF.el;
  var $ = function (id) { return document.getElementById(id); };
  var tokens = [];
  var shownId = null; // the token whose secret is on the page

  function formError(id, err) {
    var box = $(id);
    box.textContent = err ? err.message || String(err) : "";
    box.hidden = !err;
  }

  /* ---- tokens --------------------------------------------------------------------------- */

  function tokenRow(t) {
    var revoked = !!t.revoked_at;
    return el(
      "tr",
      { class: revoked ? "ops-token-revoked" : "", dataset: { id: String(t.id), name: t.name } },
      el("td", null, t.name, el("span", { class: "ops-cell-sub", title: BF.fmtTime(t.created_at) }, "created " + BF.ago(t.created_at))),
      el("td", null, el("code", { class: "ops-prefix" }, t.prefix + "…")),
      el("td", { class: "ops-hide-sm nowrap", title: BF.fmtTime(t.last_used_at) }, t.last_used_at ? BF.ago(t.last_used_at) : el("span", { class: "muted" }, "never")),
      el("td", null, el("span", { class: "badge " + (revoked ? "ops-state-revoked" : "ops-state-active"), title: revoked ? BF.fmtTime(t.revoked_at) : null }, revoked ? "revoked" : "active")),
      el("td", { class: "num" }, revoked ? null : el("button", { type: "button", class: "btn btn-small btn-danger", dataset: { act: "revoke" }, "aria-label": "Revoke token " + t.name + " (" + t.prefix + ")" }, "Revoke"))
    );
  }

  function renderTokens() {
    var showRevoked = $("t-show-revoked").checked;
    var visible = tokens.filter(function (t) { return showRevoked || !t.revoked_at; });
    var body = BF.clear($("tokens-body"));
    visible.forEach(function (t) { body.appendChild(tokenRow(t)); });
    $("tokens-empty").hidden = visible.length > 0;
    $("tokens-table").hidden = visible.length === 0;
    $("token-count").textContent = String(tokens.filter(function (t) { return !t.revoked_at; }).length);
  }

  function loadTokens() {
    return BF.api("GET", "/api/v1/tokens").then(function (res) {
      tokens = (res.items || []).slice().sort(function (a, b) { return b.id - a.id; });
      renderTokens();
    });
  }

  function showSecret(t) {
    shownId = t.id;
    $("token-secret-name").textContent = "“" + t.name + "”";
    var input = $("token-secret-value");
    input.value = t.token;
    $("token-secret").hidden = false;
    input.focus();
    input.select();
  }

  function createToken(ev) {
    ev.preventDefault();
    var form = ev.target;
    formError("token-error", null);
    var submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    BF.api("POST", "/api/v1/tokens", { name: form.elements.name.value.trim() || "api" })
      .then(function (t) {
        form.elements.name.value = "";
        showSecret(t);
        return loadTokens();
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
    BF.revokeToken(t, null, btn)
      .then(function (revoked) {
        if (!revoked) return;
        if (t.id === shownId) hideSecret(); // a dead secret is not worth copying
        return loadTokens().then(function () { $("tokens-title").focus(); });
      })
      .catch(BF.showError);
  }

  function hideSecret() {
    shownId = null;
    $("token-secret-value").value = ""; // the secret leaves the page
    $("token-secret").hidden = true;
  }

  /* ---- e-mail --------------------------------------------------------------------------- */

  function eventBoxes() {
    return Array.prototype.slice.call($("notify-form").querySelectorAll("input[name=events]"));
  }

  function deliveryRow(d) {
    return el(
      "tr",
      { dataset: { event: d.event } },
      el("td", null, d.event.replace(/_/g, " ")),
      el("td", { class: "num" }, String(d.attempt)),
      el("td", null, d.error ? el("span", { class: "error" }, d.error) : "sent"),
      el("td", { class: "nowrap", title: BF.fmtTime(d.at) }, BF.fmtTime(d.at), el("span", { class: "ops-cell-sub" }, BF.ago(d.at)))
    );
  }

  function showSettings(s) {
    $("n-email").value = s.email || "";
    eventBoxes().forEach(function (box) { box.checked = (s.events || []).indexOf(box.value) >= 0; });
    $("smtp-notice").hidden = !!s.smtp_configured;
    var rows = s.deliveries || [];
    var body = BF.clear($("deliveries-body"));
    rows.forEach(function (d) { body.appendChild(deliveryRow(d)); });
    $("deliveries-table").hidden = rows.length === 0;
    $("deliveries-empty").hidden = rows.length > 0;
  }

  function loadSettings() {
    return BF.api("GET", "/api/v1/session/notify").then(showSettings);
  }

  function saveSettings(ev) {
    ev.preventDefault();
    formError("notify-error", null);
    var events = eventBoxes().filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    var save = $("notify-save");
    save.disabled = true;
    BF.api("PUT", "/api/v1/session/notify", { email: $("n-email").value.trim(), events: events })
      .then(function (s) {
        showSettings(s);
        BF.toast(s.email ? "Saved: mail goes to " + s.email : "Saved: no mail", "ok");
      })
      .catch(function (err) {
        formError("notify-error", err); // what was typed stays, so it can be corrected
        $("n-email").focus();
      })
      .then(function () { save.disabled = false; });
  }

  /* ---- password ------------------------------------------------------------------------ */

  function changePassword(ev) {
    ev.preventDefault();
    formError("password-error", null);
    var old = $("p-old").value, fresh = $("p-new").value;
    if (fresh.length < 8) {
      formError("password-error", "The new password needs at least 8 characters.");
      $("p-new").focus();
      return;
    }
    if (fresh !== $("p-again").value) {
      formError("password-error", "The two new passwords differ.");
      $("p-again").focus();
      return;
    }
    var save = $("password-save");
    save.disabled = true;
    BF.api("POST", "/api/v1/session/password", { old_password: old, new_password: fresh })
      .then(function (res) {
        // this session goes on under a new cookie, with a new CSRF token
        var meta = document.querySelector('meta[name="csrf-token"]');
        if (meta && res && res.csrf_token) meta.setAttribute("content", res.csrf_token);
        $("password-form").reset();
        BF.toast("Password changed; your other sessions were logged out", "ok");
      })
      .catch(function (err) {
        formError("password-error", err);
        $("p-old").focus();
      })
      .then(function () { save.disabled = false; });
  }

  /* ---- wiring ----------------------------------------------------------------------------- */

  function start() {
    $("mcp-url").textContent = location.origin + "/mcp";
    $("token-form").addEventListener("submit", createToken);
    $("tokens-body").addEventListener("click", onTokenAction);
    $("t-show-revoked").addEventListener("change", renderTokens);
    document.querySelector("[data-copy=token-secret-value]").addEventListener("click", function () {
      BF.copy($("token-secret-value"));
    });
    document.querySelector("[data-dismiss=token-secret]").addEventListener("click", function () {
      hideSecret();
      $("t-name").focus();
    });
    $("notify-form").addEventListener("submit", saveSettings);
    $("password-form").addEventListener("submit", changePassword);
    loadTokens().catch(BF.showError);
    loadSettings().catch(BF.showError);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
