/* ANSI output -> inert DOM (window.BF.Ansi).
 *
 * Only SGR colours and weights are rendered, as class names or CSSOM colours on
 * <span> elements whose content is set with textContent. Everything else is
 * dropped: OSC sequences (window titles, OSC 8 hyperlinks: the link text stays,
 * the target never becomes a link), cursor movement, and other control bytes.
 * A sequence split across chunks is carried over to the next chunk.
 *
 *   var a = new BF.Ansi();
 *   a.render("\x1b[31mred\x1b[0m plain\n") -> [{text: "red", cls: "ansi-fg-1", style: null}, ...]
 *   a.toFragment(pieces) -> DocumentFragment
 */
(function () {
  "use strict";
  var BF = (window.BF = window.BF || {});

  // ESC [ params final | ESC ] ... (BEL | ESC \) | ESC single | C0 controls except \n \t
  var SEQ = /\x1b\[([0-9;:?]*)([ -\/]*)([@-~])|\x1b\][\s\S]*?(?:\x07|\x1b\\)|\x1b[P^_][\s\S]*?\x1b\\|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]/g;
  // an unterminated sequence at the very end of a chunk (its terminator may come next)
  var INCOMPLETE = /\x1b(\[[0-9;:?]*[ -\/]*|\](?:(?!\x07|\x1b\\)[\s\S])*|[P^_](?:(?!\x1b\\)[\s\S])*)?$/;

  function Ansi() {
    this.fg = null;
    this.bg = null;
    this.bold = false;
    this.dim = false;
    this.italic = false;
    this.underline = false;
    this.inverse = false;
    this.carry = "";
  }

  Ansi.prototype.reset = function () {
    this.fg = this.bg = null;
    this.bold = this.dim = this.italic = this.underline = this.inverse = false;
  };

  function color256(n) {
    if (n < 16) return { cls: n };
    if (n < 232) {
      n -= 16;
      var steps = [0, 95, 135, 175, 215, 255];
      return { rgb: [steps[Math.floor(n / 36)], steps[Math.floor(n / 6) % 6], steps[n % 6]] };
    }
    var v = 8 + (n - 232) * 10;
    return { rgb: [v, v, v] };
  }

  Ansi.prototype.sgr = function (params) {
    var p = params === "" ? [0] : params.split(/[;:]/).map(function (x) { return parseInt(x, 10) || 0; });
    for (var i = 0; i < p.length; i++) {
      var c = p[i];
      if (c === 0) this.reset();
      else if (c === 1) this.bold = true;
      else if (c === 2) this.dim = true;
      else if (c === 3) this.italic = true;
      else if (c === 4) this.underline = true;
      else if (c === 7) this.inverse = true;
      else if (c === 22) this.bold = this.dim = false;
      else if (c === 23) this.italic = false;
      else if (c === 24) this.underline = false;
      else if (c === 27) this.inverse = false;
      else if (c >= 30 && c <= 37) this.fg = { cls: c - 30 };
      else if (c >= 90 && c <= 97) this.fg = { cls: c - 90 + 8 };
      else if (c === 39) this.fg = null;
      else if (c >= 40 && c <= 47) this.bg = { cls: c - 40 };
      else if (c >= 100 && c <= 107) this.bg = { cls: c - 100 + 8 };
      else if (c === 49) this.bg = null;
      else if ((c === 38 || c === 48) && p[i + 1] === 5 && i + 2 < p.length) {
        var col = color256(Math.min(255, p[i + 2]));
        if (c === 38) this.fg = col; else this.bg = col;
        i += 2;
      } else if ((c === 38 || c === 48) && p[i + 1] === 2 && i + 4 < p.length) {
        var rgb = { rgb: [p[i + 2] & 255, p[i + 3] & 255, p[i + 4] & 255] };
        if (c === 38) this.fg = rgb; else this.bg = rgb;
        i += 4;
      }
    }
  };

  Ansi.prototype.piece = function (text) {
    var cls = [];
    var style = null;
    var fg = this.inverse ? this.bg : this.fg;
    var bg = this.inverse ? this.fg : this.bg;
    if (fg && fg.cls !== undefined) cls.push("ansi-fg-" + fg.cls);
    if (bg && bg.cls !== undefined) cls.push("ansi-bg-" + bg.cls);
    if (fg && fg.rgb) style = { color: "rgb(" + fg.rgb.join(",") + ")" };
    if (bg && bg.rgb) (style = style || {}).backgroundColor = "rgb(" + bg.rgb.join(",") + ")";
    if (this.inverse && !fg) cls.push("ansi-inverse");
    if (this.bold) cls.push("ansi-bold");
    if (this.dim) cls.push("ansi-dim");
    if (this.italic) cls.push("ansi-italic");
    if (this.underline) cls.push("ansi-underline");
    return { text: text, cls: cls.join(" "), style: style };
  };

  /* text -> [{text, cls, style}], keeping colour state and split sequences across calls. */
  Ansi.prototype.render = function (chunk) {
    var text = this.carry + chunk;
    this.carry = "";
    var tail = INCOMPLETE.exec(text);
    if (tail && tail[0].length < 4096) {
      this.carry = tail[0];
      text = text.slice(0, tail.index);
    } else if (tail) {
      text = text.slice(0, tail.index); // an endless unterminated sequence: drop it
    }
    var out = [];
    var last = 0;
    var m;
    SEQ.lastIndex = 0;
    while ((m = SEQ.exec(text)) !== null) {
      if (m.index > last) out.push(this.piece(text.slice(last, m.index)));
      if (m[3] === "m" && !m[2]) this.sgr(m[1]);
      last = SEQ.lastIndex;
    }
    if (last < text.length) out.push(this.piece(text.slice(last)));
    return out;
  };

  /* Append pieces[from..] to ``node`` as text nodes and coloured spans (textContent only). */
  Ansi.appendTo = function (node, pieces, from) {
    for (var i = from || 0; i < pieces.length; i++) {
      var p = pieces[i];
      if (!p.cls && !p.style) {
        node.appendChild(document.createTextNode(p.text));
        continue;
      }
      var span = document.createElement("span");
      if (p.cls) span.className = p.cls;
      if (p.style) {
        if (p.style.color) span.style.color = p.style.color;
        if (p.style.backgroundColor) span.style.backgroundColor = p.style.backgroundColor;
      }
      span.textContent = p.text;
      node.appendChild(span);
    }
    return node;
  };

  Ansi.prototype.toFragment = function (pieces) {
    return Ansi.appendTo(document.createDocumentFragment(), pieces, 0);
  };

  /* Plain text with every escape sequence removed (for search and copying). */
  Ansi.strip = function (text) {
    return String(text).replace(SEQ, "");
  };

  BF.Ansi = Ansi;
})();
