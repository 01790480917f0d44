/* bashfleet: a workspace's files: browse a folder, download a file or folder, upload a file
 * or an archive (with progress). Names from the server are only ever text; links point at
 * this origin's API with encoded parameters. */
(function () {
  "use strict";
  var ws = document.body.dataset.workspace || "default";
  var api = "/api/v1/workspaces/" + encodeURIComponent(ws);
  var path = new URLSearchParams(location.search).get("path") || "";
  var body = document.getElementById("files-body");
  var errorEl = document.getElementById("files-error");

  function join(a, b) { return a ? a + "/" + b : b; }
  function fileUrl(p) { return api + "/files?path=" + encodeURIComponent(p); }

  function go(p) {
    path = p;
    history.replaceState(null, "", location.pathname + (p ? "?path=" + encodeURIComponent(p) : ""));
    load();
  }

  function crumbs() {
    var nav = BF.clear(document.getElementById("crumbs"));
    var parts = path ? path.split("/") : [];
    nav.appendChild(BF.el("a", { href: "#", onclick: function (e) { e.preventDefault(); go(""); } }, ws));
    parts.forEach(function (name, i) {
      var to = parts.slice(0, i + 1).join("/");
      nav.appendChild(document.createTextNode(" / "));
      nav.appendChild(BF.el("a", { href: "#", onclick: function (e) { e.preventDefault(); go(to); } }, name));
    });
    document.getElementById("download-folder").setAttribute("href", fileUrl(path));
  }

  function row(e) {
    var p = join(path, e.name);
    var name;
    if (e.type === "dir") {
      name = BF.el("a", { href: "#", class: "mono", onclick: function (ev) { ev.preventDefault(); go(p); } }, e.name + "/");
    } else if (e.type === "file") {
      name = BF.el("a", { href: fileUrl(p), download: "", class: "mono" }, e.name);
    } else {
      name = BF.el("span", { class: "mono" }, e.name + (e.target ? " → " + e.target : ""));
    }
    return BF.el(
      "tr",
      { dataset: { type: e.type } },
      BF.el("td", null, name),
      BF.el("td", null, e.type),
      BF.el("td", { class: "num" }, e.type === "file" ? BF.fmtBytes(e.size) : ""),
      BF.el("td", null, BF.fmtTime(e.mtime))
    );
  }

  function load() {
    crumbs();
    errorEl.hidden = true;
    BF.api("GET", api + "/tree?path=" + encodeURIComponent(path)).then(function (t) {
      BF.clear(body);
      t.entries.forEach(function (e) { body.appendChild(row(e)); });
      document.getElementById("files-empty").hidden = t.entries.length > 0;
      document.getElementById("files-truncated").hidden = !t.truncated;
    }, function (err) {
      BF.clear(body);
      errorEl.textContent = err.message;
      errorEl.hidden = false;
    });
    BF.api("GET", api + "/usage").then(function (u) {
      document.getElementById("usage").textContent =
        "Folder " + BF.fmtBytes(u.workspace_bytes) + " · stored output " + BF.fmtBytes(u.output_bytes) +
        " · artifacts " + BF.fmtBytes(u.artifact_bytes) + " (" + u.batches + " batches)";
    }, function () {});
  }

  var form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = document.getElementById("upload-file").files[0];
      var status = document.getElementById("upload-status");
      var bar = document.getElementById("upload-progress");
      if (!file) { status.textContent = "Choose a file first."; return; }
      var unpack = document.getElementById("upload-unpack").checked && /\.(tar\.gz|tgz|tar|zip)$/i.test(file.name);
      var q = "?path=" + encodeURIComponent(path) + (unpack ? "" : "&format=file&name=" + encodeURIComponent(file.name));
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", api + "/files" + q);
      xhr.setRequestHeader("X-CSRF-Token", BF.csrf());
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      };
      xhr.onload = function () {
        bar.hidden = true;
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        if (xhr.status === 201 && data) {
          status.textContent = "Uploaded: " + data.files + " file(s), " + BF.fmtBytes(data.bytes) + ".";
          load();
        } else {
          status.textContent = "Refused: " + ((data && data.message) || xhr.statusText || "error");
        }
      };
      xhr.onerror = function () { bar.hidden = true; status.textContent = "The upload failed (network)."; };
      bar.value = 0;
      bar.hidden = false;
      status.textContent = "Uploading…";
      xhr.send(file);
    });
  }

  document.getElementById("ws-switch").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = document.getElementById("ws-input").value.trim();
    if (name) location.assign("/workspaces/" + encodeURIComponent(name) + "/files");
  });

  load();
})();
