/* One command's live output (window.BF.LogView): ANSI rendered safely (BF.Ansi, text
 * nodes and spans only), stderr marked, and a BOUNDED window of lines.
 *
 *   var v = new BF.LogView({index: 3, maxLines: 5000, stdoutUrl: "...", stderrUrl: "..."});
 *   v.write("stdout", text)        any time, attached or not (cheap: no DOM)
 *   v.gap("stdout", from, to)      bytes that were never streamed (older than the backlog)
 *   v.attach(parent) / v.detach()  the DOM exists only while the command is expanded
 *
 * The model keeps at most maxLines lines; the DOM is brought up to date once per animation
 * frame (BF.frame): new lines go in as one fragment, old ones leave in one Range delete,
 * so a 100,000-line flood costs a few frames, not 100,000 reflows. Auto-scroll follows
 * the end until the user scrolls up, and resumes when they scroll back down.
 */
(function () {
  "use strict";
  var BF = (window.BF = window.BF || {});

  /* ---- one requestAnimationFrame for every component of the page ---------------------- */
  var queued = new Set();
  var pending = false;
  function runFrame() {
    pending = false;
    var jobs = Array.from(queued);
    queued.clear();
    for (var i = 0; i < jobs.length; i++) {
      try {
        jobs[i]();
      } catch (e) {
        if (window.console) console.error(e);
      }
    }
  }
  BF.frame = function (fn) {
    queued.add(fn);
    if (!pending) {
      pending = true;
      requestAnimationFrame(runFrame);
    }
  };

  var DEFAULT_MAX = 5000;

  function LogView(opts) {
    this.opts = opts || {};
    this.max = this.opts.maxLines || DEFAULT_MAX;
    this.ansi = { stdout: new BF.Ansi(), stderr: new BF.Ansi() };
    this.lines = []; // {s: stream, p: [pieces], n: pieces rendered, el}
    this.open = { stdout: null, stderr: null }; // the unfinished last line per stream
    this.hidden = 0; // lines dropped from the window
    this.removeDom = 0; // rendered lines dropped since the last frame (oldest DOM children)
    this.grown = new Set(); // rendered lines that got more text
    this.fresh = 0; // lines not yet in the DOM (always the newest ones)
    this.skipped = { stdout: 0, stderr: 0 }; // bytes never streamed to us
    this.bytes = { stdout: 0, stderr: 0 };
    this.follow = true;
    this.root = null;
    this._flush = this.flush.bind(this);
    this._build();
  }

  LogView.prototype._build = function () {
    var self = this;
    var o = this.opts;
    var idx = o.index !== undefined ? String(o.index) : "";
    this.note = BF.el("p", { class: "log-note", hidden: true, dataset: { index: idx } });
    this.pre = BF.el("pre", {
      class: "log",
      tabindex: "0",
      role: "log",
      "aria-live": "off",
      "aria-label": idx ? "output of command #" + (o.index + 1) : "command output",
      dataset: { index: idx },
    });
    this.jump = BF.el("button", { type: "button", class: "btn btn-small log-jump", hidden: true }, "↓ Follow output");
    this.jump.addEventListener("click", function () {
      self.follow = true;
      self.jump.hidden = true;
      self.pre.scrollTop = self.pre.scrollHeight;
    });
    this.pre.addEventListener("scroll", function () {
      var atEnd = self.pre.scrollTop + self.pre.clientHeight >= self.pre.scrollHeight - 8;
      if (atEnd !== self.follow) {
        self.follow = atEnd;
        self.jump.hidden = atEnd;
      }
    });
    var links = [];
    if (o.stdoutUrl) links.push(BF.el("a", { class: "btn btn-small", href: o.stdoutUrl, download: "" }, "Download stdout"));
    if (o.stderrUrl) links.push(BF.el("a", { class: "btn btn-small", href: o.stderrUrl, download: "" }, "Download stderr"));
    this.meta = BF.el("span", { class: "log-meta muted small" });
    this.root = BF.el(
      "div",
      { class: "logview", dataset: { index: idx } },
      BF.el("div", { class: "log-bar row" }, links, this.meta, this.jump),
      this.note,
      BF.el("div", { class: "log-box" }, this.pre)
    );
  };

  LogView.prototype.attached = function () {
    return !!(this.root && this.root.parentNode);
  };

  LogView.prototype.attach = function (parent) {
    parent.appendChild(this.root);
    // the DOM is rebuilt from the model: everything in the model is fresh
    this.pre.textContent = "";
    this.lines.forEach(function (l) { l.el = null; l.n = 0; });
    this.removeDom = 0;
    this.grown.clear();
    this.fresh = this.lines.length;
    this.follow = true;
    this.jump.hidden = true;
    this.flush();
  };

  LogView.prototype.detach = function () {
    if (this.root.parentNode) this.root.parentNode.removeChild(this.root);
    this.pre.textContent = ""; // free the nodes; the model stays
    this.lines.forEach(function (l) { l.el = null; l.n = 0; });
  };

  LogView.prototype.schedule = function () {
    if (this.attached()) BF.frame(this._flush);
  };

  /* Append a chunk of one stream. Split into lines here (no DOM); trim the model. */
  LogView.prototype.write = function (stream, data) {
    if (stream !== "stderr") stream = "stdout";
    if (this.held && this.held[stream]) {
      this.held[stream].push(data);
      return;
    }
    this.bytes[stream] += data.length;
    var pieces = this.ansi[stream].render(this._dropOsc(stream, data));
    var line = this.open[stream];
    for (var i = 0; i < pieces.length; i++) {
      var piece = pieces[i];
      var parts = piece.text.split("\n");
      for (var k = 0; k < parts.length; k++) {
        if (k > 0) {
          // a newline ended the current line
          if (!line) this._push(stream, []);
          line = null;
        }
        if (parts[k] === "") continue;
        if (!line) line = this._push(stream, []);
        line.p.push(parts.length === 1 ? piece : { text: parts[k], cls: piece.cls, style: piece.style });
        if (line.el) this.grown.add(line);
      }
    }
    this.open[stream] = line;
    this._trim();
    this.schedule();
  };

  /* OSC, DCS, PM and APC strings (titles, OSC 8 links, ...) are removed here, whole, with
   * an unfinished one carried to the next chunk: BF.Ansi's "incomplete sequence" check
   * would otherwise hold back everything after the first OSC of a chunk. */
  var STRING_SEQ = /\x1b[\]P^_][\s\S]*?(?:\x07|\x1b\\)/g;
  var OPEN_SEQ = /\x1b(?:[\]P^_](?:(?!\x07|\x1b\\)[\s\S])*)?$/;
  LogView.prototype._dropOsc = function (stream, data) {
    var carry = this.oscCarry || (this.oscCarry = { stdout: "", stderr: "" });
    var text = carry[stream] + data;
    carry[stream] = "";
    if (text.indexOf("\x1b") < 0) return text;
    text = text.replace(STRING_SEQ, "");
    var open = OPEN_SEQ.exec(text);
    if (open) {
      if (open[0].length < 4096) carry[stream] = open[0]; // else: endless, drop it
      text = text.slice(0, open.index);
    }
    return text;
  };

  LogView.prototype._push = function (stream, pieces) {
    var line = { s: stream, p: pieces, n: 0, el: null };
    this.lines.push(line);
    this.fresh++;
    return line;
  };

  LogView.prototype._trim = function () {
    var extra = this.lines.length - this.max;
    if (extra <= 0) return;
    var dropped = this.lines.splice(0, extra);
    for (var i = 0; i < dropped.length; i++) {
      var l = dropped[i];
      if (l.el) {
        this.removeDom++;
        this.grown.delete(l);
      }
      if (this.open[l.s] === l) this.open[l.s] = null;
    }
    this.hidden += extra;
    this.fresh = Math.min(this.fresh, this.lines.length);
  };

  /* Hold a stream's new chunks while the missing bytes before them are fetched; release
   * writes the fetched text (or notes the gap) and then what was held, in order. */
  LogView.prototype.holding = function (stream) {
    return !!(this.held && this.held[stream]);
  };

  LogView.prototype.hold = function (stream) {
    (this.held || (this.held = {}))[stream] = [];
  };

  LogView.prototype.release = function (stream, fill, gapFrom, gapTo) {
    var queue = (this.held && this.held[stream]) || [];
    if (this.held) delete this.held[stream];
    if (fill !== null && fill !== undefined) this.write(stream, fill);
    else this.gap(stream, gapFrom, gapTo);
    for (var i = 0; i < queue.length; i++) this.write(stream, queue[i]);
  };

  LogView.prototype.gap = function (stream, from, to) {
    if (stream !== "stderr") stream = "stdout";
    this.skipped[stream] += Math.max(0, to - from);
    this.schedule();
  };

  LogView.prototype.setIndex = function (index) {
    var idx = String(index);
    if (this.pre.dataset.index === idx) return;
    this.opts.index = index;
    this.root.dataset.index = this.pre.dataset.index = this.note.dataset.index = idx;
    this.pre.setAttribute("aria-label", "output of command #" + (index + 1));
  };

  LogView.prototype.lineCount = function () {
    return this.lines.length;
  };

  function lineNode(line) {
    var div = document.createElement("div");
    div.className = line.s === "stderr" ? "ln stderr" : "ln";
    fill(div, line.p, 0);
    line.n = line.p.length;
    line.el = div;
    return div;
  }

  function fill(div, pieces, from) {
    if (from === 0 && pieces.length === 1 && !pieces[0].cls && !pieces[0].style) {
      div.textContent = pieces[0].text;
      return;
    }
    BF.Ansi.appendTo(div, pieces, from);
  }

  /* Bring the DOM up to the model in one go (called from requestAnimationFrame). */
  LogView.prototype.flush = function () {
    if (!this.attached()) return;
    var pre = this.pre;
    // 1. drop the oldest rendered lines in bulk
    if (this.removeDom > 0) {
      var kids = pre.childElementCount;
      if (this.removeDom >= kids) {
        pre.textContent = "";
      } else {
        var range = document.createRange();
        range.setStartBefore(pre.firstChild);
        range.setEndAfter(pre.children[this.removeDom - 1]);
        range.deleteContents();
      }
      this.removeDom = 0;
    }
    // 2. lines that grew (an unfinished line got more text)
    this.grown.forEach(function (line) {
      if (line.el && line.p.length > line.n) {
        fill(line.el, line.p, line.n);
        line.n = line.p.length;
      }
    });
    this.grown.clear();
    // 3. new lines, as one fragment
    if (this.fresh > 0) {
      var frag = document.createDocumentFragment();
      var lines = this.lines;
      for (var i = lines.length - this.fresh; i < lines.length; i++) frag.appendChild(lineNode(lines[i]));
      pre.appendChild(frag);
      this.fresh = 0;
    }
    this._renderNote();
    if (this.follow) pre.scrollTop = pre.scrollHeight;
  };

  LogView.prototype._renderNote = function () {
    var parts = [];
    if (this.hidden > 0) parts.push(this.hidden + " earlier lines hidden");
    var sk = this.skipped.stdout + this.skipped.stderr;
    if (sk > 0) parts.push(BF.fmtBytes(sk) + " of older output not loaded");
    var key = parts.join("; ");
    if (this.noteKey === key) return;
    this.noteKey = key;
    BF.clear(this.note);
    this.note.hidden = !key;
    if (!key) return;
    this.note.appendChild(document.createTextNode(key + " — "));
    var url = this.opts.stdoutUrl;
    if (this.opts.stderrUrl && this.bytes.stderr > this.bytes.stdout) url = this.opts.stderrUrl;
    this.note.appendChild(url ? BF.el("a", { href: url, download: "" }, "download the full log") : document.createTextNode("download the full log"));
  };

  /* How many lines the model keeps (the page keeps fewer for collapsed commands of a big batch). */
  LogView.prototype.setMax = function (n) {
    if (n === this.max) return;
    this.max = n;
    this._trim();
    this.schedule();
  };

  LogView.prototype.setDone = function (done) {
    if (done) this.pre.setAttribute("data-done", "");
    else this.pre.removeAttribute("data-done");
  };

  LogView.prototype.setMeta = function (text) {
    if (this.meta.textContent !== text) this.meta.textContent = text;
  };

  BF.LogView = LogView;
})();
