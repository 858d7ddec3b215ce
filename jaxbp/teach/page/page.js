// The walkthrough page: draws the graph of a walkthrough document and steps through its steps.
// It only formats the document's numbers; it computes none of its own.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var PHASES = { setup: 0, forward: 1, loss: 2, backward: 3, update: 4 };
  var PHASE_NAMES = { setup: "Setup", forward: "Forward", loss: "Loss", backward: "Backward", update: "Update" };
  var MAX_DRAWN = 60;          // larger graphs get an overview: at most this many value boxes
  var MAX_ELEMENTS = 4;        // elements of a value listed in its box
  var MAX_EDGE_ELEMENTS = 3;   // elements of a gradient listed on an edge
  var CHAR = 7.9;              // width of one character at the drawing's font size (monospace, 13px)
  var ROW = 17;                // height of one text row

  var doc = JSON.parse(document.getElementById("walkthrough-data").textContent);
  var root = document.getElementById("walkthrough");
  var digits = doc.digits || 6;
  var E = (doc.loss && doc.loss.display_name) || "E";
  var batch = doc.batch || 1;

  // ---- numbers ---------------------------------------------------------------------------------

  // x formatted to p significant digits exactly as Python's format(x, ".{p}g") does: the rounding of
  // toPrecision/toExponential (ties to even, as Python, where the exact binary value is a tie),
  // trailing zeros dropped, exponent form below 1e-4 and from 10^p on; -0 and 0 print as "0".
  function fmtNumber(x, p) {
    if (x === null || x === undefined) return "non-finite";   // the document writes NaN and ±inf as null
    if (x === 0) return "0";
    var neg = x < 0, a = Math.abs(x);
    var parts = a.toExponential(p - 1).split("e");      // rounds half away from zero
    var mant = parts[0].replace(".", ""), exp = Number(parts[1]);
    var full = a.toExponential(Math.min(100, p + 40)).split("e");
    var fd = full[0].replace(".", "");
    if (fd.charAt(p) === "5" && /^0*$/.test(fd.slice(p + 1)) && Number(fd.charAt(p - 1)) % 2 === 0) {
      mant = fd.slice(0, p);                           // an exact tie: keep the even digit
      exp = Number(full[1]);
    }
    var out;
    if (exp >= -4 && exp < p) {
      var intLen = exp + 1;
      var s = intLen > 0 ? mant.slice(0, intLen) + "." + mant.slice(intLen)
                         : "0." + new Array(-exp).join("0") + mant;
      out = s.replace(/0+$/, "").replace(/\.$/, "");
    } else {
      var m = (mant.charAt(0) + "." + mant.slice(1)).replace(/0+$/, "").replace(/\.$/, "");
      var ae = Math.abs(exp);
      out = m + "e" + (exp < 0 ? "-" : "+") + (ae < 10 ? "0" : "") + ae;
    }
    return (neg ? "-" : "") + out;
  }
  var fmt = function (x) { return fmtNumber(x, digits); };

  function flat(v) {                                   // nested lists -> flat list, C order
    if (!Array.isArray(v)) return [v];
    var out = [];
    for (var i = 0; i < v.length; i++) out = out.concat(flat(v[i]));
    return out;
  }
  function perExample(arr, n) {                        // (B, *shape) -> the flat elements of example n
    if (arr === undefined || arr === null) return null;
    return flat(arr[n]);
  }
  function vectorText(values, limit) {
    if (values.length === 1) return fmt(values[0]);
    var shown = values.slice(0, limit).map(fmt);
    if (values.length > limit) shown.push("… " + (values.length - limit) + " more");
    return "[" + shown.join(", ") + "]";
  }

  // ---- the graph -------------------------------------------------------------------------------

  var graph = doc.graph;
  var nodes = [];                                      // every input and node: {name, op, inputs, depth}
  var byName = {};
  graph.inputs.forEach(function (i) {
    nodes.push({ name: i.name, op: "input", inputs: [], depth: 0, isInput: true, shape: i.shape });
  });
  graph.nodes.forEach(function (n) {
    nodes.push({ name: n.name, op: n.op, inputs: n.inputs || [], depth: n.depth || 0, isInput: false });
  });
  nodes.forEach(function (n, k) { n.order = k; n.consumers = []; byName[n.name] = n; });
  var edges = [];                                      // source -> consumer, one per use
  nodes.forEach(function (c) {
    var seen = {};
    c.inputs.forEach(function (s) {
      seen[s] = (seen[s] || 0) + 1;
      var id = c.name + "->" + s + (seen[s] > 1 ? "#" + seen[s] : "");
      edges.push({ source: s, consumer: c.name, id: id, use: seen[s] - 1 });
      if (byName[s]) byName[s].consumers.push(c.name);
    });
  });
  var names = doc.names || {};
  function elementName(node, k, count) {
    var list = names[node];
    if (list && list[k] !== undefined) return list[k];
    return count === 1 ? node : node + "[" + k + "]";
  }
  function elementCount(node) {
    var v = doc.values[node];
    return v ? flat(v[0]).length : 0;
  }

  // the gradient a consumer sends back to one of its inputs: the matching entry of contributions
  function contribution(source, consumer, use) {
    var list = (doc.contributions || {})[source] || [];
    var k = 0;
    for (var i = 0; i < list.length; i++) {
      if (list[i].from === consumer) {
        if (k === use) return list[i].value;
        k++;
      }
    }
    if (list.length === 0 && byName[source] && byName[source].consumers.length === 1) {
      return doc.gradients[source];                    // one consumer: its contribution is the gradient
    }
    return null;
  }

  // ---- which boxes are drawn (an overview for large graphs) ------------------------------------

  var maxDepth = 0;
  nodes.forEach(function (n) { maxDepth = Math.max(maxDepth, n.depth); });
  var columns = [];
  for (var d = 0; d <= maxDepth; d++) columns.push([]);
  nodes.forEach(function (n) { columns[n.depth].push(n); });
  var drawnColumns = columns.map(function (c, d) { return d; });
  var collapsedNote = "";
  var groupOf = {};                                    // a collapsed node -> the box that stands for it
  var boxes = [];                                      // what is drawn: value boxes and "+k more" boxes
  if (nodes.length > MAX_DRAWN) {
    if (columns.length > 20) {
      drawnColumns = [];
      for (d = 0; d < 10; d++) drawnColumns.push(d);
      drawnColumns.push("gap");
      for (d = columns.length - 10; d < columns.length; d++) drawnColumns.push(d);
    }
    var slots = Math.max(1, Math.floor(MAX_DRAWN / drawnColumns.filter(function (c) { return c !== "gap"; }).length) - 1);
    var hidden = 0, groups = 0;
    drawnColumns.forEach(function (c, ci) {
      if (c === "gap") {
        var members = [];
        for (var dd = 10; dd < columns.length - 10; dd++) members = members.concat(columns[dd]);
        var g = { group: true, name: "group:depths", col: ci, label: members.length + " values at depths 10–" + (columns.length - 11),
                  members: members };
        members.forEach(function (m) { groupOf[m.name] = g; });
        boxes.push(g); hidden += members.length; groups++;
        return;
      }
      var col = columns[c];
      col.slice(0, slots).forEach(function (n) { n.col = ci; boxes.push(n); });
      if (col.length > slots) {
        var rest = col.slice(slots);
        var gg = { group: true, name: "group:" + c, col: ci, label: "+" + rest.length + " more at depth " + c, members: rest };
        rest.forEach(function (m) { groupOf[m.name] = gg; });
        boxes.push(gg); hidden += rest.length; groups++;
      }
    });
    collapsedNote = "Overview: " + (nodes.length - hidden) + " of " + nodes.length + " values drawn; " + hidden +
      " collapsed into " + groups + " grey box" + (groups === 1 ? "" : "es") +
      ". Every step still shows its numbers in the panel below.";
  } else {
    nodes.forEach(function (n) { n.col = n.depth; boxes.push(n); });
  }
  var nCols = drawnColumns.length + 1;                // + the loss
  var lossBox = { name: "loss", loss: true, col: drawnColumns.length };
  boxes.push(lossBox);
  function boxOf(name) { return byName[name] && !groupOf[name] ? byName[name] : groupOf[name] || null; }

  // ---- text of each box (fixed for the whole walk, so the layout never moves) ------------------

  function valueRows(n) {
    var count = elementCount(n.name), rows = [];
    for (var k = 0; k < Math.min(count, MAX_ELEMENTS); k++) rows.push({ k: k, label: elementName(n.name, k, count) });
    return { rows: rows, more: Math.max(0, count - MAX_ELEMENTS), count: count };
  }
  function moreText(n) { return "… " + n + " more element" + (n === 1 ? "" : "s"); }
  function longest(list) { return list.reduce(function (m, s) { return Math.max(m, s.length); }, 0); }
  function allExamples(arr, k) {                       // element k of a value in every example
    var out = [];
    for (var n = 0; n < batch; n++) { var f = perExample(arr, n); if (f) out.push(f[k]); }
    return out;
  }
  boxes.forEach(function (b) {
    if (b.group) {
      b.width = Math.max(150, b.label.length * CHAR + 20);
      b.height = 2 * ROW + 12;
      return;
    }
    if (b.loss) {
      var lv = [fmt(doc.loss.value)].concat((doc.loss.per_example || []).map(fmt));
      b.title = E + (doc.loss.name ? "  " + doc.loss.name : "");
      b.rows = batch > 1 ? 3 : 1;
      b.width = Math.max(b.title.length, 14 + longest(lv), batch > 1 ? 26 : 0) * CHAR + 24;
      b.height = ROW * (1 + b.rows) + 14;
      return;
    }
    var vr = valueRows(b);
    b.vrows = vr.rows; b.more = vr.more; b.count = vr.count;
    var texts = [];
    vr.rows.forEach(function (r) {
      var nums = allExamples(doc.values[b.name], r.k).map(fmt);
      var grads = allExamples(doc.gradients[b.name], r.k).map(fmt);
      texts.push(r.label + " = " + nums.reduce(function (m, s) { return s.length > m.length ? s : m; }, ""));
      texts.push("∂" + r.label + " = " + grads.reduce(function (m, s) { return s.length > m.length ? s : m; }, ""));
    });
    // the op goes on a row of its own when it would make the box wider than its numbers
    b.opRow = (b.name + "  " + b.op).length > Math.max(longest(texts), 18);
    if (vr.more) texts.push(moreText(vr.more));
    texts.push(b.opRow ? b.name : b.name + "  " + b.op);
    if (b.opRow) texts.push(b.op);
    b.width = longest(texts) * CHAR + 22;
    b.height = ROW * (1 + (b.opRow ? 1 : 0) + 2 * vr.rows.length + (vr.more ? 1 : 0)) + 14;
  });

  // ---- layout: columns by depth, ordered to keep edges short -------------------------------------

  var cols = [];
  for (var ci = 0; ci < nCols; ci++) cols.push([]);
  boxes.forEach(function (b) { cols[b.col].push(b); });
  var GAP_Y = 26;
  function stack(col) {
    var y = 0;
    col.forEach(function (b) { b.y = y; y += b.height + GAP_Y; });
    return y - GAP_Y;
  }
  cols.forEach(stack);
  for (ci = 1; ci < nCols; ci++) {                     // one pass of barycentres, left to right
    cols[ci].forEach(function (b) {
      var ys = [];
      if (b.loss) { var o = boxOf(graph.output); if (o) ys.push(o.y + o.height / 2); }
      (b.inputs || []).forEach(function (s) { var sb = boxOf(s); if (sb && sb.col < ci) ys.push(sb.y + sb.height / 2); });
      b.key = ys.length ? ys.reduce(function (a, c) { return a + c; }, 0) / ys.length : 1e9 + (b.order || 0);
    });
    cols[ci].sort(function (p, q) { return p.key - q.key || (p.order || 0) - (q.order || 0); });
    stack(cols[ci]);
  }
  var colHeights = cols.map(function (c) {
    return c.length ? c[c.length - 1].y + c[c.length - 1].height : 0;
  });
  var tallest = Math.max.apply(null, colHeights);
  cols.forEach(function (c, k) { c.forEach(function (b) { b.y += (tallest - colHeights[k]) / 2; }); });

  // the drawn edges, and the width of each gap between columns (wide enough for its labels)
  var drawnEdges = [];
  var seenGroupEdge = {};
  edges.forEach(function (e) {
    var sb = boxOf(e.source), cb = boxOf(e.consumer);
    if (!sb || !cb) return;
    if (sb.group || cb.group) {
      var key = sb.name + "|" + cb.name;
      if (seenGroupEdge[key] || sb === cb) return;
      seenGroupEdge[key] = true;
      drawnEdges.push({ from: sb, to: cb, faint: true });
      return;
    }
    drawnEdges.push({ from: sb, to: cb, edge: e });
  });
  var outBox = boxOf(graph.output);
  if (outBox) drawnEdges.push({ from: outBox, to: lossBox, lossEdge: true });
  drawnEdges.forEach(function (de) {
    de.labelLines = [];
    if (de.faint) return;
    var grad = de.lossEdge ? doc.gradients[graph.output] : contribution(de.edge.source, de.edge.consumer, de.edge.use);
    de.grad = grad;
    var count = de.lossEdge ? elementCount(graph.output) : elementCount(de.edge.source);
    var lines = Math.min(count, MAX_EDGE_ELEMENTS) + (count > MAX_EDGE_ELEMENTS ? 1 : 0);
    var width = 0;
    for (var k = 0; k < Math.min(count, MAX_EDGE_ELEMENTS); k++) {
      allExamples(grad, k).forEach(function (v) { width = Math.max(width, fmt(v).length); });
    }
    de.count = count;
    de.nLines = Math.max(1, lines);
    de.labelWidth = Math.max(width, count > MAX_EDGE_ELEMENTS ? 8 : 0) * CHAR + 10;
  });
  var gapWidth = [];
  for (ci = 0; ci < nCols - 1; ci++) gapWidth.push(70);
  drawnEdges.forEach(function (de) {
    if (de.labelWidth) gapWidth[de.from.col] = Math.max(gapWidth[de.from.col], de.labelWidth + 44);
  });
  var colWidth = cols.map(function (c) { return c.reduce(function (m, b) { return Math.max(m, b.width); }, 0); });
  var x = 0, colX = [];
  for (ci = 0; ci < nCols; ci++) {
    colX.push(x);
    x += colWidth[ci] + (ci < nCols - 1 ? gapWidth[ci] : 0);
  }
  boxes.forEach(function (b) { b.x = colX[b.col] + (colWidth[b.col] - b.width) / 2; });
  var totalWidth = x;

  // edge paths: neighbouring columns get an S-curve; an edge that skips columns runs in a lane above them
  var lanesAbove = 0, lanesBelow = 0, minY = 0, laneMaxY = 0;
  function bezierY(x1, y1, x2, y2, gx) {             // y of the S-curve from (x1,y1) to (x2,y2) where x = gx
    var dx = (x2 - x1) / 2, lo = 0, hi = 1;
    var bx = function (t) { var u = 1 - t; return u * u * u * x1 + 3 * u * u * t * (x1 + dx) + 3 * u * t * t * (x2 - dx) + t * t * t * x2; };
    for (var i = 0; i < 40; i++) { var m = (lo + hi) / 2; if (bx(m) < gx) lo = m; else hi = m; }
    var t = (lo + hi) / 2, u = 1 - t;
    return u * u * u * y1 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t * t * t * y2;
  }
  // ports: the edges leaving a box start at distinct heights on its right side, ordered by where they go;
  // the edges entering a box end at distinct heights on its left side, ordered by where they come from
  function centre(b) { return b.y + b.height / 2; }
  function spread(list, box, key, set) {
    list.sort(function (p, q) { return key(p) - key(q); });
    list.forEach(function (de, k) { set(de, box.y + box.height * (k + 1) / (list.length + 1)); });
  }
  // an edge that skips columns runs in a lane above or below them, whichever is nearer its ends
  drawnEdges.forEach(function (de) {
    if (de.to.col - de.from.col < 2) return;
    de.top = Infinity; de.bottom = -Infinity;
    for (var c = de.from.col + 1; c < de.to.col; c++) {
      cols[c].forEach(function (bb) { de.top = Math.min(de.top, bb.y); de.bottom = Math.max(de.bottom, bb.y + bb.height); });
    }
    var middle = (centre(de.from) + centre(de.to)) / 2;
    de.side = Math.abs(de.top - middle) <= Math.abs(de.bottom - middle) ? -1 : 1;
  });
  function portKey(de, other) { return de.side ? de.side * 1e9 : centre(other); }
  boxes.forEach(function (b) {
    var out = drawnEdges.filter(function (de) { return de.from === b; });
    var inn = drawnEdges.filter(function (de) { return de.to === b; });
    spread(out, b, function (de) { return portKey(de, de.to); }, function (de, y) { de.y1 = y; });
    spread(inn, b, function (de) { return portKey(de, de.from); }, function (de, y) { de.y2 = y; });
  });
  drawnEdges.forEach(function (de) {
    var a = de.from, b = de.to;
    var x1 = a.x + a.width, y1 = de.y1, x2 = b.x, y2 = de.y2;
    var gx = colX[a.col] + colWidth[a.col];
    var mid = gx + 12 + (de.labelWidth || 0) / 2;      // labels sit near the value they are gradients of
    if (de.side) {
      var half = ROW * (de.nLines || 1) / 2 + 4;
      var lane = de.side < 0 ? de.top - 18 - half - 26 * lanesAbove++ : de.bottom + 18 + half + 26 * lanesBelow++;
      minY = Math.min(minY, lane - half - 6);
      laneMaxY = Math.max(laneMaxY, lane + half + 6);
      de.path = "M" + x1 + "," + y1 + " C" + (x1 + 30) + "," + y1 + " " + (gx + 10) + "," + lane + " " + (mid + 10) + "," + lane +
        " L" + (x2 - 40) + "," + lane + " C" + (x2 - 10) + "," + lane + " " + (x2 - 30) + "," + y2 + " " + x2 + "," + y2;
      de.anchor = { x: gx + gapWidth[a.col] / 2 + 10, y: lane };
    } else {
      var dx = (x2 - x1) / 2;
      de.path = "M" + x1 + "," + y1 + " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
      de.anchor = { x: mid, y: bezierY(x1, y1, x2, y2, mid) };
    }
  });
  // labels in one gap must not overlap: sort by height, push apart, then centre the stack on its edges
  var byGap = {};
  drawnEdges.forEach(function (de) {
    if (!de.labelWidth) return;
    de.labelH = ROW * de.nLines + 4;
    de.ly = de.anchor.y - de.labelH / 2;
    var key = de.from.col + ":" + (de.to.col - de.from.col > 1 ? "lane" : "near");
    (byGap[key] = byGap[key] || []).push(de);
  });
  Object.keys(byGap).forEach(function (key) {
    var list = byGap[key].sort(function (p, q) { return p.ly - q.ly; });
    var want = list.map(function (de) { return de.ly; });
    for (var i = 1; i < list.length; i++) {
      var prev = list[i - 1];
      if (list[i].ly < prev.ly + prev.labelH + 4) list[i].ly = prev.ly + prev.labelH + 4;
    }
    var shift = 0;
    list.forEach(function (de, k) { shift += de.ly - want[k]; });
    shift /= list.length;
    list.forEach(function (de) { de.ly -= shift; });
  });
  var maxY = Math.max(tallest, laneMaxY);
  drawnEdges.forEach(function (de) {
    if (de.labelH) { maxY = Math.max(maxY, de.ly + de.labelH); minY = Math.min(minY, de.ly); }
  });

  // ---- steps -----------------------------------------------------------------------------------

  var state = { example: 0, index: 0 };
  function visible(ex) {
    var out = [];
    doc.steps.forEach(function (s, i) { if (s.example === null || s.example === undefined || s.example === ex) out.push(i); });
    return out;
  }
  var steps = visible(0);

  // When each element of each value and gradient first shows: a position in the visible steps.
  // A value shows at the first step that computes it. Where a node's steps for one example (under
  // one heading) are as many as its elements, as the unit-by-unit walk of a chain gives them, the
  // k-th step computes element k, and each element shows at its own step.
  function revealTimes() {
    var found = { value: {}, grad: {} }, heading = { value: {}, grad: {} }, batchWide = { value: {}, grad: {} };
    var lastFwd = -1, lastBwd = -1, firstAfterFwd = Infinity, firstAfterBwd = Infinity, loss = Infinity;
    steps.forEach(function (i, pos) {
      var s = doc.steps[i], ph = PHASES[s.phase];
      var kind = ph <= PHASES.forward ? "value" : ph === PHASES.backward ? "grad" : null;
      if (kind && s.node && byName[s.node]) {
        if (s.example === null || s.example === undefined) {
          if (batchWide[kind][s.node] === undefined) batchWide[kind][s.node] = pos;
        } else {
          if (heading[kind][s.node] === undefined) heading[kind][s.node] = s.heading;
          if (s.heading === heading[kind][s.node]) (found[kind][s.node] = found[kind][s.node] || []).push(pos);
        }
      }
      if (ph === PHASES.forward) lastFwd = pos;
      if (ph === PHASES.backward) lastBwd = pos;
      if (ph > PHASES.forward && firstAfterFwd === Infinity) firstAfterFwd = pos;
      if (ph > PHASES.backward && firstAfterBwd === Infinity) firstAfterBwd = pos;
      if (ph === PHASES.loss && loss === Infinity) loss = pos;
    });
    var out = { value: {}, grad: {}, loss: loss === Infinity ? firstAfterFwd : loss };
    nodes.forEach(function (n) {
      var count = elementCount(n.name);
      ["value", "grad"].forEach(function (kind) {
        var list = found[kind][n.name] || [];
        var at;
        if (list.length) at = list[0];
        else if (batchWide[kind][n.name] !== undefined) at = batchWide[kind][n.name];
        else if (kind === "value") at = n.isInput ? 0 : (lastFwd >= 0 ? lastFwd : firstAfterFwd);
        else at = lastBwd >= 0 ? lastBwd : firstAfterBwd;
        var times = [];
        for (var k = 0; k < count; k++) times.push(count > 1 && list.length === count ? list[k] : at);
        out[kind][n.name] = times;
      });
    });
    return out;
  }
  var reveal = revealTimes();

  // ---- the page --------------------------------------------------------------------------------

  function el(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function svg(tag, attrs, parent, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  root.textContent = "";
  var header = el("header", {}, root);
  el("h1", {}, header, "Walkthrough of " + doc.example + (doc.title ? ": " + doc.title : ""));
  var sub = [];
  sub.push(doc.dtype || "float64");
  if (batch > 1) sub.push("batch of " + batch);
  if (doc.steps_before) sub.push("after " + doc.steps_before + " update" + (doc.steps_before === 1 ? "" : "s"));
  sub.push("numbers to " + digits + " significant digits");
  el("p", { "class": "sub" }, header, sub.join(" · "));

  var controls = el("div", { "class": "controls", role: "toolbar", "aria-label": "step through the walkthrough" }, root);
  var btnFirst = el("button", { id: "first", type: "button", title: "first step (Home)" }, controls, "« First");
  var btnPrev = el("button", { id: "prev", type: "button", title: "previous step (←)" }, controls, "◀ Prev");
  var btnNext = el("button", { id: "next", type: "button", title: "next step (→)" }, controls, "Next ▶");
  var btnLast = el("button", { id: "last", type: "button", title: "last step (End)" }, controls, "Last »");
  var counter = el("span", { id: "step-counter", "class": "counter" }, controls);
  var select = null;
  if (batch > 1) {
    var lab = el("label", { "for": "example", "class": "example-label" }, controls, "example ");
    select = el("select", { id: "example" }, lab);
    for (var n = 0; n < batch; n++) el("option", { value: String(n) }, select, String(n + 1) + " of " + batch);
  }
  el("span", { "class": "hint" }, controls, "← → step · Home End");

  var legend = el("p", { "class": "legend" }, root);
  el("span", { "class": "key-value" }, legend, "black: values (forward)");
  el("span", { "class": "key-grad" }, legend, "green: gradients ∂" + E + "/∂(value) (backward), on the edges they travel");
  el("span", { "class": "key-current" }, legend, "orange: this step");

  var figure = el("div", { "class": "figure", id: "figure" }, root);
  var pad = 12;
  var vbY = minY - pad, vbH = maxY - minY + 2 * pad, vbW = totalWidth + 2 * pad;
  var drawing = svg("svg", { id: "graph", viewBox: (-pad) + " " + vbY + " " + vbW + " " + vbH,
    role: "img", "aria-label": "the computational graph" }, figure);
  // as wide as the page, from 0.65 to 1.5 times its natural size; a wider drawing scrolls
  drawing.setAttribute("style", "width: clamp(" + Math.round(0.65 * vbW) + "px, 100%, " + Math.round(1.5 * vbW) + "px); height: auto;");
  svg("defs", {}, drawing).innerHTML =
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">' +
    '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>';
  var edgeLayer = svg("g", { "class": "edges" }, drawing);
  var boxLayer = svg("g", { "class": "boxes" }, drawing);
  var labelLayer = svg("g", { "class": "edge-labels" }, drawing);
  var note = el("p", { id: "overview-note", "class": "overview-note" }, root, collapsedNote);
  if (!collapsedNote) note.hidden = true;

  // boxes
  var valueEls = [];   // {el, node, k, kind: "value"|"grad"}
  boxes.forEach(function (b) {
    var g = svg("g", { "class": "box" + (b.group ? " group" : b.loss ? " loss" : b.isInput ? " input" : " node"),
      "data-node": b.name, transform: "translate(" + b.x + "," + b.y + ")" }, boxLayer);
    b.g = g;
    svg("rect", { width: b.width, height: b.height, rx: 8, ry: 8 }, g);
    if (b.group) {
      svg("text", { x: 10, y: ROW + 4, "class": "title" }, g, b.label);
      svg("text", { x: 10, y: 2 * ROW + 4, "class": "muted" }, g, "collapsed");
      return;
    }
    if (b.loss) {
      var t = svg("text", { x: 12, y: ROW + 3, "class": "title" }, g, E);
      svg("tspan", { "class": "op" }, t, "  " + (doc.loss.name || ""));
      var lt = svg("text", { x: 12, y: 2 * ROW + 5 }, g);
      svg("tspan", {}, lt, batch > 1 ? (doc.loss.reduction || "") + " = " : "= ");
      b.valueEl = svg("tspan", { "data-loss": "value", "class": "num", "data-known": "false" }, lt, "?");
      if (batch > 1) {
        svg("text", { x: 12, y: 3 * ROW + 5, "class": "muted" }, g, "over the batch of " + batch);
        var pt = svg("text", { x: 12, y: 4 * ROW + 5 }, g);
        b.exLabel = svg("tspan", {}, pt, "example 1: ");
        b.exEl = svg("tspan", { "data-loss": "example", "class": "num", "data-known": "false" }, pt, "?");
      }
      return;
    }
    var title = svg("text", { x: 10, y: ROW + 2, "class": "title" }, g, b.name);
    var row = 2;
    if (b.opRow) svg("text", { x: 10, y: row++ * ROW + 2, "class": "op" }, g, b.op);
    else svg("tspan", { "class": "op" }, title, "  " + b.op);
    b.vrows.forEach(function (r) {
      var t = svg("text", { x: 10, y: row * ROW + 4, "class": "value-row" }, g);
      svg("tspan", {}, t, r.label + " = ");
      valueEls.push({ el: svg("tspan", { "class": "num", "data-value-of": b.name, "data-index": r.k }, t, "?"), node: b.name, k: r.k, kind: "value" });
      row++;
    });
    b.vrows.forEach(function (r) {
      var t = svg("text", { x: 10, y: row * ROW + 4, "class": "grad-row" }, g);
      svg("tspan", {}, t, "∂" + r.label + " = ");
      valueEls.push({ el: svg("tspan", { "class": "num", "data-grad-of": b.name, "data-index": r.k }, t, "?"), node: b.name, k: r.k, kind: "grad" });
      row++;
    });
    if (b.more) svg("text", { x: 10, y: row * ROW + 4, "class": "muted" }, g, moreText(b.more));
  });

  // edges and their gradient labels
  var edgeEls = [];
  drawnEdges.forEach(function (de) {
    var p = svg("path", { d: de.path, "class": "edge" + (de.faint ? " faint" : ""), "marker-end": "url(#arrow)" }, edgeLayer);
    de.el = p;
    if (de.faint) return;
    var id = de.lossEdge ? "loss->" + graph.output : de.edge.id;
    p.setAttribute("data-edge", id);
    var lg = svg("g", { "class": "edge-label", "data-edge-label": id }, labelLayer);
    var lx = de.anchor.x - de.labelWidth / 2;
    if (Math.abs(de.ly + de.labelH / 2 - de.anchor.y) > 4) {
      svg("line", { x1: de.anchor.x, y1: de.anchor.y, x2: de.anchor.x, y2: de.ly + de.labelH / 2, "class": "leader" }, lg);
      svg("circle", { cx: de.anchor.x, cy: de.anchor.y, r: 2.5, "class": "leader-dot" }, lg);
    }
    svg("rect", { x: lx, y: de.ly, width: de.labelWidth, height: de.labelH, rx: 4, ry: 4 }, lg);
    de.labelEls = [];
    for (var k = 0; k < Math.min(de.count, MAX_EDGE_ELEMENTS); k++) {
      var t = svg("text", { x: lx + 5, y: de.ly + ROW * (k + 1) - 1 }, lg);
      de.labelEls.push(svg("tspan", { "class": "num", "data-grad-of": id, "data-index": k }, t, "?"));
    }
    if (de.count > MAX_EDGE_ELEMENTS) svg("text", { x: lx + 5, y: de.ly + ROW * (MAX_EDGE_ELEMENTS + 1) - 1, "class": "muted" }, lg, "… " + (de.count - MAX_EDGE_ELEMENTS) + " more");
    de.labelGroup = lg;
    edgeEls.push(de);
  });

  // the panel: this step's lines, and the contributions that add at a value
  var panel = el("section", { "class": "panel", id: "panel", "aria-live": "polite" }, root);
  var stepTitle = el("h2", { id: "step-title" }, panel);
  var batchNote = el("p", { id: "batch-note", "class": "batch-note" }, panel);
  var linesBox = el("div", { id: "step-lines", "class": "lines" }, panel);
  var contribBox = el("div", { id: "contributions", "class": "contributions" }, panel);

  // the footer: the loss, the training curve, the tutorial's errata
  var footer = el("footer", {}, root);
  var lossLine = el("p", { id: "loss-line" }, footer);
  if (doc.curve && doc.curve.loss && doc.curve.loss.length) drawCurve(el("div", { "class": "curve" }, footer), doc.curve);
  if (doc.errata && doc.errata.length) {
    var det = el("details", {}, footer);
    el("summary", {}, det, "Where the tutorial differs from the exact numbers (" + doc.errata.length + ")");
    var ul = el("ul", {}, det);
    doc.errata.forEach(function (r) {
      var text = typeof r === "string" ? r : (r.quantity !== undefined
        ? r.quantity + ": printed " + r.printed + ", exact " + r.exact + ". " + (r.why || "") : JSON.stringify(r));
      el("li", {}, ul, text);
    });
  }

  function drawCurve(box, c) {
    var W = 640, H = 220, L = 74, R = 16, T = 28, B = 40;
    var curve = c.loss, xs = c.update;
    var finite = curve.filter(function (v) { return v !== null; });
    var logy = finite.length > 0 && finite.every(function (v) { return v > 0; });
    var f = logy ? function (v) { return Math.log10(v); } : function (v) { return v; };
    var lo = Math.min.apply(null, finite.map(f)), hi = Math.max.apply(null, finite.map(f));
    if (hi === lo) { hi += 0.5; lo -= 0.5; }
    var N = curve.length - 1, x0 = xs[0], x1 = xs[N];
    var sx = function (i) { return L + (x1 > x0 ? (xs[i] - x0) / (x1 - x0) : 0.5) * (W - L - R); };
    var sy = function (v) { return T + (hi - f(v)) / (hi - lo) * (H - T - B); };
    var s = svg("svg", { id: "curve", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": "training curve", "data-points": curve.length, "data-scale": logy ? "log" : "linear" }, box);
    svg("text", { x: L, y: 16, "class": "title" }, s, E + " before each update and after the last (" + (doc.steps_before || N) +
      " updates" + (logy ? ", log scale" : "") + ")");
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" }, s);
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, "class": "axis" }, s);
    var ticks = [];
    if (logy) {
      var step = Math.max(1, Math.ceil((Math.ceil(hi) - Math.floor(lo)) / 6));
      for (var p = Math.ceil(lo); p <= Math.floor(hi); p += step) ticks.push(Math.pow(10, p));
      if (ticks.length < 2) ticks = [Math.pow(10, lo), Math.pow(10, hi)];
    } else {
      for (var k = 0; k <= 4; k++) ticks.push(lo + (hi - lo) * k / 4);
    }
    ticks.forEach(function (v) {
      var y = sy(v);
      svg("line", { x1: L - 4, y1: y, x2: W - R, y2: y, "class": "grid" }, s);
      svg("text", { x: L - 6, y: y + 4, "class": "tick", "text-anchor": "end" }, s, fmtNumber(v, 3));
    });
    [0, N].forEach(function (i) {
      svg("text", { x: sx(i), y: H - B + 16, "class": "tick", "text-anchor": "middle" }, s, String(xs[i]));
    });
    svg("text", { x: (L + W - R) / 2, y: H - 6, "class": "tick", "text-anchor": "middle" }, s, "update");
    var pts = [];
    curve.forEach(function (v, i) { if (v !== null) pts.push(sx(i).toFixed(1) + "," + sy(v).toFixed(1)); });
    svg("polyline", { points: pts.join(" "), "class": "curve-line" }, s);
    var last = curve[N];
    if (last !== null) {
      svg("circle", { cx: sx(N), cy: sy(last), r: 4, "class": "curve-dot" }, s);
      svg("text", { x: sx(N) - 6, y: sy(last) - 8, "class": "tick", "text-anchor": "end", "data-curve": "last" }, s, fmt(last));
    }
  }

  // ---- showing one step ------------------------------------------------------------------------

  function show() {
    var pos = state.index, ex = state.example;
    var s = doc.steps[steps[pos]];
    var ph = PHASES[s.phase];
    root.setAttribute("data-step", String(pos + 1));
    root.setAttribute("data-steps", String(steps.length));
    root.setAttribute("data-phase", s.phase);
    root.setAttribute("data-node", s.node || "");
    root.setAttribute("data-example", String(ex));
    counter.textContent = "step " + (pos + 1) + " of " + steps.length;
    btnFirst.disabled = btnPrev.disabled = pos === 0;
    btnNext.disabled = btnLast.disabled = pos === steps.length - 1;

    // values and gradients known so far
    valueEls.forEach(function (v) {
      var known = pos >= reveal[v.kind][v.node][v.k];
      var arr = v.kind === "value" ? doc.values[v.node] : doc.gradients[v.node];
      var flatEx = perExample(arr, ex);
      v.el.textContent = known && flatEx ? fmt(flatEx[v.k]) : "?";
      v.el.setAttribute("data-known", known ? "true" : "false");
    });
    edgeEls.forEach(function (de) {
      var times = reveal.grad[de.lossEdge ? graph.output : de.edge.source];
      var flatEx = de.grad !== null && de.grad !== undefined ? perExample(de.grad, ex) : null;
      var any = false;
      de.labelEls.forEach(function (t, k) {
        var known = flatEx !== null && pos >= times[k];
        t.textContent = known ? fmt(flatEx[k]) : "?";
        t.setAttribute("data-known", known ? "true" : "false");
        any = any || known;
      });
      de.labelGroup.setAttribute("class", "edge-label" + (any ? " known" : ""));
    });
    var lossKnown = pos >= reveal.loss;
    lossBox.valueEl.textContent = lossKnown ? fmt(doc.loss.value) : "?";
    lossBox.valueEl.setAttribute("data-known", lossKnown ? "true" : "false");
    if (lossBox.exEl) lossBox.exEl.setAttribute("data-known", lossKnown ? "true" : "false");
    if (lossBox.exEl) {
      lossBox.exLabel.textContent = "example " + (ex + 1) + ": ";
      lossBox.exEl.textContent = lossKnown && doc.loss.per_example ? fmt(doc.loss.per_example[ex]) : "?";
    }

    // the current box, and the edges this step uses
    var current = s.phase === "loss" ? lossBox : s.node ? boxOf(s.node) : null;
    boxes.forEach(function (b) {
      var cls = b.g.getAttribute("class").replace(/ current| param-update/g, "");
      if (b === current) cls += " current";
      if (s.phase === "update" && !s.node && !b.group && !b.loss && (doc.params ? paramNodes[b.name] : false)) cls += " param-update";
      b.g.setAttribute("class", cls);
      b.g.setAttribute("data-current", b === current ? "true" : "false");
    });
    drawnEdges.forEach(function (de) {
      var active = false;
      if (s.node && !de.faint) {
        if (ph <= PHASES.forward) active = !de.lossEdge && de.edge.consumer === s.node;
        else if (ph === PHASES.backward) active = de.lossEdge ? s.node === graph.output : de.edge.source === s.node;
      }
      if (s.phase === "loss" && de.lossEdge) active = true;
      de.el.setAttribute("class", "edge" + (de.faint ? " faint" : "") + (active ? (ph === PHASES.backward ? " arriving" : " feeding") : ""));
      if (de.labelGroup) de.labelGroup.setAttribute("data-active", active && ph === PHASES.backward ? "true" : "false");
    });
    if (current && current.g) scrollToBox(current);

    // the panel
    var where = [s.heading || PHASE_NAMES[s.phase] || s.phase];
    if (s.node) where.push(s.node);
    if (batch > 1) where.push(s.example === null || s.example === undefined ? "the whole batch" : "example " + (s.example + 1));
    stepTitle.textContent = where.join(" · ");
    var reduction = (doc.loss && doc.loss.reduction) || "sum";
    if (s.batch_sum) {
      batchNote.textContent = (s.phase === "loss" ? reduction : "sum") + " over the batch" +
        (s.phase === "loss" ? " of " + batch + " examples" : ": these numbers add up every example's contribution");
      batchNote.hidden = false;
    } else {
      batchNote.textContent = "";
      batchNote.hidden = true;
    }
    linesBox.textContent = "";
    s.lines.forEach(function (line) { el("div", { "class": "line" }, linesBox, line); });
    contribBox.textContent = "";
    contribBox.hidden = true;
    var arrivals = s.node && ph === PHASES.backward ? (doc.contributions || {})[s.node] || [] : [];
    if (arrivals.length > 1) {
      contribBox.hidden = false;
      var count = elementCount(s.node);
      el("h3", {}, contribBox, s.node + " feeds " + arrivals.length + " nodes: the gradients they send back add up");
      var table = el("table", {}, contribBox);
      arrivals.forEach(function (a) {
        var tr = el("tr", {}, table);
        el("td", {}, tr, "from " + a.from);
        el("td", { "class": "num", "data-contrib-from": a.from }, tr, vectorText(perExample(a.value, ex), 6));
      });
      var trs = el("tr", { "class": "sum" }, table);
      el("td", {}, trs, "sum = ∂" + E + "/∂" + s.node);
      el("td", { "class": "num", "data-contrib-sum": s.node }, trs, vectorText(perExample(doc.gradients[s.node], ex), 6));
      if (count > 1) el("p", { "class": "muted" }, contribBox, "element by element, for example " + (ex + 1) + "'s " + count + " elements");
    }

    // the footer
    var lossText = E + " = " + (lossKnown ? fmt(doc.loss.value) : "?");
    if (batch > 1) lossText += " (" + reduction + " over the batch of " + batch + ")";
    if (doc.loss.after_update !== null && doc.loss.after_update !== undefined && ph >= PHASES.update) {
      lossText += " · after the update: " + fmt(doc.loss.after_update);
    }
    lossLine.textContent = lossText;
  }

  var paramNodes = {};
  Object.keys(doc.params || {}).forEach(function (k) {
    var pos = doc.params[k].position;
    if (pos) paramNodes[pos[0]] = true;
  });

  function scrollToBox(b) {
    var scale = drawing.getBoundingClientRect().width / vbW || 1;
    var left = (b.x + pad) * scale, right = left + b.width * scale;
    if (left < figure.scrollLeft || right > figure.scrollLeft + figure.clientWidth) {
      figure.scrollLeft = Math.max(0, (left + right) / 2 - figure.clientWidth / 2);
    }
  }

  function go(pos) {
    state.index = Math.max(0, Math.min(steps.length - 1, pos));
    show();
  }
  btnFirst.addEventListener("click", function () { go(0); });
  btnPrev.addEventListener("click", function () { go(state.index - 1); });
  btnNext.addEventListener("click", function () { go(state.index + 1); });
  btnLast.addEventListener("click", function () { go(steps.length - 1); });
  document.addEventListener("keydown", function (ev) {
    if (ev.target && ev.target.tagName === "SELECT") return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var moves = { ArrowRight: 1, ArrowLeft: -1 };
    if (ev.key in moves) { go(state.index + moves[ev.key]); ev.preventDefault(); }
    else if (ev.key === "Home") { go(0); ev.preventDefault(); }
    else if (ev.key === "End") { go(steps.length - 1); ev.preventDefault(); }
  });
  if (select) {
    select.addEventListener("change", function () {
      var old = doc.steps[steps[state.index]], oldIndex = steps[state.index];
      var ex = Number(select.value);
      var next = visible(ex), pos = -1;
      if (old.example === null || old.example === undefined) {
        pos = next.indexOf(oldIndex);
      } else {                                       // the same step (phase, node, k-th of them) of the new example
        var same = function (s, e) { return s.phase === old.phase && s.node === old.node && s.example === e; };
        var k = 0;
        for (var i = 0; i < oldIndex; i++) if (same(doc.steps[i], old.example)) k++;
        var matches = next.filter(function (j) { return same(doc.steps[j], ex); });
        if (matches.length) pos = next.indexOf(matches[Math.min(k, matches.length - 1)]);
        if (pos < 0) pos = next.findIndex(function (j) { return doc.steps[j].phase === old.phase; });
      }
      state.example = ex;
      steps = next;
      reveal = revealTimes();
      go(pos < 0 ? 0 : pos);
    });
  }

  window.jaxbpWalkthrough = { fmtNumber: fmtNumber, go: go };   // for tests and the console
  go(0);
})();
