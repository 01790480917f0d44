/* bashfleet: helpers shared by every page (window.BF).
 *
 * Rules every page follows:
 * - text from the server (commands, output, names, reasons) is only ever put into
 *   the page as text (textContent / BF.el children), never as HTML;
 * - state-changing requests go through BF.api, which sends the session's CSRF token;
 * - one Socket.IO connection per page (BF.socket()), shared by every component.
 */
(function () {
  "use strict";

  var BF = (window.BF = window.BF || {});

  BF.csrf = function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  BF.user = {
    id: parseInt(document.body.dataset.userId || "0", 10) || null,
    name: document.body.dataset.user || "",
    role: document.body.dataset.role || "",
  };
  var ROLES = { viewer: 1, operator: 2, admin: 3 };
  BF.can = function (role) {
    return (ROLES[BF.user.role] || 0) >= (ROLES[role] || 99);
  };

  /* ---- REST ---------------------------------------------------------------------- */

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
  ApiError.prototype = Object.create(Error.prototype);
  BF.ApiError = ApiError;

  /* BF.api("GET", "/api/v1/batches") -> Promise of the decoded JSON.
   * Rejects with BF.ApiError {status, code, message}; a 401 sends the user to /login. */
  BF.api = function (method, path, body) {
    var init = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = BF.csrf();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      function (res) {
        return res.text().then(function (text) {
          var data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (e) {
            data = null;
          }
          if (res.ok) return data;
          var code = (data && data.error) || "http_" + res.status;
          var message = (data && data.message) || res.statusText || "request failed";
          if (res.status === 401 && path !== "/api/v1/session") BF.toLogin();
          throw new ApiError(res.status, code, message);
        });
      },
      function () {
        throw new ApiError(0, "network", "cannot reach the server; is it running?");
      }
    );
  };

  BF.toLogin = function () {
    if (BF.leaving) return; // logging out: the logout handler decides where to go
    var here = location.pathname + location.search;
    location.assign("/login?next=" + encodeURIComponent(here));
  };

  /* ---- DOM ------------------------------------------------------------------------ */

  var SAFE_URL = /^(\/(?!\/)|#|https?:\/\/|mailto:)/i;

  /* BF.el("a", {class: "x", href: "/y", onclick: fn, dataset: {id: 1}}, "text", childNode)
   * Strings become text nodes. Event handlers must be functions; a URL attribute must be
   * a relative path, #fragment or http(s) URL (never javascript:). */
  BF.el = function (tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "class") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key === "text") node.textContent = value;
        else if (key.slice(0, 2) === "on") {
          if (typeof value !== "function") throw new Error("handler must be a function");
          node.addEventListener(key.slice(2), value);
        } else if (key === "href" || key === "src" || key === "action") {
          if (!SAFE_URL.test(String(value))) throw new Error("unsafe URL refused");
          node.setAttribute(key, value);
        } else if (value === true) node.setAttribute(key, "");
        else node.setAttribute(key, String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  };

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { append(node, c); });
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }

  BF.clear = function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  };

  BF.$ = function (selector, root) {
    return (root || document).querySelector(selector);
  };

  BF.toast = function (message, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = BF.el("div", { class: "toast toast-" + (kind || "info") }, String(message));
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, kind === "error" ? 8000 : 4000);
  };

  BF.showError = function (err) {
    BF.toast(err && err.message ? err.message : String(err), "error");
  };

  /* Copy a (read-only) input's value: the Clipboard API where the page may use it, else
   * select and execCommand; a toast says what happened. */
  /* BF.revokeToken(token, whose, button) -> Promise of true once revoked, false when the
   * confirm dialog was cancelled (the focus goes back to the button). */
  BF.revokeToken = function (t, whose, btn) {
    var who = whose ? " (" + whose + ")" : "";
    return BF.confirm("Revoke token “" + t.name + "”?", "Programs using " + t.prefix + "…" + who + " lose access at once. This cannot be undone.", "Revoke").then(function (ok) {
      if (!ok) {
        btn.focus();
        return false;
      }
      return BF.api("DELETE", "/api/v1/tokens/" + t.id).then(function () {
        BF.toast("Revoked " + t.name, "ok");
        return true;
      });
    });
  };

  BF.copy = function (input) {
    var text = input.value;
    function fallback() {
      input.focus();
      input.select();
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (e) {
        ok = false;
      }
      BF.toast(ok ? "Copied" : "Select the text and copy it with Ctrl+C", ok ? "ok" : "info");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { BF.toast("Copied to the clipboard", "ok"); }, fallback);
    } else fallback();
  };

  /* A confirmation in the page's <dialog id="confirm-dialog"> (templates/_confirm.html):
   * resolves true when the user confirms. Falls back to window.confirm without <dialog>. */
  BF.confirm = function (title, text, okLabel) {
    var dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    var ok = document.getElementById("confirm-ok");
    ok.textContent = okLabel || "Confirm";
    ok.className = "btn " + (/delete|revoke|disable/i.test(okLabel || "") ? "btn-danger" : "btn-primary");
    if (typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(title + "\n\n" + text));
    return new Promise(function (resolve) {
      dialog.returnValue = "";
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
  };

  /* ---- formatting ------------------------------------------------------------------ */

  BF.fmtDuration = function (s) {
    if (s === null || s === undefined) return "";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.round(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  };

  BF.fmtTime = function (iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleString();
  };

  BF.ago = function (iso) {
    if (!iso) return "";
    var s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (isNaN(s)) return "";
    if (s < 5) return "just now";
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  };

  BF.fmtBytes = function (n) {
    if (n === null || n === undefined) return "";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  };

  BF.classBadge = function (cls) {
    return BF.el("span", { class: "badge cls-" + (cls || "unknown") }, cls || "?");
  };

  BF.statusBadge = function (status) {
    return BF.el("span", { class: "badge st-" + (status || "unknown"), "data-status": status || "" }, (status || "?").replace("_", " "));
  };

  BF.FINAL = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "interrupted", "refused", "oom_killed", "rejected"];
  BF.isFinal = function (status) { return BF.FINAL.indexOf(status) >= 0; };

  /* ---- Socket.IO ------------------------------------------------------------------- */

  var sock = null;
  /* The page's one connection (session cookie auth, same origin). */
  BF.socket = function () {
    if (sock) return sock;
    sock = window.io({ transports: ["websocket", "polling"], reconnectionDelayMax: 5000 });
    var badge = document.getElementById("conn");
    function show(state, text) {
      if (!badge) return;
      badge.dataset.state = state;
      badge.textContent = text;
    }
    sock.on("connect", function () { show("live", "live"); });
    sock.on("disconnect", function (reason) {
      show("off", "offline");
      if (reason === "io server disconnect") {
        // the server cut us (logout elsewhere, role change): check the session
        BF.api("GET", "/api/v1/session").catch(function () { BF.toLogin(); });
      }
    });
    sock.on("connect_error", function () { show("off", "reconnecting"); });
    return sock;
  };

  /* Follow one batch: output exactly once (by byte offset), statuses newest-first by time.
   * handlers: output(msg), status(payload), batch(payload), ready(ack), error(err).
   * On every (re)connect it subscribes again with the offsets it already has, so a
   * reconnect resumes with nothing lost or repeated. */
  BF.followBatch = function (batchId, handlers) {
    var s = BF.socket();
    var offsets = {}; // command id -> {stdout: n, stderr: n}
    var stamps = {}; // command id -> time of the status shown
    function subscribe() {
      s.emit("subscribe", { batch_id: batchId, offsets: offsets }, function (ack) {
        if (!ack || ack.error) {
          if (handlers.error) handlers.error(ack || { error: "no_answer", message: "no answer" });
          return;
        }
        (ack.statuses || []).forEach(onStatus);
        if (handlers.ready) handlers.ready(ack);
      });
    }
    function onOutput(msg) {
      if (msg.batch_id !== batchId) return;
      var have = offsets[msg.command_id] || (offsets[msg.command_id] = { stdout: 0, stderr: 0 });
      var at = have[msg.stream] || 0;
      var end = msg.offset + msg.nbytes;
      if (end <= at) return; // seen already
      if (msg.offset > at && handlers.gap) handlers.gap(msg.command_id, msg.stream, at, msg.offset);
      have[msg.stream] = end;
      if (msg.data === undefined && msg.data_b64 !== undefined) {
        // not valid UTF-8: sent as base64 once; shown with U+FFFD where it is not text
        var raw = atob(msg.data_b64), bytes = new Uint8Array(raw.length);
        for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
        msg.data = new TextDecoder("utf-8").decode(bytes);
      }
      if (handlers.output) handlers.output(msg);
    }
    function onStatus(p) {
      if (p.batch_id !== batchId) return;
      if (stamps[p.command_id] !== undefined && stamps[p.command_id] > p.at) return;
      stamps[p.command_id] = p.at;
      if (handlers.status) handlers.status(p);
    }
    function onBatch(p) {
      if (p.batch_id === batchId && handlers.batch) handlers.batch(p);
    }
    s.on("command_output", onOutput);
    s.on("command_status", onStatus);
    s.on("batch_status", onBatch);
    s.on("connect", subscribe);
    if (s.connected) subscribe();
    return {
      offsets: offsets,
      stop: function () {
        s.off("command_output", onOutput);
        s.off("command_status", onStatus);
        s.off("batch_status", onBatch);
        s.off("connect", subscribe);
        s.emit("unsubscribe", { batch_id: batchId });
      },
    };
  };

  /* ---- page chrome ------------------------------------------------------------------- */

  document.addEventListener("DOMContentLoaded", function () {
    var logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", function () {
        BF.leaving = true;
        BF.api("DELETE", "/api/v1/session").then(
          function () { location.assign("/login"); },
          function () { location.assign("/login"); }
        );
      });
      BF.socket(); // every signed-in page is live (connection badge, metrics, scaling)
    }
  });
})();
