// The unit view: a chain of dense layers of at most 16 units drawn as neurons and weights, as
// TensorFlow Playground draws them. Each neuron is a circle with a card of its numbers (net sum,
// output, dE/dout, delta); each weight is an edge labelled with its display name and value, its
// width proportional to |w| and its colour its sign; its gradient joins the label at the step that
// computes it, and the update shows old -> new. Shared biases are one bias unit per layer.
JB.unitView = function (ctx, figure, layers) {
  "use strict";
  var doc = ctx.doc, fmt = ctx.fmt, svg = JB.svg, PHASES = ctx.PHASES;
  var F = 16, CW = 0.61 * F, ROW = 20, R = 17;          // font size, monospace advance, row height, neuron radius
  var LABELLED = 12;                                    // a layer with more weights than this labels none
  var SLOW = 0.01;                                      // a local derivative below this: the unit barely learns
  var params = JB.paramTables(doc);

  // ---- the columns: inputs, then each layer's units, then the loss ----
  var columns = [];
  var input = layers[0].input;
  columns.push(range(layers[0].inputs).map(function (k) {
    return { kind: "input", node: input, k: k, title: ctx.elementName(input, k, layers[0].inputs),
             rows: [["", input, "value"], ["∂ ", input, "grad"]] };
  }));
  layers.forEach(function (L, l) {
    columns.push(range(L.units).map(function (k) {
      return { kind: "unit", layer: l, node: L.act, k: k, title: ctx.elementName(L.act, k, L.units),
               rows: [["net ", L.dense, "value"], ["out ", L.act, "value"], ["∂out ", L.act, "grad"],
                      [(L.activation === "sigmoid" ? "σ" : L.activation) + "' ", L.act, "local"], ["δ ", L.dense, "grad"]],
               mark: slowReason(L, k) };
    }));
    if (L.bias !== "none") {
      var b = table(L.dense, "b");
      columns[l].push({ kind: "bias", layer: l, k: 0, title: L.bias === "shared" && b ? b.names[0] : "bias",
                        rows: L.bias === "shared" ? [["", null, "bias"], ["∂ ", null, "bias-grad"]] : [], param: b });
    }
  });
  function range(n) { var out = []; for (var i = 0; i < n; i++) out.push(i); return out; }
  // the [B, *shape] numbers a card row shows: a value, a gradient, or a local derivative d node / d input
  var locals = new Map();
  (doc.local_derivatives || []).forEach(function (r) { if (!locals.has(r.node)) locals.set(r.node, r.value); });
  function rowArray(kind, node) {
    return kind === "value" ? ctx.values.get(node) : kind === "grad" ? ctx.gradients.get(node) : locals.get(node);
  }
  function table(node, leaf) { var t = params.get(node); return t ? t.get(leaf) || null : null; }

  // a saturated sigmoid/tanh unit (local derivative below 0.01 on an example) or a dead ReLU unit
  // (output 0 on every example): the reason, or null
  function slowReason(L, k) {
    var act = L.activation;
    var outs = ctx.allExamples(ctx.values.get(L.act), k);
    if (/relu/.test(act) && outs.length && outs.every(function (v) { return v === 0; })) {
      return "dead: off on every example";
    }
    if (!/sigmoid|tanh/.test(act)) return null;
    var row = (doc.local_derivatives || []).find(function (r) { return r.node === L.act; });
    if (!row) return null;
    var slow = ctx.allExamples(row.value, k).filter(function (v) { return v !== null && Math.abs(v) < SLOW; });
    return slow.length ? "saturated: " + act + "' = " + fmt(slow[0]) + " < " + SLOW : null;
  }

  // ---- layout ----
  // widths from the longest text each card and label will ever show (so the layout never moves)
  var cardW = 0;
  columns.forEach(function (col) {
    col.forEach(function (u) {
      u.rowCount = u.rows.length + (u.mark ? 1 : 0);
      u.height = 2 * R + 8 + (u.rowCount + 1) * ROW + 6;
      var chars = u.title.length;
      u.rows.forEach(function (r) {
        var nums = r[2] === "bias" ? [fmt(u.param.value[0]) + " → " + fmt(u.param.new_value[0])]
          : r[2] === "bias-grad" ? [fmt(u.param.grad[0]) + "Σ"] : r[2] === "grad"
          ? ctx.shownNumbers(rowArray(r[2], r[1]), u.k).map(fmt) : ctx.allExamples(rowArray(r[2], r[1]), u.k).map(fmt);
        if (ctx.batch > 1 && (r[2] === "value" || r[2] === "local")) {   // the Σ view's list of the batch, if short
          nums.push(ctx.shortBatchText(ctx.allExamples(rowArray(r[2], r[1]), u.k)));
        }
        nums.forEach(function (t) { chars = Math.max(chars, r[0].length + 2 + t.length); });
      });
      if (u.mark) chars = Math.max(chars, Math.ceil((u.mark.length + 2) * 0.85));
      cardW = Math.max(cardW, chars * CW + 16);
    });
  });
  var labelW = 0;
  layers.forEach(function (L) {
    [table(L.dense, "w"), L.bias === "per_unit" ? table(L.dense, "b") : null].forEach(function (t) {
      if (!t || t.size > LABELLED) return;
      t.names.forEach(function (name, k) {
        var line1 = name.length + 1 + fmt(t.value[k]).length + 3 + fmt(t.new_value[k]).length;
        var line2 = 5 + fmt(t.grad[k]).length;
        labelW = Math.max(labelW, Math.max(line1, line2) * CW + 12);
      });
    });
  });
  var GAP = Math.max(120, labelW + 24);
  var lossW = Math.max(ctx.E.length, 6 + fmt(doc.loss.value).length,
    6 + Math.max.apply(null, (doc.loss.per_example || [0]).map(function (v) { return fmt(v).length; }))) * CW + 24;
  var colX = columns.map(function (c, i) { return i * (cardW + GAP); });
  var lossX = columns.length * (cardW + GAP) - GAP + 50;
  var width = lossX + lossW;
  var weightEdges = [];
  layers.forEach(function (L, l) { makeEdges(L, l); });
  // the columns as compact as they can be while every weight's label finds a place; where they
  // cannot all fit at a readable size, each step labels only the weights it uses (dynamic)
  var tallest = 0, placed = null, labelled = weightEdges.filter(function (e) { return e.labelled && e.param; });
  for (var gapY = 16; gapY <= 220 && (!placed || placed.missing); gapY += 24) {
    tallest = stackColumns(gapY);
    placed = placeLabels(labelled);
  }
  var dynamic = placed.missing > 0;
  if (dynamic) {
    tallest = stackColumns(16);
    placed = { boxes: new Map(), missing: 0 };
  }

  function stackColumns(gapY) {
    var heights = columns.map(function (col) { return col.reduce(function (h, u) { return h + u.height + gapY; }, -gapY); });
    var top = Math.max.apply(null, heights.concat([4 * ROW]));
    columns.forEach(function (col, c) {
      var y = (top - heights[c]) / 2;
      col.forEach(function (u) { u.x = colX[c]; u.y = y; u.cx = colX[c] + cardW / 2; u.cy = y + R; y += u.height + gapY; });
    });
    weightEdges.forEach(function (e) { e.x1 = e.src.cx + R; e.y1 = e.src.cy; e.x2 = e.dst.cx - R; e.y2 = e.dst.cy; });
    return top;
  }

  // ---- drawing ----
  var pad = 14;
  var drawing = svg("svg", { id: "graph", "class": "unit-view", viewBox: (-pad) + " " + (-pad) + " " + (width + 2 * pad) + " " + (tallest + 2 * pad),
    role: "img", "aria-label": "the network: neurons and weights" }, figure);
  drawing.style.fontSize = F + "px";
  var edgeLayer = svg("g", { "class": "weights" }, drawing);
  var hitLayer = svg("g", { "class": "weight-hits" }, drawing);   // wide invisible lines: click or focus a weight
  var unitLayer = svg("g", { "class": "units" }, drawing);
  var labelLayer = svg("g", { "class": "weight-labels" }, drawing);
  var numEls = [];       // {el, node, k, kind}
  columns.forEach(function (col) { col.forEach(function (u) { drawUnit(u); }); });
  weightEdges.forEach(drawEdge);
  var lossBox = drawLoss();
  weightEdges.forEach(function (e) { if (placed.boxes.has(e)) drawLabel(e, placed.boxes.get(e)); });

  function drawUnit(u) {
    var g = svg("g", { "class": "neuron " + u.kind + (u.mark ? " slow" : ""), tabindex: "0",
      "data-unit": u.kind === "bias" ? "bias:" + u.layer : u.node + "[" + u.k + "]", "data-node": u.kind === "bias" ? "" : u.node }, unitLayer);
    u.g = g;
    svg("rect", { x: u.x, y: u.y + 2 * R + 4, width: cardW, height: u.height - 2 * R - 4, rx: 6, "class": "card" }, g);
    svg("circle", { cx: u.cx, cy: u.cy, r: R, "class": "body" }, g);
    if (u.kind === "bias") svg("text", { x: u.cx, y: u.cy + 6, "text-anchor": "middle", "class": "one" }, g, "1");
    var t = svg("text", { x: u.x + 8, y: u.y + 2 * R + 4 + ROW - 4, "class": "title" }, g, u.title);
    u.rows.forEach(function (r, i) {
      var row = svg("text", { x: u.x + 8, y: u.y + 2 * R + 4 + ROW * (i + 2) - 4, "class": r[2] === "value" || r[2] === "bias" ? "value-row" : "grad-row" }, g);
      svg("tspan", {}, row, r[0] + "= ");
      if (r[2] === "bias") {                          // a shared bias: its value, and old -> new at the update
        u.biasEl = svg("tspan", { "class": "num", "data-param-value": u.param.names[0] }, row, fmt(u.param.value[0]));
        u.biasNewEl = svg("tspan", { "class": "num new", "data-param-new": u.param.names[0] }, row, "");
        return;
      }
      if (r[2] === "bias-grad") {
        u.biasGradEl = svg("tspan", { "class": "num", "data-param-grad": u.param.names[0] }, row, "");
        return;
      }
      var attr = { value: "data-value-of", grad: "data-grad-of", local: "data-local-of" }[r[2]];
      var a = { "class": "num", "data-index": u.k, "data-node": r[1] };
      a[attr] = r[1];
      numEls.push({ el: svg("tspan", a, row, "?"), node: r[1], k: u.k, kind: r[2], row: row, title: svg("title", {}, row),
                    room: Math.round((cardW - 16) / CW) - r[0].length - 2 });
    });
    if (u.mark) {
      svg("text", { x: u.x + 8, y: u.y + 2 * R + 4 + ROW * (u.rows.length + 2) - 4, "class": "mark" }, g, "⚠ " + u.mark);
    }
    return t;
  }

  function makeEdges(L, l) {
    var w = table(L.dense, "w"), b = table(L.dense, "b");
    var from = columns[l], to = columns[l + 1];
    var biggest = 0;
    if (w) w.value.forEach(function (v) { biggest = Math.max(biggest, Math.abs(v)); });
    to.forEach(function (dst) {
      if (dst.kind !== "unit") return;
      from.forEach(function (src) {
        var e = { layer: l, src: src, dst: dst };
        if (src.kind === "bias") {
          e.param = b; e.index = L.bias === "shared" ? 0 : dst.k; e.bias = true;
          e.labelled = L.bias !== "shared" && b && b.size <= LABELLED;
        } else {
          e.param = w; e.index = dst.k * L.inputs + src.k;
          e.labelled = w && w.size <= LABELLED;
        }
        e.scale = biggest;
        weightEdges.push(e);
      });
    });
  }
  function drawEdge(e) {
    e.el = svg("line", { x1: e.x1, y1: e.y1, x2: e.x2, y2: e.y2, "class": "weight" }, edgeLayer);
    if (e.param) {
      e.el.setAttribute("data-param", e.param.names[e.index]);
      e.hit = svg("line", { x1: e.x1, y1: e.y1, x2: e.x2, y2: e.y2, "class": "hit", tabindex: "0",
        "data-param": e.param.names[e.index], "aria-label": e.param.names[e.index] }, hitLayer);
    }
    setWeight(e, e.param ? e.param.value[e.index] : null);
  }
  // an edge's look for a weight value: width proportional to |w| in its layer, colour by sign
  function setWeight(e, v) {
    if (v === null || v === undefined) { e.el.setAttribute("stroke-width", 1.5); return; }
    var wide = e.scale > 0 ? 1.2 + 6 * Math.abs(v) / e.scale : 2;
    e.el.setAttribute("stroke-width", wide.toFixed(2));
    e.el.setAttribute("class", "weight " + (v < 0 ? "negative" : "positive") + (e.bias ? " bias-edge" : ""));
  }

  function drawLoss() {
    var out = columns[columns.length - 1];
    var h = ROW * (ctx.batch > 1 ? 3 : 2) + 14, y = (tallest - h) / 2;
    var g = svg("g", { "class": "loss-box", "data-node": "loss" }, unitLayer);
    svg("rect", { x: lossX, y: y, width: lossW, height: h, rx: 8 }, g);
    svg("text", { x: lossX + 10, y: y + ROW, "class": "title" }, g, ctx.E);
    var lt = svg("text", { x: lossX + 10, y: y + 2 * ROW }, g);
    svg("tspan", {}, lt, "= ");
    var valueEl = svg("tspan", { "data-loss": "value", "class": "num" }, lt, "?");
    var exEl = null;
    if (ctx.batch > 1) {
      var pt = svg("text", { x: lossX + 10, y: y + 3 * ROW }, g);
      svg("tspan", {}, pt, "ex. = ");
      exEl = svg("tspan", { "data-loss": "example", "class": "num" }, pt, "?");
    }
    out.forEach(function (u) {
      svg("line", { x1: u.cx + R, y1: u.cy, x2: lossX, y2: y + h / 2, "class": "to-loss" }, edgeLayer);
    });
    return { g: g, valueEl: valueEl, exEl: exEl };
  }

  // weight labels: each on its edge, at the first of a few positions along it where it overlaps
  // no label, card or circle placed before it. Returns {boxes: Map edge -> box, missing: count}
  function placeLabels(list) {
    var boxes = new Map(), missing = 0;
    var taken = [];
    columns.forEach(function (col) {
      col.forEach(function (u) {
        taken.push({ x: u.x, y: u.y + 2 * R + 4, w: cardW, h: u.height - 2 * R - 4 });
        taken.push({ x: u.cx - R, y: u.cy - R, w: 2 * R, h: 2 * R });
      });
    });
    var h = 2 * ROW + 6;
    var ts = [0.5, 0.35, 0.65, 0.25, 0.75, 0.42, 0.58, 0.18, 0.82, 0.12, 0.88];
    var shifts = [0, -0.55, 0.55, -1.1, 1.1];                    // the label just above or below its edge
    // steep edges first: they have the least room; a level one can take a spot above or below itself
    var order = list.slice().sort(function (a, b) { return Math.abs(b.y2 - b.y1) - Math.abs(a.y2 - a.y1); });
    order.forEach(function (e) {
      var best = null;
      for (var i = 0; i < ts.length * shifts.length && !best; i++) {
        var t = ts[i % ts.length], dy = shifts[Math.floor(i / ts.length)] * h;
        var cx = e.x1 + (e.x2 - e.x1) * t, cy = e.y1 + (e.y2 - e.y1) * t + dy;
        var box = { x: cx - labelW / 2, y: cy - h / 2, w: labelW, h: h, dy: dy };
        if (!taken.some(function (o) { return overlap(o, box); })) best = box;
      }
      if (!best) { missing++; return; }               // no room at this height
      taken.push(best);
      boxes.set(e, best);
    });
    return { boxes: boxes, missing: missing };
  }
  function drawLabel(e, best) {
    var g = svg("g", { "class": "weight-label", "data-param": e.param.names[e.index] }, labelLayer);
    if (best.dy) {                                  // moved off its edge: a leader from the edge to the label
      var ax = best.x + best.w / 2, ay = e.y1 + (e.y2 - e.y1) * (ax - e.x1) / (e.x2 - e.x1);
      svg("line", { x1: ax, y1: ay, x2: ax, y2: best.dy < 0 ? best.y + best.h : best.y, "class": "leader" }, g);
      svg("circle", { cx: ax, cy: ay, r: 3.5, "class": "leader-dot" }, g);
    }
    svg("rect", { x: best.x, y: best.y, width: best.w, height: best.h, rx: 5 }, g);
    var t1 = svg("text", { x: best.x + 6, y: best.y + ROW - 2 }, g);
    svg("tspan", { "class": "pname" }, t1, e.param.names[e.index] + " ");
    e.valueEl = svg("tspan", { "class": "num", "data-param-value": e.param.names[e.index] }, t1, fmt(e.param.value[e.index]));
    e.newEl = svg("tspan", { "class": "num new", "data-param-new": e.param.names[e.index] }, t1, "");
    var t2 = svg("text", { x: best.x + 6, y: best.y + 2 * ROW - 2, "class": "grad-row" }, g);
    e.gradEl = svg("tspan", { "class": "num", "data-param-grad": e.param.names[e.index] }, t2, "");
    e.label = g;
  }
  function overlap(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }

  // ---- one step ----
  function update(pos, ex, s, reveal) {
    var ph = PHASES[s.phase];
    markCurrent(pos, s, ph, reveal);
    if (dynamic) labelThisStep();
    numEls.forEach(function (v) {                     // the Σ view: the batch's values, the gradients summed
      var known = pos >= reveal[v.kind].get(v.node)[v.k];
      var batchWide = v.kind !== "grad" && ctx.isSum(ex), list = batchWide ? ctx.allExamples(rowArray(v.kind, v.node), v.k) : null;
      var flatEx = batchWide ? null : ctx.perExample(rowArray(v.kind, v.node), ex);
      v.el.textContent = !known ? "?" : batchWide ? ctx.batchText(list, v.room) : flatEx ? fmt(flatEx[v.k]) : "?";
      v.el.setAttribute("data-known", known ? "true" : "false");
      v.title.textContent = known && batchWide ? ctx.batchTitle(list) : "";
    });
    weightEdges.forEach(function (e) {
      if (!e.label) return;
      var node = layers[e.layer].dense;
      var leaf = e.bias ? "b" : "w";
      var gradKnown = pos >= reveal.param("grad", node, leaf, e.index), newKnown = pos >= reveal.param("new", node, leaf, e.index);
      e.gradEl.textContent = gradKnown ? (ctx.batch > 1 ? "Σ∂ = " : "∂ = ") + fmt(e.param.grad[e.index]) : "";
      e.newEl.textContent = newKnown ? " → " + fmt(e.param.new_value[e.index]) : "";
    });
    columns.forEach(function (col) {
      col.forEach(function (u) {
        if (!u.biasGradEl) return;
        var node = layers[u.layer].dense;
        u.biasGradEl.textContent = pos >= reveal.param("grad", node, "b", 0) ? fmt(u.param.grad[0]) : "?";
        u.biasNewEl.textContent = pos >= reveal.param("new", node, "b", 0) ? " → " + fmt(u.param.new_value[0]) : "";
      });
    });
    var lossKnown = pos >= reveal.loss;
    lossBox.valueEl.textContent = lossKnown ? fmt(doc.loss.value) : "?";
    if (lossBox.exEl) {
      var each = doc.loss.per_example || [];
      lossBox.exEl.textContent = !lossKnown || !each.length ? "?" : ctx.isSum(ex)
        ? ctx.batchText(each, Math.round((lossW - 24) / CW) - 6) : fmt(each[ex]);
    }
  }
  // too many weights to label them all: the labels of the weights this step uses, placed afresh
  function labelThisStep() {
    labelLayer.textContent = "";
    weightEdges.forEach(function (e) { e.label = e.valueEl = e.newEl = e.gradEl = null; });
    var used = labelled.filter(function (e) { return e.used; });
    var now = placeLabels(used);
    used.forEach(function (e) { if (now.boxes.has(e)) drawLabel(e, now.boxes.get(e)); });
    used.forEach(function (e) { if (e.label) e.label.setAttribute("data-active", "true"); });
  }

  // the unit this step computes is outlined; a step about a whole layer (its parameters' gradients,
  // its update) marks that layer's weights
  function markCurrent(pos, s, ph, reveal) {
    var k = reveal.unit[pos];
    var layerOf = -1, isInput = s.node === input;
    layers.forEach(function (L, l) { if (s.node === L.dense || s.node === L.act) layerOf = l; });
    columns.forEach(function (col, c) {
      col.forEach(function (u) {
        var on = u.kind === "unit" && layerOf === u.layer && k === u.k || u.kind === "input" && isInput && c === 0;
        u.g.setAttribute("class", u.g.getAttribute("class").replace(/ current/g, "") + (on ? " current" : ""));
        u.g.setAttribute("data-current", on ? "true" : "false");
      });
    });
    var wholeLayer = layerOf >= 0 && k === null && (ph === PHASES.backward || ph === PHASES.update) && !isInput;
    // forward: the weights into the unit; backward at an output dE/dout: the weights out of it, whose
    // deltas it sums; at a delta: the weights into it, whose gradients it gives
    var actStep = layerOf >= 0 && s.node === layers[layerOf].act;
    weightEdges.forEach(function (e) {
      var into = k !== null && ph <= PHASES.backward && (ph === PHASES.backward && actStep
        ? e.layer === layerOf + 1 && e.src.kind === "unit" && e.src.k === k
        : e.layer === layerOf && e.dst.k === k);
      e.used = into || wholeLayer && e.layer === layerOf;
      var cls = e.el.getAttribute("class").replace(/ active| layer-step/g, "");
      e.el.setAttribute("class", cls + (into ? " active" : "") + (wholeLayer && e.layer === layerOf ? " layer-step" : ""));
      if (e.label) e.label.setAttribute("data-active", into || wholeLayer && e.layer === layerOf ? "true" : "false");
    });
    lossBox.g.setAttribute("class", "loss-box" + (s.phase === "loss" ? " current" : ""));
    lossBox.g.setAttribute("data-current", s.phase === "loss" ? "true" : "false");
  }

  // the training slider: one snapshot's weights on every edge (width, colour, value) and bias card;
  // the neurons' own numbers belong to the walkthrough's pass, so they are dimmed meanwhile
  function showSnapshot(get) {
    weightEdges.forEach(function (e) {
      if (!e.param) return;
      var L = layers[e.layer], v = get(L.dense, e.bias ? "b" : "w", e.index);
      if (v === undefined) return;
      setWeight(e, v);
      if (e.valueEl) { e.valueEl.textContent = fmt(v); e.newEl.textContent = ""; e.gradEl.textContent = ""; }
    });
    columns.forEach(function (col) {
      col.forEach(function (u) {
        var v = u.biasEl ? get(layers[u.layer].dense, "b", 0) : undefined;
        if (v !== undefined) u.biasEl.textContent = fmt(v);
      });
    });
    drawing.classList.add("snapshot");
  }
  // back to the walkthrough's own weights (a step key or the slider's "this pass")
  function showLive() {
    showSnapshot(function (node, leaf, index) { var t = table(node, leaf); return t ? t.value[index] : undefined; });
    drawing.classList.remove("snapshot");
  }

  return { update: update, showSnapshot: showSnapshot, showLive: showLive, units: columns, edges: weightEdges, layers: layers };
};
