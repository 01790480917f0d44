/* bashfleet workspaces: the settings of every workspace the user may see. Everything the
 * server sends is shown as text (BF.el); its error messages appear in the form as they
 * come (the server checks every field). Secret values are sent once and never read back. */
(function () {
  "use strict";

  var el = BF.el;
  var $ = function (id) { return document.getElementById(id); };
  var CLASSES = ["safe", "conditional", "sequential", "dangerous"];
  // field, scale to the unit shown
  var LIMITS = [["cpus", 1], ["memory_bytes", 1048576], ["pids", 1], ["disk_bytes", 1048576], ["timeout_s", 1]];

  var current = null; // the workspace being edited (from the API), or {name} when new
  var deleted = {}; // secret names to delete on save

  function ownerText(owner) {
    if (!owner) return "shared";
    return owner.user ? "user " + owner.user : "team " + owner.team;
  }

  // the disk a workspace uses (its folder, its batches' stored output and artifacts), as
  // text, filled in when GET /usage answers
  function usage(name) {
    var cell = el("td", { class: "ws-usage", dataset: { name: name } }, "…");
    BF.api("GET", "/api/v1/workspaces/" + encodeURIComponent(name) + "/usage").then(function (u) {
      var total = u.workspace_bytes + u.output_bytes + u.artifact_bytes;
      cell.textContent = BF.fmtBytes(total) + (u.workspace_bytes_partial ? "+" : "");
      cell.title = "files " + BF.fmtBytes(u.workspace_bytes) + " · output " + BF.fmtBytes(u.output_bytes) +
        " · artifacts " + BF.fmtBytes(u.artifact_bytes) + " · " + u.batches + " batches";
    }).catch(function () { cell.textContent = "?"; });
    return cell;
  }

  function load() {
    return BF.api("GET", "/api/v1/workspaces").then(function (data) {
      var body = BF.clear($("ws-body"));
      data.items.forEach(function (w) {
        var edit = el("button", { type: "button", class: "btn btn-small", dataset: { name: w.name }, "aria-label": "Settings of " + w.name }, w.may_change ? "Edit" : "View");
        edit.addEventListener("click", function () { open(w.name); });
        body.appendChild(
          el("tr", { dataset: { name: w.name } },
            el("td", { class: "mono" }, w.name),
            el("td", null, ownerText(w.owner)),
            el("td", { class: "mono ops-hide-sm" }, w.image || "(default)"),
            el("td", null, w.network),
            el("td", { class: "ops-hide-sm" }, String(w.secrets.length)),
            usage(w.name),
            el("td", null, edit))
        );
      });
      $("ws-count").textContent = String(data.items.length);
      $("ws-empty").hidden = data.items.length > 0;
    }).catch(BF.showError);
  }

  function images(selected) {
    return BF.api("GET", "/api/v1/images").then(function (data) {
      var select = BF.clear($("ws-image"));
      select.appendChild(el("option", { value: "" }, "(default image)"));
      data.items.forEach(function (i) {
        var label = i.image + (i.present ? "" : " (missing here)") + (i.profile ? " · " + i.profile : "");
        select.appendChild(el("option", { value: i.image }, label));
      });
      if (selected && !data.items.some(function (i) { return i.image === selected; })) {
        select.appendChild(el("option", { value: selected }, selected));
      }
      select.value = selected || "";
    });
  }

  function fill(w) {
    current = w;
    deleted = {};
    $("ws-form-title").textContent = "Settings of " + w.name;
    $("ws-network").value = w.network || "none";
    $("ws-env").value = Object.keys(w.env || {}).map(function (k) { return k + "=" + w.env[k]; }).join("\n");
    secrets(w.secrets || []);
    var limits = BF.clear($("ws-limits-body"));
    CLASSES.forEach(function (cls) {
      var row = el("tr", null, el("th", { scope: "row" }, cls));
      var set = (w.limits || {})[cls] || {};
      LIMITS.forEach(function (f) {
        var id = "ws-limit-" + cls + "-" + f[0];
        var value = set[f[0]] === undefined ? "" : String(set[f[0]] / f[1]);
        row.appendChild(el("td", null,
          el("label", { for: id, class: "visually-hidden" }, cls + " " + f[0]),
          el("input", { id: id, type: "number", min: "0", step: "any", value: value, dataset: { cls: cls, field: f[0] } })));
      });
      limits.appendChild(row);
    });
    var owner = w.owner || null;
    $("ws-owner-kind").value = !owner ? "shared" : owner.user ? "user" : "team";
    $("ws-owner-name").value = !owner ? "" : owner.user || owner.team;
    var editable = w.may_change !== false;
    Array.prototype.forEach.call($("ws-form").elements, function (e) { if (e.id !== "ws-close") e.disabled = !editable; });
    error("");
    $("ws-form-card").hidden = false;
    return images(w.image);
  }

  function secrets(names) {
    var list = BF.clear($("ws-secrets"));
    names.forEach(function (name) {
      var del = el("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": "Delete secret " + name }, "Delete");
      var item = el("li", { dataset: { name: name } }, el("code", null, name), " ", del);
      del.addEventListener("click", function () {
        deleted[name] = true;
        item.classList.add("is-deleted");
        del.disabled = true;
        del.textContent = "deleted on save";
      });
      list.appendChild(item);
    });
    if (!names.length) list.appendChild(el("li", { class: "muted" }, "none"));
  }

  function open(name) {
    return BF.api("GET", "/api/v1/workspaces/" + encodeURIComponent(name)).then(fill).catch(BF.showError);
  }

  function error(message) {
    $("ws-error").textContent = message;
    $("ws-error").hidden = !message;
  }

  function changes() {
    var env = {};
    $("ws-env").value.split("\n").forEach(function (line) {
      if (!line.trim()) return;
      var at = line.indexOf("=");
      if (at < 1) throw new Error("variables: '" + line.slice(0, 40) + "' is not NAME=value");
      env[line.slice(0, at).trim()] = line.slice(at + 1);
    });
    var limits = {};
    Array.prototype.forEach.call($("ws-limits-body").querySelectorAll("input"), function (input) {
      if (input.value === "") return;
      var scale = LIMITS.filter(function (f) { return f[0] === input.dataset.field; })[0][1];
      var cls = input.dataset.cls;
      limits[cls] = limits[cls] || {};
      var value = Number(input.value) * scale;
      limits[cls][input.dataset.field] = scale > 1 || input.dataset.field === "pids" ? Math.round(value) : value;
    });
    var body = { image: $("ws-image").value, network: $("ws-network").value, env: env, limits: limits };
    var secretChanges = {};
    Object.keys(deleted).forEach(function (name) { secretChanges[name] = null; });
    var name = $("ws-secret-name").value.trim();
    if (name) secretChanges[name] = $("ws-secret-value").value;
    if (Object.keys(secretChanges).length) body.secrets = secretChanges;
    var kind = $("ws-owner-kind").value;
    var owner = kind === "shared" ? {} : {};
    if (kind !== "shared") owner[kind] = $("ws-owner-name").value.trim();
    if (ownerText(kind === "shared" ? null : owner) !== ownerText(current.owner || null)) body.owner = owner;
    return body;
  }

  $("ws-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var body;
    try {
      body = changes();
    } catch (e) {
      error(e.message);
      return;
    }
    $("ws-save").disabled = true;
    BF.api("PUT", "/api/v1/workspaces/" + encodeURIComponent(current.name), body)
      .then(function (w) {
        $("ws-secret-name").value = "";
        $("ws-secret-value").value = "";
        BF.toast("Saved " + w.name);
        return fill(w).then(load);
      })
      .catch(function (e) { error(e.message || String(e)); })
      .then(function () { $("ws-save").disabled = false; });
  });

  $("ws-close").addEventListener("click", function () { $("ws-form-card").hidden = true; });

  var newForm = $("ws-new-form");
  if (newForm) {
    newForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = $("ws-new-name").value.trim();
      if (!name) return;
      fill({ name: name, network: "none", env: {}, secrets: [], limits: {}, owner: { user: BF.user.name }, image: null, may_change: true });
    });
  }

  load();
})();
