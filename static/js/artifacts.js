/* bashfleet: the batch page's artifacts (files kept when the batch ended) and a link to
 * its workspace's files. Names are put in as text; links point at this origin only. */
(function () {
  "use strict";
  var batchId = document.body.dataset.batchId;
  var list = document.getElementById("artifacts-list");
  var note = document.getElementById("artifacts-note");
  var filesLink = document.getElementById("workspace-files");
  if (!batchId || !list) return;
  var tries = 0;

  function load() {
    BF.api("GET", "/api/v1/batches/" + encodeURIComponent(batchId) + "/artifacts").then(function (a) {
      filesLink.setAttribute("href", "/workspaces/" + encodeURIComponent(a.workspace) + "/files");
      BF.clear(list);
      if (!a.patterns.length) {
        note.textContent = "This batch named no artifacts (the API's `artifacts` globs).";
      } else if (a.collecting) {
        note.textContent = "Kept when the batch ends: " + a.patterns.join(", ");
      } else {
        note.textContent = a.items.length + " file(s) kept, matching " + a.patterns.join(", ");
      }
      a.items.forEach(function (item) {
        list.appendChild(
          BF.el(
            "li",
            { class: "artifact" },
            BF.el("a", { href: item.url, download: "", class: "mono" }, item.path),
            " ",
            BF.el("span", { class: "muted small", title: "sha256 " + item.sha256 }, BF.fmtBytes(item.size))
          )
        );
      });
      if (a.collecting && tries++ < 600) setTimeout(load, 2000);
    }, function (err) {
      note.textContent = "Artifacts unavailable: " + err.message;
    });
  }
  load();
})();
