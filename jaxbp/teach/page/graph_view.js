// The box view: any graph, one box per value in columns by depth, its elements' values and
// gradients, its parameters' gradients and new values, and on each edge the local derivative of the
// consumer for that input (×∂) and the gradient it sends back along it. Larger graphs get an overview.
JB.graphView = function (ctx, figure) {
  "use strict";
  var doc = ctx.doc, fmt = ctx.fmt, graph = doc.graph, batch = ctx.batch, E = ctx.E;
  var nodes = ctx.nodes, byName = ctx.byName, edges = ctx.edges, svg = JB.svg;
  var elementName = ctx.elementName, elementCount = ctx.elementCount, contribution = ctx.contribution;
  var perExample = ctx.perExample, PHASES = ctx.PHASES, isSum = ctx.isSum;
  var params = JB.paramTables(doc);
  var locals = new Map();                                     // JSON [node, input slot] -> [B, *shape]
  (doc.local_derivatives || []).forEach(function (r) { locals.set(JSON.stringify([r.node, r.position]), r.value); });
  var MAX_DRAWN = 60;          // larger graphs get an overview: at most this many value boxes
  var MAX_ELEMENTS = 4;        // elements of a value listed in its box
  var MAX_EDGE_ELEMENTS = 3;   // elements of a gradient listed on an edge
  var CHAR = 9.15;             // width of one character at the drawing's font size (monospace, 15px)
  var ROW = 19;                // height of one text row

  // ---- which boxes are drawn (an overview for large graphs) ------------------------------------

  var maxDepth = 0;
  nodes.forEach(function (n) { maxDepth = Math.max(maxDepth, n.depth); });
  var columns = [];
  for (var d = 0; d <= maxDepth; d++) columns.push([]);
  nodes.forEach(function (n) { columns[n.depth].push(n); });
  var drawnColumns = columns.map(function (c, d) { return d; });
  var collapsedNote = "";
  var groupOf = new Map();                                    // a collapsed node -> the box that stands for it
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
        members.forEach(function (m) { groupOf.set(m.name, g); });
        boxes.push(g); hidden += members.length; groups++;
        return;
      }
      var col = columns[c];
      col.slice(0, slots).forEach(function (n) { n.col = ci; boxes.push(n); });
      if (col.length > slots) {
        var rest = col.slice(slots);
        var gg = { group: true, name: "group:" + c, col: ci, label: "+" + rest.length + " more at depth " + c, members: rest };
        rest.forEach(function (m) { groupOf.set(m.name, gg); });
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
  function boxOf(name) { return groupOf.get(name) || byName.get(name) || null; }

  // ---- text of each box (fixed for the whole walk, so the layout never moves) ------------------

  function valueRows(n) {
    var count = elementCount(n.name), rows = [];
    for (var k = 0; k < Math.min(count, MAX_ELEMENTS); k++) rows.push({ k: k, label: elementName(n.name, k, count) });
    return { rows: rows, more: Math.max(0, count - MAX_ELEMENTS), count: count };
  }
  function moreText(n) { return "… " + n + " more element" + (n === 1 ? "" : "s"); }
  function longest(list) { return list.reduce(function (m, s) { return Math.max(m, s.length); }, 0); }
  function widest(list) { return list.map(fmt).reduce(function (m, s) { return s.length > m.length ? s : m; }, ""); }
  // a node's parameter elements listed in its box (at most MAX_ELEMENTS): {node, leaf, k, t}, and how many more
  function paramRows(name) {
    var rows = [], total = 0;
    (params.get(name) || new Map()).forEach(function (t, leaf) {
      for (var k = 0; k < t.size && rows.length < MAX_ELEMENTS; k++) rows.push({ node: name, leaf: leaf, k: k, t: t });
      total += t.size;
    });
    return { rows: rows, more: total - rows.length };
  }
  var GRAD_MARK = batch > 1 ? "Σ∂ = " : "∂ = ";    // a parameter's gradient is always the batch's
  function shortName(r) {                              // in its node's box, hidden.w[0,1] is w[0,1]
    var name = r.t.names[r.k];
    return name.indexOf(r.node + ".") === 0 && name.length > r.node.length + 1 ? name.slice(r.node.length + 1) : name;
  }
  function paramText(r) {
    return shortName(r) + " " + GRAD_MARK + fmt(r.t.grad[r.k]) + (doc.update ? " → " + fmt(r.t.new_value[r.k]) : "");
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
    var vr = valueRows(b), pr = paramRows(b.name);
    b.vrows = vr.rows; b.more = vr.more; b.count = vr.count; b.prows = pr.rows; b.pmore = pr.more;
    var texts = [];
    vr.rows.forEach(function (r) {
      var each = ctx.allExamples(ctx.values.get(b.name), r.k);
      texts.push(r.label + " = " + widest(each), r.label + " = " + (batch > 1 ? ctx.shortBatchText(each) : ""));
      texts.push("∂" + r.label + " = " + widest(ctx.shownNumbers(ctx.gradients.get(b.name), r.k)));
    });
    pr.rows.forEach(function (r) { texts.push(paramText(r)); });
    // the op goes on a row of its own when it would make the box wider than its numbers
    b.opRow = (b.name + "  " + b.op).length > Math.max(longest(texts), 18);
    if (vr.more) texts.push(moreText(vr.more));
    if (pr.more) texts.push("… " + pr.more + " more parameters");
    texts.push(b.opRow ? b.name : b.name + "  " + b.op);
    if (b.opRow) texts.push(b.op);
    b.width = longest(texts) * CHAR + 22;
    var rows = 1 + (b.opRow ? 1 : 0) + 2 * vr.rows.length + (vr.more ? 1 : 0) + pr.rows.length + (pr.more ? 1 : 0);
    b.height = ROW * rows + 14;
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
  var seenGroupEdge = new Set();
  edges.forEach(function (e) {
    var sb = boxOf(e.source), cb = boxOf(e.consumer);
    if (!sb || !cb) return;
    if (sb.group || cb.group) {
      var key = JSON.stringify([sb.name, cb.name]);
      if (seenGroupEdge.has(key) || sb === cb) return;
      seenGroupEdge.add(key);
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
    var grad = de.lossEdge ? ctx.gradients.get(graph.output) : contribution(de.edge.source, de.edge.consumer, de.edge.use);
    de.grad = grad;
    var count = de.lossEdge ? elementCount(graph.output) : elementCount(de.edge.source);
    var local = de.lossEdge ? null : locals.get(JSON.stringify([de.edge.consumer, de.edge.slot]));
    de.local = local && local[0] !== undefined && JB.flat(local[0]).length === count ? local : null;
    var lines = Math.min(count, MAX_EDGE_ELEMENTS) + (count > MAX_EDGE_ELEMENTS ? 1 : 0);
    var width = 0;
    for (var k = 0; k < Math.min(count, MAX_EDGE_ELEMENTS); k++) {   // "×(local) → sent", as wide as it gets
      var head = de.local ? ("×(" + widest(ctx.allExamples(de.local, k)) + ") → ").length : 0;
      width = Math.max(width, head + widest(ctx.shownNumbers(grad, k)).length);
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

  // ---- drawing ----

  var pad = 12;
  var vbY = minY - pad, vbH = maxY - minY + 2 * pad, vbW = totalWidth + 2 * pad;
  var drawing = svg("svg", { id: "graph", viewBox: (-pad) + " " + vbY + " " + vbW + " " + vbH,
    role: "img", "aria-label": "the computational graph" }, figure);
  // as wide as the figure (it grows with the window and the zoom), at most twice its natural size,
  // and never taller than the window leaves room for
  drawing.setAttribute("style", "width: 100%; height: auto; max-width: " + Math.round(2 * vbW) + "px; max-height: calc(100vh - 240px);");
  svg("defs", {}, drawing).innerHTML =
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">' +
    '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>';
  var edgeLayer = svg("g", { "class": "edges" }, drawing);
  var boxLayer = svg("g", { "class": "boxes" }, drawing);
  var labelLayer = svg("g", { "class": "edge-labels" }, drawing);
  
  // boxes
  var valueEls = [];   // {el, node, k, kind: "value"|"grad"}
  var paramEls = [];   // paramRows' rows, drawn: {node, leaf, k, t, gradEl, newEl}
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
        b.exTitle = svg("title", {}, pt);
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
      valueEls.push({ el: svg("tspan", { "class": "num", "data-value-of": b.name, "data-index": r.k }, t, "?"), node: b.name, k: r.k,
                      kind: "value", title: svg("title", {}, t), room: Math.round((b.width - 22) / CHAR) - (r.label + " = ").length });
      row++;
    });
    b.vrows.forEach(function (r) {
      var t = svg("text", { x: 10, y: row * ROW + 4, "class": "grad-row" }, g);
      svg("tspan", {}, t, "∂" + r.label + " = ");
      valueEls.push({ el: svg("tspan", { "class": "num", "data-grad-of": b.name, "data-index": r.k }, t, "?"), node: b.name, k: r.k, kind: "grad" });
      row++;
    });
    if (b.more) svg("text", { x: 10, y: row++ * ROW + 4, "class": "muted" }, g, moreText(b.more));
    b.prows.forEach(function (r) { drawParamRow(g, r, row++); });
    if (b.pmore) svg("text", { x: 10, y: row * ROW + 4, "class": "muted" }, g, "… " + b.pmore + " more parameters");
  });
  // a parameter's row: its name, its gradient (the batch's, the one the update uses) and its new value
  function drawParamRow(g, r, row) {
    var t = svg("text", { x: 10, y: row * ROW + 4, "class": "param-row" }, g), name = r.t.names[r.k];
    svg("tspan", { "class": "pname" }, t, shortName(r) + " ");
    svg("tspan", { "class": "grad-row" }, t, GRAD_MARK);
    r.gradEl = svg("tspan", { "class": "num grad-row", "data-param-grad": name }, t, "?");
    if (doc.update) {
      svg("tspan", {}, t, " → ");
      r.newEl = svg("tspan", { "class": "num new", "data-param-new": name }, t, "?");
    }
    paramEls.push(r);
  }

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
    de.localEls = [];
    for (var k = 0; k < Math.min(de.count, MAX_EDGE_ELEMENTS); k++) {
      var t = svg("text", { x: lx + 5, y: de.ly + ROW * (k + 1) - 1 }, lg);
      if (de.local) de.localEls.push(drawLocal(t, id, k));
      de.labelEls.push(svg("tspan", { "class": "num", "data-grad-of": id, "data-index": k }, t, "?"));
    }
    if (de.count > MAX_EDGE_ELEMENTS) svg("text", { x: lx + 5, y: de.ly + ROW * (MAX_EDGE_ELEMENTS + 1) - 1, "class": "muted" }, lg, "… " + (de.count - MAX_EDGE_ELEMENTS) + " more");
    de.labelGroup = lg;
    edgeEls.push(de);
  });


  // "×(∂consumer/∂input) → " before what the edge sends; the brackets only around a negative number
  function drawLocal(t, id, k) {
    var part = svg("tspan", { "class": "local" }, t);
    svg("tspan", {}, part, "×");
    var open = svg("tspan", {}, part, ""), num = svg("tspan", { "class": "num", "data-local-of": id, "data-index": k }, part, "?");
    var close = svg("tspan", {}, part, "");
    svg("tspan", {}, part, " → ");
    return { part: part, open: open, num: num, close: close };
  }

  function update(pos, ex, s, reveal) {
    var ph = PHASES[s.phase];
    // values and gradients known so far (the Σ view: the batch's values, the gradients summed over it)
    valueEls.forEach(function (v) {
      var known = pos >= reveal[v.kind].get(v.node)[v.k];
      var arr = (v.kind === "value" ? ctx.values : ctx.gradients).get(v.node);
      var batchWide = v.kind === "value" && isSum(ex), list = batchWide ? ctx.allExamples(arr, v.k) : null;
      var flatEx = batchWide ? null : perExample(arr, ex);
      v.el.textContent = !known ? "?" : batchWide ? ctx.batchText(list, v.room) : flatEx ? fmt(flatEx[v.k]) : "?";
      v.el.setAttribute("data-known", known ? "true" : "false");
      if (v.title) v.title.textContent = known && batchWide ? ctx.batchTitle(list) : "";
    });
    paramEls.forEach(function (r) {
      var at = reveal.param("grad", r.node, r.leaf, r.k);
      if (batch === 1 && /^parameter/.test(byName.get(r.node).op)) at = Math.min(at, reveal.grad.get(r.node)[r.k]);
      r.gradEl.textContent = pos >= at ? fmt(r.t.grad[r.k]) : "?";
      if (r.newEl) r.newEl.textContent = pos >= reveal.param("new", r.node, r.leaf, r.k) ? fmt(r.t.new_value[r.k]) : "?";
    });
    edgeEls.forEach(function (de) { showEdge(de, pos, ex, reveal); });
    if (localKey) localKey.hidden = isSum(ex);
    var lossKnown = pos >= reveal.loss;
    lossBox.valueEl.textContent = lossKnown ? fmt(doc.loss.value) : "?";
    lossBox.valueEl.setAttribute("data-known", lossKnown ? "true" : "false");
    if (lossBox.exEl) lossBox.exEl.setAttribute("data-known", lossKnown ? "true" : "false");
    if (lossBox.exEl) {
      var each = doc.loss.per_example || [];
      lossBox.exLabel.textContent = isSum(ex) ? "examples: " : "example " + (ex + 1) + ": ";
      lossBox.exEl.textContent = !lossKnown || !each.length ? "?" : isSum(ex)
        ? ctx.batchText(each, Math.round((lossBox.width - 24) / CHAR) - "examples: ".length) : fmt(each[ex]);
      lossBox.exTitle.textContent = lossKnown && isSum(ex) ? ctx.batchTitle(each) : "";
    }

    // the current box, and the edges this step uses
    var current = s.phase === "loss" ? lossBox : s.node ? boxOf(s.node) : null;
    boxes.forEach(function (b) {
      var cls = b.g.getAttribute("class").replace(/ current| param-update/g, "");
      if (b === current) cls += " current";
      if (s.phase === "update" && !s.node && !b.group && !b.loss && ctx.paramNodes.has(b.name)) cls += " param-update";
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

  }

  // an edge's label: for each element, the local derivative (not in the Σ view: it is each example's own)
  // and what the consumer sends back, each from the step whose text computes it
  function showEdge(de, pos, ex, reveal) {
    var flatEx = de.grad !== null && de.grad !== undefined ? perExample(de.grad, ex) : null;
    var localEx = de.local && !isSum(ex) ? perExample(de.local, ex) : null;
    var any = false;
    de.labelEls.forEach(function (t, k) {
      var at = de.lossEdge ? reveal.grad.get(graph.output)[k] : reveal.edge("sent", de.edge.consumer, de.edge.slot, de.edge.source, k);
      var known = flatEx !== null && pos >= at;
      t.textContent = known ? fmt(flatEx[k]) : "?";
      t.setAttribute("data-known", known ? "true" : "false");
      any = any || known;
    });
    de.localEls.forEach(function (l, k) {
      var known = localEx !== null && pos >= reveal.edge("local", de.edge.consumer, de.edge.slot, de.edge.source, k);
      var text = known ? fmt(localEx[k]) : "?", negative = text.charAt(0) === "-";
      l.num.textContent = text;
      l.num.setAttribute("data-known", known ? "true" : "false");
      l.open.textContent = negative ? "(" : "";
      l.close.textContent = negative ? ")" : "";
      if (isSum(ex)) l.part.setAttribute("display", "none"); else l.part.removeAttribute("display");
      any = any || known;
    });
    de.labelGroup.setAttribute("class", "edge-label" + (any ? " known" : ""));
  }

  function scrollToBox(b) {
    var scale = drawing.getBoundingClientRect().width / vbW || 1;
    var left = (b.x + pad) * scale, right = left + b.width * scale;
    if (left < figure.scrollLeft || right > figure.scrollLeft + figure.clientWidth) {
      figure.scrollLeft = Math.max(0, (left + right) / 2 - figure.clientWidth / 2);
    }
  }

  var localKey = edgeEls.some(function (de) { return de.local; })   // not in the Σ view, which has no local derivatives
    ? JB.el("span", { "class": "key-local", id: "local-key" }, ctx.legend, "on an edge: ×∂(node)/∂(input) → what it sends back") : null;
  return { update: update, note: collapsedNote };
};
