/* lenslab attention viewer: offline, no dependencies, no network.
 *
 * Every div.lv holds its data in a JSON script element of class lv-data (type application/json).
 * Safety rule of this file: strings from the data (token strings, titles, classes, score names)
 * are only ever inserted with textContent / createTextNode or set as properties (title), never
 * through innerHTML, insertAdjacentHTML, document.write or attribute strings that are parsed.
 *
 * Data (built by lenslab.attention.viewer.build_payload):
 *   heads:  [[layer, head], ...]          heads present, grid order
 *   inputs: [{title, shown[], tip[], special[], n, n_total, data}]
 *           data = base64 uint8 [heads.length, n, n] (head, query, key), weight = byte / 255
 *   info:   [{layer, head, class, scores{name: number|null}, null{name: text}}]
 *   select: [layer, head]; mode: "lines" | "heatmap" | "auto" (lines up to 60 tokens);
 *   hide_special: start with special tokens hidden (rows renormalized over the rest)
 * When a viewer has rendered, its container gets data-lv-ready="1".
 */
(function () {
  "use strict";

  var ROW = 20;          // px per token row in the line view
  var LINE_W = 170;      // px between the two token columns
  var GRID_PX = 52;      // px per head thumbnail
  var CLASS_COLORS = {
    "previous-token": "#3056d3", "induction": "#b3261e", "duplicate": "#8e44ad",
    "sink": "#5b6577", "positional": "#1b7f3b", "delimiter": "#b36b00", "broad": "#0f7c8c",
    "other-structured": "#6d4c41", "random-like": "#9aa3b2"
  };

  // ------------------------------------------------------------------ helpers
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function decode(b64) {
    var s = atob(b64);
    var a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { a[i] = s.charCodeAt(i); }
    return a;
  }

  // colour ramp white -> #6baed6 -> #08306b, 256 entries
  var RAMP = (function () {
    var stops = [[255, 255, 255], [107, 174, 214], [8, 48, 107]];
    var out = [];
    for (var i = 0; i < 256; i++) {
      var t = i / 255 * 2, j = Math.min(1, Math.floor(t)), f = t - j;
      out.push([0, 1, 2].map(function (c) {
        return Math.round(stops[j][c] + (stops[j + 1][c] - stops[j][c]) * f);
      }));
    }
    return out;
  })();

  // a head's colour: its class's, as lenslab sent it; a hue from the tag for other tags
  function classColor(info) {
    if (info && info.color) { return String(info.color); }
    var tag = info ? String(info["class"] || "") : "";
    if (!tag) { return "#9aa3b2"; }
    if (CLASS_COLORS.hasOwnProperty(tag)) { return CLASS_COLORS[tag]; }
    var h = 0;
    for (var i = 0; i < tag.length; i++) { h = (h * 31 + tag.charCodeAt(i)) % 360; }
    return "hsl(" + h + ",45%,40%)";
  }

  function fmt(v) {
    if (v === null || v === undefined) { return "n/a"; }
    if (typeof v !== "number") { return String(v); }
    if (v === 0) { return "0"; }
    var a = Math.abs(v);
    return (a >= 1e-3 && a < 1e5) ? String(Number(v.toPrecision(3))) : v.toExponential(2);
  }

  // draw one [n, n] block of codes into a canvas of n x n pixels (scaled by CSS)
  function paint(canvas, codes, offset, n) {
    canvas.width = n; canvas.height = n;
    canvas.style.imageRendering = n <= 64 ? "pixelated" : "auto";  // crisp cells when few tokens
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(n, n);
    for (var i = 0; i < n * n; i++) {
      var c = RAMP[codes[offset + i]];
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2];
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  // grid thumbnail: at most THUMB x THUMB pixels; each pixel is the MAX of its block of weights,
  // so a sharp pattern (diagonal, a column) stays visible when many tokens share a pixel
  var THUMB = 64;
  function paintThumb(canvas, codes, offset, n) {
    if (n <= THUMB) { paint(canvas, codes, offset, n); return; }
    var s = THUMB, pooled = new Uint8Array(s * s);
    for (var i = 0; i < s; i++) {
      var r0 = Math.floor(i * n / s), r1 = Math.floor((i + 1) * n / s);
      for (var j = 0; j < s; j++) {
        var c0 = Math.floor(j * n / s), c1 = Math.floor((j + 1) * n / s), mx = 0;
        for (var r = r0; r < r1; r++) {
          var row = offset + r * n;
          for (var c = c0; c < c1; c++) { if (codes[row + c] > mx) { mx = codes[row + c]; } }
        }
        pooled[i * s + j] = mx;
      }
    }
    paint(canvas, pooled, 0, s);
  }

  // ------------------------------------------------------------------ one viewer
  function Viewer(root, data) {
    this.root = root;
    this.data = data;
    this.heads = data.heads;
    this.index = {};                       // "l,h" -> position in heads
    for (var i = 0; i < data.heads.length; i++) { this.index[data.heads[i].join(",")] = i; }
    this.info = {};
    (data.info || []).forEach(function (e) { this.info[e.layer + "," + e.head] = e; }, this);
    this.codes = data.inputs.map(function (inp) { return decode(inp.data); });
    this.gridInput = 0;
    var longest = Math.max.apply(null, data.inputs.map(function (x) { return x.n; }));
    this.mode = data.mode === "auto" ? (longest > 60 ? "heatmap" : "lines") :
      (data.mode === "heatmap" ? "heatmap" : "lines");
    this.hideSpecial = !!data.hide_special;
    var sel = data.select && this.index.hasOwnProperty(data.select.join(",")) ? data.select : data.heads[0];
    this.layer = sel[0]; this.head = sel[1];
    this.build();
    this.select(this.layer, this.head);
  }

  Viewer.prototype.build = function () {
    var self = this, d = this.data;
    this.tip = el("div", "lv-tip");
    this.tip.style.display = "none";

    // controls
    var ctl = el("div", "lv-controls");
    var showGrid = this.heads.length > 1;   // a single-head viewer shows only its head view
    this.cells = {};
    if (d.inputs.length > 1 && showGrid) {
      var lab0 = el("label", null, "Grid input ");
      this.inputSel = el("select");
      d.inputs.forEach(function (inp, i) {
        var o = el("option", null, inp.title);
        o.value = String(i);
        self.inputSel.appendChild(o);
      });
      this.inputSel.addEventListener("change", function () {
        self.gridInput = Number(self.inputSel.value); self.drawGrid();
      });
      lab0.appendChild(this.inputSel); ctl.appendChild(lab0);
    }
    var lab1 = el("label", null, "Layer ");
    this.layerSel = el("select");
    var layers = [];
    this.heads.forEach(function (x) { if (layers.indexOf(x[0]) < 0) { layers.push(x[0]); } });
    layers.forEach(function (l) {
      var o = el("option", null, String(l)); o.value = String(l); self.layerSel.appendChild(o);
    });
    this.layerSel.addEventListener("change", function () {
      var l = Number(self.layerSel.value);
      var first = self.heads.filter(function (x) { return x[0] === l; })[0];
      var h = self.index.hasOwnProperty(l + "," + self.head) ? self.head : first[1];
      self.select(l, h);
    });
    lab1.appendChild(this.layerSel); ctl.appendChild(lab1);
    var lab2 = el("label", null, "Head ");
    this.headSel = el("select");
    this.headSel.addEventListener("change", function () {
      self.select(self.layer, Number(self.headSel.value));
    });
    lab2.appendChild(this.headSel); ctl.appendChild(lab2);
    this.modeBtns = {};
    var seg = el("span", "lv-seg");
    [["lines", "Lines"], ["heatmap", "Heatmap"]].forEach(function (m) {
      var b = el("button", null, m[1]);
      b.type = "button";
      b.addEventListener("click", function () { self.mode = m[0]; self.drawHeadViews(); });
      self.modeBtns[m[0]] = b; seg.appendChild(b);
    });
    ctl.appendChild(seg);
    var anySpecial = d.inputs.some(function (inp) { return inp.special.indexOf(true) >= 0; });
    if (anySpecial) {
      var lab3 = el("label");
      var box = el("input");
      box.type = "checkbox"; box.checked = this.hideSpecial;
      box.addEventListener("change", function () { self.hideSpecial = box.checked; self.drawHeadViews(); });
      lab3.appendChild(box);
      lab3.appendChild(document.createTextNode(" hide special tokens"));
      ctl.appendChild(lab3);
    }
    this.root.appendChild(ctl);

    // grid + info
    var top = el("div", "lv-top");
    if (showGrid) {
      var gw = el("div", "lv-gridwrap");
      this.gridCaption = el("div", "lv-caption");
      gw.appendChild(this.gridCaption);
      this.grid = el("table", "lv-grid");
      gw.appendChild(this.grid);
      top.appendChild(gw);
    }
    this.infoBox = el("div", "lv-info");
    top.appendChild(this.infoBox);
    this.root.appendChild(top);

    this.viewsCaption = el("div", "lv-caption");
    this.root.appendChild(this.viewsCaption);
    this.views = el("div", "lv-views");
    this.root.appendChild(this.views);
    this.root.appendChild(this.tip);
    if (showGrid) { this.buildGrid(); }
  };

  Viewer.prototype.buildGrid = function () {
    var self = this, d = this.data;
    var layers = [], headsN = [];
    this.heads.forEach(function (x) {
      if (layers.indexOf(x[0]) < 0) { layers.push(x[0]); }
      if (headsN.indexOf(x[1]) < 0) { headsN.push(x[1]); }
    });
    headsN.sort(function (a, b) { return a - b; });
    var thead = el("thead"), hr = el("tr");
    hr.appendChild(el("th"));
    headsN.forEach(function (h) { hr.appendChild(el("th", null, "H" + h)); });
    thead.appendChild(hr); this.grid.appendChild(thead);
    var tbody = el("tbody");
    this.cells = {};
    layers.forEach(function (l) {
      var tr = el("tr");
      tr.appendChild(el("th", null, "L" + l));
      headsN.forEach(function (h) {
        var key = l + "," + h, td = el("td");
        if (self.index.hasOwnProperty(key)) {
          var cell = el("div", "lv-cell");
          var cv = el("canvas");
          cv.style.width = GRID_PX + "px"; cv.style.height = GRID_PX + "px";
          cell.appendChild(cv);
          var info = self.info[key];
          var tip = "layer " + l + ", head " + h;
          if (info) {
            var tag = el("div", "lv-class", info.label || info["class"] || "-");
            tag.style.background = classColor(info);
            cell.appendChild(tag);
            tip += "\nclass: " + (info.label || info["class"] || "-");
            Object.keys(info.scores || {}).forEach(function (k) {
              tip += "\n" + k + ": " + fmt(info.scores[k]);
            });
          }
          cell.title = tip;
          cell.addEventListener("click", function () { self.select(l, h); });
          td.appendChild(cell);
          self.cells[key] = { cell: cell, canvas: cv };
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    this.grid.appendChild(tbody);
    this.drawGrid();
  };

  Viewer.prototype.drawGrid = function () {
    var inp = this.data.inputs[this.gridInput], codes = this.codes[this.gridInput], self = this;
    this.gridCaption.textContent = "All heads (rows: layers, columns: heads) for ";
    this.gridCaption.appendChild(el("b", null, inp.title));
    this.gridCaption.appendChild(document.createTextNode("; click a head to select it."));
    this.heads.forEach(function (x, i) {
      paintThumb(self.cells[x.join(",")].canvas, codes, i * inp.n * inp.n, inp.n);
    });
  };

  Viewer.prototype.select = function (l, h) {
    var self = this;
    this.layer = l; this.head = h;
    this.layerSel.value = String(l);
    while (this.headSel.firstChild) { this.headSel.removeChild(this.headSel.firstChild); }
    this.heads.filter(function (x) { return x[0] === l; }).forEach(function (x) {
      var o = el("option", null, String(x[1])); o.value = String(x[1]); self.headSel.appendChild(o);
    });
    this.headSel.value = String(h);
    Object.keys(this.cells).forEach(function (k) {
      self.cells[k].cell.classList.toggle("sel", k === l + "," + h);
    });
    this.drawInfo();
    this.drawHeadViews();
  };

  Viewer.prototype.drawInfo = function () {
    var box = this.infoBox, info = this.info[this.layer + "," + this.head];
    while (box.firstChild) { box.removeChild(box.firstChild); }
    box.appendChild(el("div", "lv-info-h", "Layer " + this.layer + ", head " + this.head));
    if (!info) {
      box.appendChild(el("div", "lv-muted", this.data.info && this.data.info.length ?
        "No class or scores for this head." :
        "No head classes given (pass heads.json from `lenslab heads`)."));
      return;
    }
    var tag = el("span", "lv-class big", info.label || info["class"] || "-");
    tag.style.background = classColor(info);
    box.appendChild(tag);
    var names = Object.keys(info.scores || {});
    if (names.length) {
      var t = el("table", "lv-scores"), hr = el("tr");
      ["score", "value", "null"].forEach(function (c) { hr.appendChild(el("th", null, c)); });
      t.appendChild(hr);
      names.forEach(function (k) {
        var tr = el("tr");
        tr.appendChild(el("td", null, k));
        tr.appendChild(el("td", "num", fmt(info.scores[k])));
        var nl = info["null"] || {};
        var td = el("td", "num", nl.hasOwnProperty(k) ? nl[k] : "");
        var detail = info.null_detail || {};
        if (detail.hasOwnProperty(k)) { td.title = "null: " + detail[k]; }
        tr.appendChild(td);
        t.appendChild(tr);
      });
      box.appendChild(t);
    }
  };

  Viewer.prototype.drawHeadViews = function () {
    var self = this;
    Object.keys(this.modeBtns).forEach(function (m) {
      self.modeBtns[m].classList.toggle("on", m === self.mode);
    });
    this.viewsCaption.textContent = "Head view, layer " + this.layer + " head " + this.head +
      (this.mode === "lines" ? ": queries on the left attend to keys on the right; line " +
        "strength = attention weight; hover a token or a line for values."
        : ": rows are queries, columns keys; hover a cell for its value.") +
      (this.hideSpecial ? " Special tokens hidden; rows renormalized over the other tokens." : "");
    while (this.views.firstChild) { this.views.removeChild(this.views.firstChild); }
    var hi = this.index[this.layer + "," + this.head];
    this.data.inputs.forEach(function (inp, i) {
      var panel = el("div", "lv-panel");
      panel.appendChild(el("div", "lv-panel-title", inp.title));
      var mat = self.matrix(i, hi);
      if (self.mode === "lines") { self.lineView(panel, i, mat); }
      else { self.heatView(panel, i, mat); }
      self.views.appendChild(panel);
    });
  };

  Viewer.prototype.tokenEl = function (inp, t) {
    var s = el("div", "lv-tok" + (inp.special[t] ? " special" : ""), inp.shown[t]);
    s.title = inp.tip[t];
    return s;
  };

  Viewer.prototype.showTip = function (ev, text) {
    this.tip.textContent = text;
    this.tip.style.display = "block";
    this.tip.style.left = (ev.clientX + 14) + "px";
    this.tip.style.top = (ev.clientY + 14) + "px";
  };

  Viewer.prototype.hideTip = function () { this.tip.style.display = "none"; };

  // The matrix shown for input i, head position hi: {idx: token indices shown, m, w: Float32Array
  // [m * m]}. With "hide special tokens", special tokens are dropped and every row is
  // renormalized over the remaining keys (what is left of a query's attention, as shares).
  Viewer.prototype.matrix = function (i, hi) {
    var inp = this.data.inputs[i], n = inp.n, codes = this.codes[i], idx = [];
    for (var t = 0; t < n; t++) { if (!(this.hideSpecial && inp.special[t])) { idx.push(t); } }
    if (!idx.length) { idx = []; for (t = 0; t < n; t++) { idx.push(t); } }
    var m = idx.length, w = new Float32Array(m * m), base = hi * n * n;
    for (var a = 0; a < m; a++) {
      var row = base + idx[a] * n, sum = 0;
      for (var b = 0; b < m; b++) { var v = codes[row + idx[b]] / 255; w[a * m + b] = v; sum += v; }
      if (this.hideSpecial && m < n && sum > 0) {
        for (b = 0; b < m; b++) { w[a * m + b] /= sum; }
      }
    }
    return { idx: idx, m: m, w: w };
  };

  Viewer.prototype.pair = function (inp, q, k, w) {
    return "query #" + q + " " + inp.shown[q] + "  \u2192  key #" + k + " " + inp.shown[k] +
      "\nweight " + w.toFixed(3) + (this.hideSpecial ? " (share of non-special attention)" : "");
  };

  Viewer.prototype.lineView = function (panel, i, mat) {
    var self = this, inp = this.data.inputs[i], m = mat.m, idx = mat.idx, W = mat.w;
    var wrap = el("div", "lv-lines");
    var left = el("div", "lv-col left"), right = el("div", "lv-col right");
    var cv = el("canvas");
    var dpr = window.devicePixelRatio || 1;
    cv.width = LINE_W * dpr; cv.height = m * ROW * dpr;
    cv.style.width = LINE_W + "px"; cv.style.height = (m * ROW) + "px";
    var lt = [], rt = [];
    for (var a = 0; a < m; a++) {
      var x = this.tokenEl(inp, idx[a]), y = this.tokenEl(inp, idx[a]);
      x.style.height = y.style.height = ROW + "px";
      left.appendChild(x); right.appendChild(y); lt.push(x); rt.push(y);
    }
    wrap.appendChild(left); wrap.appendChild(cv); wrap.appendChild(right);
    panel.appendChild(wrap);
    var ctx = cv.getContext("2d");
    ctx.scale(dpr, dpr);
    var focus = null;   // {side: "q"|"k", t: display position}

    function draw() {
      ctx.clearRect(0, 0, LINE_W, m * ROW);
      ctx.lineWidth = 1.5;
      for (var q = 0; q < m; q++) {
        if (focus && focus.side === "q" && focus.t !== q) { continue; }
        for (var k = 0; k < m; k++) {
          if (focus && focus.side === "k" && focus.t !== k) { continue; }
          var w = W[q * m + k];
          if (w < 0.01) { continue; }
          ctx.strokeStyle = "rgba(48,86,211," + Math.min(1, focus ? 0.15 + w : w).toFixed(3) + ")";
          ctx.beginPath();
          ctx.moveTo(0, q * ROW + ROW / 2);
          ctx.lineTo(LINE_W, k * ROW + ROW / 2);
          ctx.stroke();
        }
      }
      for (var t = 0; t < m; t++) {
        var wl = focus && focus.side === "k" ? W[t * m + focus.t] : 0;
        var wr = focus && focus.side === "q" ? W[focus.t * m + t] : 0;
        lt[t].style.background = wl ? "rgba(48,86,211," + (wl * 0.6).toFixed(3) + ")" : "";
        rt[t].style.background = wr ? "rgba(48,86,211," + (wr * 0.6).toFixed(3) + ")" : "";
        lt[t].classList.toggle("focus", !!focus && focus.side === "q" && focus.t === t);
        rt[t].classList.toggle("focus", !!focus && focus.side === "k" && focus.t === t);
      }
    }

    lt.forEach(function (e, t) {
      e.addEventListener("mouseenter", function () { focus = { side: "q", t: t }; draw(); });
      e.addEventListener("mousemove", function (ev) {
        var best = 0, bk = 0;
        for (var k = 0; k < m; k++) { if (W[t * m + k] > best) { best = W[t * m + k]; bk = k; } }
        self.showTip(ev, "query #" + idx[t] + " " + inp.shown[idx[t]] + "\nstrongest key #" +
          idx[bk] + " " + inp.shown[idx[bk]] + " (" + best.toFixed(3) + ")");
      });
    });
    rt.forEach(function (e, t) {
      e.addEventListener("mouseenter", function () { focus = { side: "k", t: t }; draw(); });
      e.addEventListener("mousemove", function (ev) {
        var tot = 0;
        for (var q = 0; q < m; q++) { tot += W[q * m + t]; }
        self.showTip(ev, "key #" + idx[t] + " " + inp.shown[idx[t]] +
          "\nmean attention received " + (tot / m).toFixed(3));
      });
    });
    [left, right].forEach(function (c) {
      c.addEventListener("mouseleave", function () { focus = null; draw(); self.hideTip(); });
    });
    cv.addEventListener("mousemove", function (ev) {
      var r = cv.getBoundingClientRect();
      var x = (ev.clientX - r.left) * LINE_W / r.width, y = (ev.clientY - r.top) * (m * ROW) / r.height;
      var best = null, bd = 5;
      for (var q = 0; q < m; q++) {
        if (focus && focus.side === "q" && focus.t !== q) { continue; }
        for (var k = 0; k < m; k++) {
          if (focus && focus.side === "k" && focus.t !== k) { continue; }
          var w = W[q * m + k];
          if (w < 0.01) { continue; }
          var y0 = q * ROW + ROW / 2, y1 = k * ROW + ROW / 2;
          var yl = y0 + (y1 - y0) * x / LINE_W;
          var dist = Math.abs(y - yl) * LINE_W / Math.sqrt(LINE_W * LINE_W + (y1 - y0) * (y1 - y0));
          if (dist < bd || (best && dist === bd && w > best.w)) { bd = dist; best = { q: q, k: k, w: w }; }
        }
      }
      if (best) { self.showTip(ev, self.pair(inp, idx[best.q], idx[best.k], best.w)); }
      else { self.hideTip(); }
    });
    cv.addEventListener("mouseleave", function () { self.hideTip(); });
    draw();
  };

  Viewer.prototype.heatView = function (panel, i, mat) {
    var self = this, inp = this.data.inputs[i], m = mat.m, idx = mat.idx, W = mat.w;
    var cell = Math.max(2, Math.min(26, Math.floor(520 / m)));
    var labels = cell >= 11;
    var wrap = el("div", "lv-hm");
    var cv = el("canvas");
    cv.style.width = (m * cell) + "px"; cv.style.height = (m * cell) + "px";
    var codes = new Uint8Array(m * m);
    for (var j = 0; j < m * m; j++) { codes[j] = Math.round(Math.min(1, W[j]) * 255); }
    paint(cv, codes, 0, m);
    cv.style.imageRendering = "pixelated";  // always scaled up here: one block per weight
    var rows = [], cols = [];
    if (labels) {
      wrap.style.gridTemplateColumns = "auto " + (m * cell) + "px";
      wrap.appendChild(el("div"));
      var top = el("div", "lv-hm-top");
      var left = el("div", "lv-hm-left");
      for (var t = 0; t < m; t++) {
        var c = this.tokenEl(inp, idx[t]); c.style.width = cell + "px"; c.classList.add("v");
        var r = this.tokenEl(inp, idx[t]); r.style.height = cell + "px"; r.style.lineHeight = cell + "px";
        top.appendChild(c); left.appendChild(r); cols.push(c); rows.push(r);
      }
      wrap.appendChild(top); wrap.appendChild(left);
    } else {
      panel.appendChild(el("div", "lv-muted", m + " tokens: hover the map for token names."));
    }
    wrap.appendChild(cv);
    panel.appendChild(wrap);
    var last = null;
    cv.addEventListener("mousemove", function (ev) {
      var r = cv.getBoundingClientRect();
      var k = Math.min(m - 1, Math.floor((ev.clientX - r.left) / r.width * m));
      var q = Math.min(m - 1, Math.floor((ev.clientY - r.top) / r.height * m));
      if (q < 0 || k < 0) { return; }
      if (labels) {
        if (last) { rows[last[0]].classList.remove("focus"); cols[last[1]].classList.remove("focus"); }
        rows[q].classList.add("focus"); cols[k].classList.add("focus"); last = [q, k];
      }
      self.showTip(ev, self.pair(inp, idx[q], idx[k], W[q * m + k]));
    });
    cv.addEventListener("mouseleave", function () {
      self.hideTip();
      if (last) { rows[last[0]].classList.remove("focus"); cols[last[1]].classList.remove("focus"); last = null; }
    });
  };

  // ------------------------------------------------------------------ start
  function initAll() {
    var roots = document.querySelectorAll("div.lv");
    var done = 0;
    for (var i = 0; i < roots.length; i++) {
      var root = roots[i];
      if (root.getAttribute("data-lv-ready") === "1") { done++; continue; }
      var src = root.querySelector("script.lv-data");
      if (!src) { continue; }
      try {
        new Viewer(root, JSON.parse(src.textContent));
        root.setAttribute("data-lv-ready", "1");
        done++;
      } catch (e) {
        root.appendChild(el("div", "lv-notice", "The viewer could not render: " + e));
      }
    }
    document.documentElement.setAttribute("data-lv-viewers", String(done));
  }

  window.lenslabViewer = { initAll: initAll };
  initAll();
})();
