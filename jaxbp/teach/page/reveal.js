// When each number of the drawing first shows: a position in the steps being walked (one example's
// and the batch's). The drawing shows, at step s, every number that steps 0..s compute, so that it
// never lags the text. Where the document's steps carry items with refs (which number of the trace
// each line computes), those say it exactly; otherwise (an older document) a value shows at the
// first step of its node, and where a node's steps for one example are as many as its elements (a
// chain walked unit by unit) the k-th step computes element k. An edge's two numbers: the local
// derivative of its consumer with respect to that input (a `local` ref) and what the consumer sends
// back along it (a `sent` ref, or the source's gradient where it feeds one place). A number that no
// step of the walk computes (the Σ view walks the batch's steps only) shows at the last step.
JB.revealTimes = (function () {
"use strict";

// sumView: the Σ view walks the batch's steps only; its gradients (sums of the examples' ones, which those
// steps take as done) show from its first backward step
function revealTimes(doc, steps, nodes, elementCount, paramNodes, sumView) {
  var PHASES = { setup: 0, forward: 1, loss: 2, backward: 3, update: 4 };
  var byName = new Map();
  nodes.forEach(function (n) { byName.set(n.name, n); });
  var found = { value: new Map(), grad: new Map() }, heading = { value: new Map(), grad: new Map() };
  var batchWide = { value: new Map(), grad: new Map() }, paramGrad = new Map(), paramNew = new Map();
  var lastFwd = -1, lastBwd = -1, firstBwd = Infinity, firstAfterFwd = Infinity, firstAfterBwd = Infinity;
  var loss = Infinity, firstUpdate = Infinity;
  var out = { value: new Map(), grad: new Map(), local: new Map(), unit: new Array(steps.length).fill(null), loss: Infinity };
  steps.forEach(function (i, pos) {
    var s = doc.steps[i], ph = PHASES[s.phase];
    var kind = ph <= PHASES.forward ? "value" : ph === PHASES.backward ? "grad" : null;
    if (kind && s.node && byName.has(s.node)) {
      if (s.example === null || s.example === undefined) {
        if (!batchWide[kind].has(s.node)) batchWide[kind].set(s.node, pos);
        if (kind === "grad" && paramNodes.has(s.node) && !paramGrad.has(s.node)) paramGrad.set(s.node, pos);
      } else {
        if (!heading[kind].has(s.node)) heading[kind].set(s.node, s.heading);
        if (s.heading === heading[kind].get(s.node)) {
          if (!found[kind].has(s.node)) found[kind].set(s.node, []);
          found[kind].get(s.node).push(pos);
        }
      }
    }
    if (ph === PHASES.update && s.node && !paramNew.has(s.node)) paramNew.set(s.node, pos);
    if (ph === PHASES.forward) lastFwd = pos;
    if (ph === PHASES.backward) { lastBwd = pos; firstBwd = Math.min(firstBwd, pos); }
    if (ph > PHASES.forward && firstAfterFwd === Infinity) firstAfterFwd = pos;
    if (ph > PHASES.backward && firstAfterBwd === Infinity) firstAfterBwd = pos;
    if (ph === PHASES.loss && loss === Infinity) loss = pos;
    if (ph === PHASES.update && firstUpdate === Infinity) firstUpdate = pos;
  });
  out.loss = loss === Infinity ? firstAfterFwd : loss;
  nodes.forEach(function (n) {
    var count = elementCount(n.name);
    ["value", "grad"].forEach(function (kind) {
      var list = found[kind].get(n.name) || [];
      var at;
      if (list.length) at = list[0];
      else if (kind === "grad" && sumView) at = firstBwd;
      else if (batchWide[kind].has(n.name)) at = batchWide[kind].get(n.name);
      else if (kind === "value") at = n.isInput ? 0 : (lastFwd >= 0 ? lastFwd : firstAfterFwd);
      else at = lastBwd >= 0 ? lastBwd : firstAfterBwd;
      var times = [];
      for (var k = 0; k < count; k++) times.push(count > 1 && list.length === count ? list[k] : at);
      if (count > 1 && list.length === count) list.forEach(function (pos, k) { out.unit[pos] = k; });
      out[kind].set(n.name, times);
    });
    out.local.set(n.name, out.grad.get(n.name).slice());
  });
  var params = new Map();                            // "grad"|"new" -> node -> leaf -> [time per element]
  var defaults = { grad: function (node) { return paramGrad.has(node) ? paramGrad.get(node) : (lastBwd >= 0 ? lastBwd : firstAfterBwd); },
                   "new": function (node) { return paramNew.has(node) ? paramNew.get(node) : firstUpdate; } };
  params.set("grad", new Map()); params.set("new", new Map());
  out.param = function (kind, node, leaf, k) {
    var leaves = params.get(kind).get(node), times = leaves ? leaves.get(leaf) : undefined;
    return times && times[k] !== undefined ? times[k] : defaults[kind](node);
  };
  var edgeSeen = { local: new Map(), sent: new Map() };   // JSON [consumer, input slot] -> element -> position
  if (doc.steps.some(function (s) { return Array.isArray(s.items); })) fromRefs(doc, steps, out, params, byName, edgeSeen);
  return withEdges(out, steps.length - 1, edgeSeen);
}

// every time Infinity (no step of this walk computes it) made the last step; and out.edge: when the edge
// from input `slot` of `consumer` (its source `source`) shows element k's local derivative ("local") or
// what it sends back ("sent")
function withEdges(out, last, edgeSeen) {
  function shown(t) { return t === undefined || t === Infinity ? last : t; }
  ["value", "grad", "local"].forEach(function (kind) {
    out[kind].forEach(function (times) { times.forEach(function (t, k) { times[k] = shown(t); }); });
  });
  out.loss = shown(out.loss);
  var param = out.param;
  out.param = function (kind, node, leaf, k) {        // a new value shows only at an update step
    var t = param(kind, node, leaf, k);
    return kind === "grad" ? shown(t) : t;
  };
  out.edge = function (kind, consumer, slot, source, k) {
    var m = edgeSeen[kind].get(JSON.stringify([consumer, slot])), seen = m && m.has(k) ? m.get(k) : Infinity;
    var of = out.grad.get(kind === "sent" ? source : consumer) || [];
    var fallback = of[k] !== undefined ? of[k] : of[0];
    return shown(kind === "sent" ? Math.min(seen, fallback) : seen !== Infinity ? seen : fallback);
  };
  return out;
}

// the refs of the steps' items: the first step whose text computes each number
function fromRefs(doc, steps, out, params, byName, edgeSeen) {
  var seen = { value: new Map(), grad: new Map(), local: new Map() }, tables = JB.paramTables(doc);
  var shapeOf = new Map();
  doc.graph.inputs.concat(doc.graph.nodes).forEach(function (n) { shapeOf.set(n.name, n.shape || []); });
  function flatIndex(index, shape) {
    var k = 0;
    (index || []).forEach(function (i, d) { k = k * (shape[d] || 1) + i; });
    return k;
  }
  function first(map, key, k, pos) {
    if (!map.has(key)) map.set(key, new Map());
    var m = map.get(key);
    if (!m.has(k)) m.set(k, pos);
  }
  // an index of null means the whole array (a vectorized line: "t0 = [...]")
  function elements(index, shape) {
    if (index !== null && index !== undefined) return [flatIndex(index, shape)];
    var n = shape.reduce(function (a, b) { return a * b; }, 1), all = [];
    for (var k = 0; k < n; k++) all.push(k);
    return all;
  }
  steps.forEach(function (i, pos) {
    var s = doc.steps[i];
    if (s.unit !== undefined && s.unit !== null) out.unit[pos] = s.unit;
    (s.items || []).forEach(function (item) {
      var r = item.ref;
      if (!r) return;
      if (r.kind === "loss") { out.loss = Math.min(out.loss, pos); return; }
      if ((r.kind === "local" || r.kind === "sent") && byName.has(r.node)) {   // on the edge from input r.input
        var source = byName.get(r.node).inputs[r.input];
        elements(r.index, shapeOf.get(source) || []).forEach(function (k) {
          first(edgeSeen[r.kind], JSON.stringify([r.node, r.input]), k, pos);
        });
      }
      if (r.kind === "value" || r.kind === "grad" || r.kind === "local") {
        if (!byName.has(r.node)) return;
        var shape = shapeOf.get(r.node);
        elements(r.index, shape).forEach(function (k) { first(seen[r.kind], r.node, k, pos); });
        // a step that works one unit of a wide layer in full: that unit is the one it shows
        if (out.unit[pos] === null && r.node === s.node && r.kind !== "local" && r.index && r.index.length === 1) out.unit[pos] = r.index[0];
        return;
      }
      if (r.kind === "param_grad" || r.kind === "param_new") {
        var kind = r.kind === "param_grad" ? "grad" : "new", leaves = params.get(kind);
        if (!leaves.has(r.node)) leaves.set(r.node, new Map());
        var t = leaves.get(r.node);
        if (!t.has(r.leaf)) t.set(r.leaf, []);
        var table = tables.get(r.node) ? tables.get(r.node).get(r.leaf) : null;
        elements(r.index, table ? table.shape : []).forEach(function (k) {
          if (t.get(r.leaf)[k] === undefined) t.get(r.leaf)[k] = pos;
        });
      }
    });
  });
  ["value", "grad", "local"].forEach(function (kind) {
    seen[kind].forEach(function (m, node) {
      var times = out[kind].get(node);
      if (times) m.forEach(function (pos, k) { if (k < times.length) times[k] = pos; });
    });
  });
}
return revealTimes;
})();
