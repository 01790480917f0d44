/* The batch timeline as SVG (window.BF.Gantt): one bar per command from started_at to
 * finished_at (running bars grow to now), in lanes per executor and class, greedily packed
 * so concurrent commands stack, with a time axis. Bars are labelled #index+1 and carry a
 * <title> with the command, status and duration.
 *
 *   var g = new BF.Gantt(svg, {onSelect: function (index) {...}});
 *   g.update(commands, nowMs)   commands: [{index, command, cls, executor, status,
 *                                           start (ms), end (ms or null), duration_s}]
 */
(function () {
  "use strict";
  var BF = (window.BF = window.BF || {});
  var svgEl = BF.Graph.svgEl;

  var LABEL_W = 150;
  var AXIS_H = 24;
  var TRACK_H = 18;
  var TRACK_GAP = 3;
  var LANE_PAD = 6;
  var RIGHT_PAD = 16;
  var CLASS_ORDER = { safe: 0, conditional: 1, sequential: 2, dangerous: 3 };
  var STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];

  function rank(cls) {
    return cls in CLASS_ORDER ? CLASS_ORDER[cls] : 9;
  }

  function fmtTick(s, step) {
    if (step >= 60 && s >= 60) {
      var m = s / 60;
      return (m >= 60 ? (m / 60).toFixed(m % 60 ? 1 : 0) + " h" : (m % 1 ? m.toFixed(1) : m) + " min");
    }
    var digits = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3;
    return s.toFixed(digits) + " s";
  }

  function Gantt(svg, opts) {
    this.svg = svg;
    this.opts = opts || {};
    this.width = 0;
    var self = this;
    if (this.opts.onSelect) {
      svg.addEventListener("click", function (ev) {
        var g = ev.target.closest ? ev.target.closest(".bar") : null;
        if (g) self.opts.onSelect(Number(g.getAttribute("data-index")));
      });
    }
    if (window.ResizeObserver && svg.parentNode) {
      new ResizeObserver(function (entries) {
        var w = Math.floor(entries[0].contentRect.width);
        if (w && w !== self.width) {
          self.width = w;
          if (self.last) self.update(self.last.commands, self.last.now);
        }
      }).observe(svg.parentNode);
    }
  }

  Gantt.prototype.update = function (commands, now) {
    this.last = { commands: commands, now: now };
    var svg = this.svg;
    if (!this.width) this.width = Math.max(400, Math.floor(svg.parentNode.clientWidth || 800));
    var width = this.width;
    var started = commands.filter(function (c) { return c.start; });
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!started.length) {
      svg.setAttribute("width", width);
      svg.setAttribute("height", 40);
      svg.setAttribute("viewBox", "0 0 " + width + " 40");
      svg.appendChild(svgEl("text", { x: 8, y: 24, class: "graph-empty" }, "No command has started yet."));
      return;
    }
    var t0 = Infinity;
    var t1 = -Infinity;
    started.forEach(function (c) {
      c._end = c.end || (c.status === "running" ? Math.max(now, c.start) : c.start + (c.duration_s || 0) * 1000);
      if (c._end < c.start) c._end = c.start;
      t0 = Math.min(t0, c.start);
      t1 = Math.max(t1, c._end);
    });
    var span = Math.max((t1 - t0) / 1000, 0.05);
    var plotW = Math.max(100, width - LABEL_W - RIGHT_PAD);
    var scale = plotW / span; // px per second

    // lanes: executor x class, packed into tracks
    var lanes = {};
    started.forEach(function (c) {
      var key = (c.executor || "?") + " · " + (c.cls || "?");
      (lanes[key] = lanes[key] || { key: key, executor: c.executor || "?", cls: c.cls || "?", items: [] }).items.push(c);
    });
    var laneList = Object.keys(lanes).map(function (k) { return lanes[k]; });
    laneList.sort(function (a, b) {
      if (a.executor !== b.executor) return a.executor < b.executor ? 1 : -1; // local before docker
      return rank(a.cls) - rank(b.cls);
    });
    var y = AXIS_H;
    laneList.forEach(function (lane) {
      lane.items.sort(function (a, b) { return a.start - b.start || a.index - b.index; });
      var ends = [];
      lane.items.forEach(function (c) {
        var t = 0;
        while (t < ends.length && ends[t] > c.start) t++;
        ends[t] = c._end;
        c._track = t;
      });
      lane.y = y;
      lane.h = LANE_PAD * 2 + ends.length * (TRACK_H + TRACK_GAP) - TRACK_GAP;
      y += lane.h;
    });
    var height = y + 4;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "timeline of " + started.length + " commands over " + BF.fmtDuration(span));

    var frag = document.createDocumentFragment();
    // lane backgrounds and labels
    laneList.forEach(function (lane, i) {
      var g = svgEl("g", { class: "lane k-" + lane.cls + " x-" + lane.executor + (i % 2 ? " odd" : "") });
      g.appendChild(svgEl("rect", { class: "lane-bg", x: 0, y: lane.y, width: width, height: lane.h }));
      g.appendChild(svgEl("text", { class: "lane-label", x: 6, y: lane.y + Math.min(lane.h / 2 + 4, 18) }, lane.key));
      frag.appendChild(g);
    });
    // axis
    var step = STEPS[STEPS.length - 1];
    for (var s = 0; s < STEPS.length; s++) {
      if (span / STEPS[s] <= Math.max(2, Math.floor(plotW / 90))) {
        step = STEPS[s];
        break;
      }
    }
    var axis = svgEl("g", { class: "axis" });
    for (var t = 0; t <= span + 1e-9; t += step) {
      var x = LABEL_W + t * scale;
      axis.appendChild(svgEl("line", { x1: x, x2: x, y1: AXIS_H - 4, y2: height }));
      axis.appendChild(svgEl("text", { x: x + 3, y: AXIS_H - 8 }, fmtTick(t, step)));
    }
    frag.appendChild(axis);
    // bars
    var bars = svgEl("g", { class: "bars" });
    started.forEach(function (c) {
      var lane = lanes[(c.executor || "?") + " · " + (c.cls || "?")];
      var bx = LABEL_W + ((c.start - t0) / 1000) * scale;
      var bw = Math.max(2, ((c._end - c.start) / 1000) * scale);
      var by = lane.y + LANE_PAD + c._track * (TRACK_H + TRACK_GAP);
      var g = svgEl("g", {
        class: "bar k-" + c.cls + " x-" + (c.executor || "unknown") + " st-" + c.status,
        "data-index": c.index,
        "data-status": c.status,
      });
      var dur = c.status === "running" ? (c._end - c.start) / 1000 : c.duration_s !== null && c.duration_s !== undefined ? c.duration_s : (c._end - c.start) / 1000;
      g.appendChild(svgEl("title", null, "#" + (c.index + 1) + " " + c.command + "\n" + c.status + " · " + c.cls + " on " + c.executor + " · " + BF.fmtDuration(dur)));
      g.appendChild(svgEl("rect", { x: bx, y: by, width: bw, height: TRACK_H, rx: 3, ry: 3 }));
      if (bw >= 26) g.appendChild(svgEl("text", { x: bx + 4, y: by + TRACK_H - 5 }, "#" + (c.index + 1)));
      bars.appendChild(g);
    });
    frag.appendChild(bars);
    svg.appendChild(frag);
  };

  BF.Gantt = Gantt;
})();
