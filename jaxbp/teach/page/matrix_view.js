// The matrix view: a chain with a layer wider than 16 units. Each dense layer is its weight matrix
// and that matrix's gradient as heatmaps with their shapes (W0 10×5), its input, sums and outputs as
// strips beside the rows they belong to, and the step's vectorized equation with shapes. The unit
// being computed is outlined in its row. Hovering over a cell shows its numbers from the document.
JB.matrixView = function (ctx, figure, layers) {
  "use strict";
  var doc = ctx.doc, fmt = ctx.fmt, el = JB.el, PHASES = ctx.PHASES;
  var MAX_PX = 300;                                  // the longest side of a heatmap, in CSS pixels
  var params = JB.paramTables(doc);
  var box = el("div", { id: "graph", "class": "matrix-view", role: "img", "aria-label": "the network as matrices" }, figure);
  var detail = el("p", { id: "matrix-detail", "class": "matrix-detail" }, figure, "Hover over a cell for its numbers.");
  // one cell size for every layer, so that the layers stand side by side in the figure's width:
  // a layer takes its matrix and its gradient (2 x inputs cells), three strips and some padding
  var columnsOfCells = layers.reduce(function (n, L) { return n + 2 * L.inputs + 3; }, 0);
  var room = (figure.clientWidth || 1200) - (64 + 18) * layers.length - 120;   // less padding, gaps and the loss
  var cell = Math.max(1, Math.min(26, Math.floor(room / columnsOfCells)));
  var blocks = layers.map(function (L, l) { return drawLayer(L, l); });
  var lossEl = el("div", { "class": "matrix-loss" }, box);
  el("div", { "class": "title" }, lossEl, ctx.E);
  var lossValue = el("div", { "class": "num", "data-loss": "value" }, lossEl, "?");

  function vectorName(node) {                         // t0 for names t0[0], t0[1], ...; the node's name otherwise
    var list = ctx.names.get(node);
    var m = list && list.length ? /^(.*)\[\d+\]$/.exec(list[0]) : null;
    return m ? m[1] : node;
  }
  function matrixName(t, fallback) {
    var m = t && t.names[0] ? /^(.*)\[[\d,\s]+\]$/.exec(t.names[0]) : null;
    return m ? m[1] : fallback;
  }

  function drawLayer(L, l) {
    var w = params.get(L.dense) ? params.get(L.dense).get("w") : null;
    var b = params.get(L.dense) ? params.get(L.dense).get("b") : null;
    var W = matrixName(w, L.dense + ".w"), x = vectorName(L.input), t = vectorName(L.dense), z = vectorName(L.act);
    var block = el("section", { "class": "matrix-layer", "data-layer": String(l) }, box);
    el("h3", {}, block, L.dense + " · " + W + " " + L.units + "×" + L.inputs + " · " + L.activation);
    var eq = t + " = " + W + " · " + x + (L.bias !== "none" ? " + " + matrixName(b, "b") : "") + "   (" + L.units + "×" +
      L.inputs + ")·(" + L.inputs + ") → (" + L.units + ")";
    el("div", { "class": "equation" }, block, eq);
    el("div", { "class": "equation" }, block, z + " = " + L.activation + "(" + t + ")   (" + L.units + ") → (" + L.units + ")");
    var cs = Math.max(1, Math.min(cell, Math.floor(MAX_PX / L.units)));
    var grid = el("div", { "class": "matrix-grid" }, block);
    var out = { L: L, w: w, cs: cs, names: { W: W, x: x, t: t, z: z } };
    out.xStrip = heat(grid, "strip-x", L.inputs, 1, cs, x + " (" + L.inputs + ")", "x");
    out.W = heat(grid, "heat-w", L.inputs, L.units, cs, W + " " + L.units + "×" + L.inputs, "W");
    out.tStrip = heat(grid, "strip-t", 1, L.units, cs, t, "t");
    out.zStrip = heat(grid, "strip-z", 1, L.units, cs, z, "z");
    out.dStrip = heat(grid, "strip-d", 1, L.units, cs, "δ", "d");
    out.dW = heat(grid, "heat-dw", L.inputs, L.units, cs, "∂" + W + " " + L.units + "×" + L.inputs, "dW");
    out.rows = [out.W, out.tStrip, out.zStrip, out.dStrip].map(function (h) {
      return el("div", { "class": "row-mark", hidden: "" }, h.wrap);
    });
    out.unitLine = el("div", { "class": "unit-line" }, block);
    out.marks = el("div", { "class": "slow-note" }, block, slowNote(L));
    [out.W, out.dW].forEach(function (h) { hover(h, out, L); });
    return out;
  }
  function heat(parent, cls, cols, rows, cs, caption, key) {
    var wrap = el("figure", { "class": "heat " + cls }, parent);
    var canvas = el("canvas", { width: cols, height: rows, "data-heat": key }, wrap);
    canvas.style.width = (cols === 1 ? Math.max(cs, 12) : cols * cs) + "px";   // a strip stays visible
    canvas.style.height = (rows === 1 ? Math.max(cs, 12) : rows * cs) + "px";
    el("figcaption", {}, wrap, caption);
    return { wrap: wrap, canvas: canvas, cols: cols, rows: rows, cs: cs };
  }
  // a diverging colour: blue for positive, red for negative, white at 0, grey where not yet known
  function paint(h, list) {
    var g = h.canvas.getContext("2d"), img = g.createImageData(h.cols, h.rows), big = 0;
    (list || []).forEach(function (v) { if (v !== null && v !== undefined) big = Math.max(big, Math.abs(v)); });
    for (var i = 0; i < h.cols * h.rows; i++) {
      var v = list ? list[i] : undefined, c;
      if (v === undefined || v === null) c = [225, 225, 225];
      else {
        var a = big > 0 ? Math.abs(v) / big : 0;
        c = v >= 0 ? [255 - 218 * a, 255 - 156 * a, 255 - 20 * a] : [255 - 35 * a, 255 - 217 * a, 255 - 217 * a];
      }
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    h.canvas.setAttribute("data-max", big ? fmt(big) : "0");
  }
  function slowNote(L) {
    var row = (doc.local_derivatives || []).find(function (r) { return r.node === L.act; });
    var notes = [];
    if (row && /sigmoid|tanh/.test(L.activation)) {
      var slow = JB.flat(row.value[0]).filter(function (v) { return v !== null && Math.abs(v) < 0.01; }).length;
      if (slow) notes.push("⚠ " + slow + " of " + L.units + " units saturated (" + L.activation + "' < 0.01 on example 1): they barely learn");
    }
    if (/relu/.test(L.activation)) {
      var vals = ctx.values.get(L.act), dead = 0;
      for (var k = 0; k < L.units; k++) {
        var off = true;
        for (var n = 0; n < ctx.batch; n++) if (JB.flat(vals[n])[k] !== 0) off = false;
        if (off) dead++;
      }
      if (dead) notes.push("⚠ " + dead + " of " + L.units + " ReLU units dead: off on every example");
    }
    return notes.join(" · ");
  }
  function hover(h, block, L) {
    h.canvas.addEventListener("mousemove", function (ev) {
      var r = h.canvas.getBoundingClientRect();
      var i = Math.min(h.cols - 1, Math.floor((ev.clientX - r.left) / r.width * h.cols));
      var j = Math.min(h.rows - 1, Math.floor((ev.clientY - r.top) / r.height * h.rows));
      var k = j * h.cols + i, w = block.w;
      if (!w) return;
      detail.textContent = w.names[k] + " = " + fmt(w.value[k]) + " · ∂" + ctx.E + "/∂" + w.names[k] + " = " + fmt(w.grad[k]) +
        " · new " + fmt(w.new_value[k]) + "   (" + block.names.t + "[" + j + "] ← " + block.names.x + "[" + i + "])";
    });
  }

  // the elements of node known at this step, undefined where not; the Σ view's values: none (a strip holds
  // one example's), its gradients: summed over the batch
  function known(reveal, kind, node, pos, ex) {
    if (kind === "value" && ctx.isSum(ex)) return null;
    var times = reveal[kind].get(node), arr = ctx.perExample((kind === "value" ? ctx.values : ctx.gradients).get(node), ex);
    if (!times || !arr) return null;
    return arr.map(function (v, k) { return pos >= times[k] ? v : undefined; });
  }
  // the layers stand in one row, scaled down (never up) to the figure's width and the window's height
  // less room for the controls and the step's lines, so that nothing of a wide network is off screen
  function fit() {
    box.style.zoom = "";
    var width = box.scrollWidth, height = box.scrollHeight;
    if (!width || !height) return;
    var scale = Math.min(1, (figure.clientWidth - 2) / width, Math.max(200, window.innerHeight - 240) / height);
    if (scale >= 1) return;
    box.style.zoom = String(scale);
    var over = box.scrollWidth / box.clientWidth;       // the zoomed row's own width, measured once more
    if (over > 1) box.style.zoom = String(0.99 * scale / over);
  }
  window.addEventListener("resize", fit);

  function update(pos, ex, s, reveal) {
    fit();
    var unit = reveal.unit[pos];
    blocks.forEach(function (b) {
      var L = b.L;
      if (!b.snapshot) paint(b.W, b.w ? b.w.value : null);
      paint(b.dW, b.w ? b.w.grad.map(function (v, k) { return pos >= reveal.param("grad", L.dense, "w", k) ? v : undefined; }) : null);
      paint(b.xStrip, known(reveal, "value", L.input, pos, ex));
      paint(b.tStrip, known(reveal, "value", L.dense, pos, ex));
      paint(b.zStrip, known(reveal, "value", L.act, pos, ex));
      paint(b.dStrip, known(reveal, "grad", L.dense, pos, ex));
      var here = (s.node === L.dense || s.node === L.act) && unit !== null;
      b.W.wrap.parentNode.parentNode.setAttribute("data-current", s.node === L.dense || s.node === L.act ? "true" : "false");
      showUnit(b, here ? unit : null, pos, ex, reveal);
      b.rows.forEach(function (mark) {
        mark.hidden = !here;
        if (!here) return;
        mark.style.top = (unit * b.cs - 2) + "px";
        mark.style.height = Math.max(3, b.cs) + "px";
        mark.setAttribute("data-unit", String(unit));
      });
    });
    lossValue.textContent = pos >= reveal.loss ? fmt(doc.loss.value) : "?";
    lossEl.setAttribute("data-current", s.phase === "loss" ? "true" : "false");
  }

  // the numbers of the unit being computed, known so far: its sum, output, dE/dout and delta
  function showUnit(b, k, pos, ex, reveal) {
    b.unitLine.textContent = "";
    if (k === null) return;
    var L = b.L;
    [[L.dense, "value", ""], [L.act, "value", ""], [L.act, "grad", "∂" + ctx.E + "/∂"], [L.dense, "grad", "δ "]].forEach(function (r, i) {
      var list = known(reveal, r[1], r[0], pos, ex);
      if (!list || list[k] === undefined) return;
      if (i) b.unitLine.appendChild(document.createTextNode(" · "));
      var name = ctx.elementName(r[0], k, L.units);
      var span = el("span", { "class": r[1] === "grad" ? "grad" : "value" }, b.unitLine, (r[2] === "δ " ? "δ " + name : r[2] + name) + " = ");
      var a = { "class": "num", "data-index": String(k) };
      a[r[1] === "value" ? "data-value-of" : "data-grad-of"] = r[0];
      el("span", a, span, fmt(list[k]));
    });
  }

  // the training slider: one snapshot's weight matrices
  function showSnapshot(get) {
    blocks.forEach(function (b) {
      if (!b.w) return;
      var list = [];
      for (var k = 0; k < b.w.size; k++) list.push(get(b.L.dense, "w", k));
      paint(b.W, list);
      b.snapshot = true;
    });
  }
  function showLive() { blocks.forEach(function (b) { b.snapshot = false; paint(b.W, b.w ? b.w.value : null); }); }
  return { update: update, showSnapshot: showSnapshot, showLive: showLive };
};
