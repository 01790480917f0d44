/* The dependency graph as SVG (window.BF.Graph), shared by the new-batch page (the plan
 * from POST /classify) and the batch view (from each command's `needs`).
 *
 *   var g = BF.Graph.draw(svg, nodes, edges, {maxNodes: 1500});
 *     nodes: [{index, command, cls, level, title}]    (index is 0-based; labels say #index+1,
 *            as every reason from the server does)
 *     edges: [{before, after, reason}]
 *   g.setStatus(index, status)   colours a node's outline by status (batch view)
 *   g.highlight(index | null)    marks one node
 *
 * Layered left to right by `level`; a level with many nodes wraps into several columns so
 * the drawing stays readable with thousands of statements. Every label is a text node;
 * positions and sizes are SVG attributes (no inline style), colours come from batch.css.
 */
(function () {
  "use strict";
  var BF = (window.BF = window.BF || {});
  var NS = "http://www.w3.org/2000/svg";

  var NODE_W = 176;
  var NODE_H = 26;
  var COL_W = 226;
  var ROW_H = 34;
  var PAD = 12;
  var PER_COL = 30; // nodes per column before a level wraps
  var LABEL_CHARS = 21;

  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    if (attrs) {
      for (var k in attrs) {
        if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, String(attrs[k]));
      }
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function truncate(text, n) {
    text = String(text || "").replace(/\s+/g, " ").trim();
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  /* level of each command from its `needs` (needs point at earlier indices). */
  function levelsFromNeeds(commands) {
    var byIndex = {};
    commands.forEach(function (c) { byIndex[c.index] = c; });
    var memo = {};
    function level(i, depth) {
      if (memo[i] !== undefined) return memo[i];
      var c = byIndex[i];
      var lv = 0;
      if (c && c.needs && depth < 10000) {
        for (var j = 0; j < c.needs.length; j++) {
          var n = c.needs[j];
          if (n < i && byIndex[n]) lv = Math.max(lv, level(n, depth + 1) + 1);
        }
      }
      memo[i] = lv;
      return lv;
    }
    var out = {};
    commands
      .slice()
      .sort(function (a, b) { return a.index - b.index; })
      .forEach(function (c) { out[c.index] = level(c.index, 0); });
    return out;
  }

  function draw(svg, nodes, edges, opts) {
    opts = opts || {};
    var maxNodes = opts.maxNodes || 1500;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.classList.add("graph");
    var shown = nodes.slice(0, maxNodes);
    var api = {
      shown: shown.length,
      total: nodes.length,
      nodes: {},
      setStatus: function (index, status) {
        var g = api.nodes[index];
        if (g && g.getAttribute("data-status") !== status) g.setAttribute("data-status", status || "");
      },
      highlight: function (index) {
        var prev = svg.querySelector(".node.current");
        if (prev) prev.classList.remove("current");
        var g = api.nodes[index];
        if (g) g.classList.add("current");
      },
    };
    if (!shown.length) {
      svg.setAttribute("width", 260);
      svg.setAttribute("height", 40);
      svg.setAttribute("viewBox", "0 0 260 40");
      svg.appendChild(svgEl("text", { x: PAD, y: 24, class: "graph-empty" }, opts.empty || "Nothing to draw yet."));
      return api;
    }

    // columns: levels in order, each wrapping every PER_COL nodes
    var byLevel = {};
    shown.forEach(function (n) {
      var lv = n.level || 0;
      (byLevel[lv] = byLevel[lv] || []).push(n);
    });
    var levels = Object.keys(byLevel).map(Number).sort(function (a, b) { return a - b; });
    var pos = {};
    var col = 0;
    var maxRows = 0;
    levels.forEach(function (lv) {
      var list = byLevel[lv].sort(function (a, b) { return a.index - b.index; });
      list.forEach(function (n, i) {
        var row = i % PER_COL;
        pos[n.index] = { x: PAD + (col + Math.floor(i / PER_COL)) * COL_W, y: PAD + row * ROW_H };
        maxRows = Math.max(maxRows, row + 1);
      });
      col += Math.ceil(list.length / PER_COL);
    });
    var width = PAD * 2 + (col - 1) * COL_W + NODE_W;
    var height = PAD * 2 + (maxRows - 1) * ROW_H + NODE_H;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "dependency graph: " + nodes.length + " commands, " + edges.length + " dependencies");

    var frag = document.createDocumentFragment();
    var defs = svgEl("defs");
    var marker = svgEl("marker", {
      id: (svg.id || "graph") + "-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    });
    marker.appendChild(svgEl("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }));
    defs.appendChild(marker);
    frag.appendChild(defs);

    var edgeLayer = svgEl("g", { class: "edges" });
    edges.forEach(function (e) {
      var a = pos[e.before];
      var b = pos[e.after];
      if (!a || !b) return;
      var x1 = a.x + NODE_W;
      var y1 = a.y + NODE_H / 2;
      var x2 = b.x - 2;
      var y2 = b.y + NODE_H / 2;
      var dx = Math.max(24, (x2 - x1) / 2);
      var d = "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
      var g = svgEl("g", { class: "edge", "data-before": e.before, "data-after": e.after });
      g.appendChild(svgEl("title", null, e.reason || "#" + (e.after + 1) + " waits for #" + (e.before + 1)));
      g.appendChild(svgEl("path", { d: d, class: "hit" }));
      g.appendChild(svgEl("path", { d: d, class: "line", "marker-end": "url(#" + (svg.id || "graph") + "-arrow)" }));
      edgeLayer.appendChild(g);
    });
    frag.appendChild(edgeLayer);

    var nodeLayer = svgEl("g", { class: "nodes" });
    shown.forEach(function (n) {
      var p = pos[n.index];
      var g = svgEl("g", {
        class: "node k-" + (n.cls || "unknown"),
        "data-index": n.index,
        "data-class": n.cls || "",
        transform: "translate(" + p.x + "," + p.y + ")",
      });
      if (n.status) g.setAttribute("data-status", n.status);
      g.appendChild(svgEl("title", null, n.title || "#" + (n.index + 1) + " " + n.cls + ": " + n.command));
      g.appendChild(svgEl("rect", { width: NODE_W, height: NODE_H, rx: 5, ry: 5 }));
      var label = svgEl("text", { x: 8, y: NODE_H / 2 + 4 });
      label.appendChild(svgEl("tspan", { class: "num" }, "#" + (n.index + 1) + " "));
      label.appendChild(document.createTextNode(truncate(n.command, LABEL_CHARS)));
      g.appendChild(label);
      nodeLayer.appendChild(g);
      api.nodes[n.index] = g;
    });
    frag.appendChild(nodeLayer);
    svg.appendChild(frag);
    if (opts.onSelect) {
      nodeLayer.addEventListener("click", function (ev) {
        var g = ev.target.closest ? ev.target.closest(".node") : null;
        if (g) opts.onSelect(Number(g.getAttribute("data-index")));
      });
    }
    return api;
  }

  BF.Graph = { draw: draw, levelsFromNeeds: levelsFromNeeds, truncate: truncate, svgEl: svgEl };
})();
