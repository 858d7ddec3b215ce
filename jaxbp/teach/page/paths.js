// The chain-rule path of a neuron or a weight in the unit view, shown when it is clicked or focused:
// every path from the loss to it with the factor of each hop (dE/dout at the output, each unit's
// local derivative, each weight), and the document's total, which is the sum over the paths. Every
// factor and the total are the document's numbers; nothing is multiplied here.
JB.pathPanel = function (ctx, view, box) {
  "use strict";
  var el = JB.el, fmt = ctx.fmt, E = ctx.E, layers = view.layers, MAX_PATHS = 12;
  var params = JB.paramTables(ctx.doc);
  var panel = el("div", { id: "path", "class": "path-panel", hidden: "" }, box);
  var localRows = new Map();
  (ctx.doc.local_derivatives || []).forEach(function (r) { localRows.set(r.node, r.value); });
  var example = function () { return ctx.example(); };

  function name(node, k) { return ctx.elementName(node, k, ctx.elementCount(node)); }
  function valueOf(map, node, k) { var f = ctx.perExample(map.get(node), example()); return f ? f[k] : undefined; }
  function local(l, k) {                               // d out / d net of unit k in layer l, this example
    var v = localRows.get(layers[l].act), f = v ? JB.flat(v[example()]) : null;
    return { text: "d" + name(layers[l].act, k) + "/d" + name(layers[l].dense, k), value: f ? f[k] : undefined };
  }
  function weight(l, j, i) {                           // the weight from unit i of layer l's input to its unit j
    var w = params.get(layers[l].dense).get("w"), at = j * layers[l].inputs + i;
    return { text: w.names[at], value: w.value[at] };
  }
  // every path from the loss down to unit k of layer l's output (l = -1: the input k), as factor lists
  function paths(l, k) {
    var last = layers.length - 1, out = [];
    (function walk(layer, unit, factors) {
      if (out.length > MAX_PATHS) return;
      if (layer === last) {
        var g = { text: "∂" + E + "/∂" + name(layers[last].act, unit), value: valueOf(ctx.gradients, layers[last].act, unit) };
        out.push([g].concat(factors));
        return;
      }
      for (var j = 0; j < layers[layer + 1].units; j++) {
        walk(layer + 1, j, [local(layer + 1, j), weight(layer + 1, j, unit)].concat(factors));
      }
    })(l, k, []);
    return out;
  }
  function factorsText(list) {
    var text = list.map(function (f) { return f.text + " (" + (f.value === undefined ? "?" : fmt(f.value)) + ")"; }).join(" × ");
    return [text, list.map(function (f) { return f.value === undefined ? null : f.value; })];
  }
  // lines: [text, factors] (factors: the numbers of the text, for tests and the console) or [text]
  function show(title, lines, totalText, totalValue) {
    panel.hidden = false;
    panel.textContent = "";
    el("h3", {}, panel, title);
    var ol = el("ol", {}, panel);
    lines.forEach(function (t) {
      var li = el("li", {}, ol, t[0]);
      if (t[1]) li.setAttribute("data-factors", JSON.stringify(t[1]));
    });
    var total = el("p", { "class": "path-total" }, panel, totalText + " = ");
    el("span", { "class": "num", "data-path-total": "" }, total, fmt(totalValue));
    el("p", { "class": "muted" }, panel, "Each factor and the total are the walkthrough's own numbers (example " +
      (example() + 1) + "). Esc closes.");
  }
  // the Σ view: each path's factors are one example's, so only the total (summed over the batch) is shown
  function showSum(title, totalText, totalValue) {
    panel.hidden = false;
    panel.textContent = "";
    el("h3", {}, panel, title);
    el("p", {}, panel, "Each example has its own factors: pick an example above to see its paths.");
    var total = el("p", { "class": "path-total" }, panel, totalText + " (summed over the batch) = ");
    el("span", { "class": "num", "data-path-total": "" }, total, fmt(totalValue));
  }

  function forUnit(u) {
    var l = u.kind === "input" ? -1 : u.layer, node = u.kind === "input" ? layers[0].input : layers[l].act;
    var what = "∂" + E + "/∂" + name(node, u.k);
    if (ctx.isSum(example())) return showSum(what, what, valueOf(ctx.gradients, node, u.k));
    var list = paths(l, u.k), more = list.length > MAX_PATHS;
    var lines = list.slice(0, MAX_PATHS).map(factorsText);
    if (more) lines.push(["… and more paths: every unit of every later layer makes one"]);
    show("∂" + E + "/∂" + name(node, u.k) + ": " + (list.length === 1 ? "one path" : "the sum over " +
      (more ? "many" : list.length) + " paths") + " from the loss", lines,
      "sum = ∂" + E + "/∂" + name(node, u.k), valueOf(ctx.gradients, node, u.k));
  }
  function forEdge(e) {
    var L = layers[e.layer], j = e.dst.k, t = e.param, n = t.names[e.index];
    if (ctx.isSum(example())) return showSum("∂" + E + "/∂" + n, "∂" + E + "/∂" + n, t.grad[e.index]);
    var input = e.bias ? { text: "1 (the bias unit)", value: 1 } : { text: name(L.input, e.src.k), value: valueOf(ctx.values, L.input, e.src.k) };
    var list = paths(e.layer, j).slice(0, MAX_PATHS).map(function (p) { return factorsText(p.concat([local(e.layer, j), input])); });
    var delta = { text: "δ " + name(L.dense, j) + " = ∂" + E + "/∂" + name(L.dense, j), value: valueOf(ctx.gradients, L.dense, j) };
    var together = factorsText([delta, input]);
    list.push(["all paths together: " + together[0], together[1]]);
    show("∂" + E + "/∂" + n + ": every path from the loss to " + n, list,
      (ctx.batch > 1 ? "Σ over the batch: " : "") + "∂" + E + "/∂" + n, t.grad[e.index]);
  }

  view.units.forEach(function (col) {
    col.forEach(function (u) {
      if (u.kind === "bias") return;
      u.g.addEventListener("click", function () { forUnit(u); });
      u.g.addEventListener("focus", function () { forUnit(u); });
    });
  });
  view.edges.forEach(function (e) {
    if (!e.param || !e.hit) return;
    e.hit.addEventListener("click", function () { forEdge(e); });
    e.hit.addEventListener("focus", function () { forEdge(e); });
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") panel.hidden = true; });
  return { panel: panel };
};
