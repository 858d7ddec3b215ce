// The walkthrough page: reads the document, picks a view (neurons and weights for small dense chains,
// matrices for wide ones, boxes for any other graph), and steps through the document's steps.
// It formats the document's numbers and computes none of its own, but for the Σ batch view, which adds up
// the gradients the document records for each example.
(function () {
  "use strict";

  var PHASES = { setup: 0, forward: 1, loss: 2, backward: 3, update: 4 };
  var PHASE_NAMES = { setup: "Setup", forward: "Forward", loss: "Loss", backward: "Backward", update: "Update" };
  var UNIT_VIEW_MAX = 16;      // dense layers up to this many units (and inputs) are drawn neuron by neuron,
  var UNIT_VIEW_WEIGHTS = 40;  // and up to this many weights, so that every weight's label fits; wider: matrices
  var el = JB.el, flat = JB.flat, toMap = JB.toMap;

  var doc = JB.parseDocument(document.getElementById("walkthrough-data").textContent);
  var root = document.getElementById("walkthrough");
  var digits = doc.digits || 6;
  var fmt = function (x) { return JB.fmtNumber(x, digits); };
  var E = (doc.loss && doc.loss.display_name) || "E";
  var batch = doc.batch || 1;
  var values = toMap(doc.values), gradients = toMap(doc.gradients), contributions = toMap(doc.contributions);
  var names = toMap(doc.names);

  // The Σ view's "example": every gradient is the sum over the batch of the per-example gradients the
  // document records (the page adds them up), and every value is the batch's list of values.
  var SUM = "sum";
  function isSum(ex) { return ex === SUM; }
  function perExample(arr, n) {                        // (B, *shape) -> the flat elements of example n, or their sum
    if (arr === undefined || arr === null) return null;
    if (!isSum(n)) return flat(arr[n]);
    var total = flat(arr[0]).slice();
    for (var e = 1; e < arr.length; e++) {
      flat(arr[e]).forEach(function (v, k) { total[k] = total[k] === null || v === null ? null : total[k] + v; });
    }
    return total;
  }
  function allExamples(arr, k) {                       // element k of an array in every example of the batch
    var out = [];
    if (arr === undefined || arr === null) return out;
    for (var n = 0; n < batch; n++) out.push(flat(arr[n])[k]);
    return out;
  }
  // a per-example number in the Σ view, where `room` characters are free: one number where every example
  // has the same, else the batch's list where it fits, else "—" (the title lists the batch)
  function batchText(list, room) {
    var texts = list.map(fmt);
    if (texts.every(function (t) { return t === texts[0]; })) return texts[0];
    var all = "[" + texts.join(", ") + "]";
    return all.length <= room ? all : "—";
  }
  function shownNumbers(arr, k) {                      // every number a gradient's label may show: each example's, Σ
    var list = allExamples(arr, k);
    if (batch > 1 && arr) list.push(perExample(arr, SUM)[k]);
    return list;
  }
  // the Σ view's text of a batch's values where it is short enough for the drawing to make room for it, else ""
  var BATCH_LIST = 24;
  function shortBatchText(list) { var t = batchText(list, BATCH_LIST); return t === "—" ? "" : t; }
  function batchTitle(list) {
    return list.map(function (v, n) { return "example " + (n + 1) + ": " + fmt(v); }).join(" · ");
  }
  function vectorText(list, limit) {
    if (list.length === 1) return fmt(list[0]);
    var shown = list.slice(0, limit).map(fmt);
    if (list.length > limit) shown.push("… " + (list.length - limit) + " more");
    return "[" + shown.join(", ") + "]";
  }

  // ---- the graph -------------------------------------------------------------------------------

  var graph = doc.graph;
  var nodes = [];                                      // every input and node: {name, op, inputs, depth}
  var byName = new Map();
  graph.inputs.forEach(function (i) {
    nodes.push({ name: i.name, op: "input", inputs: [], depth: 0, isInput: true, shape: i.shape });
  });
  graph.nodes.forEach(function (n) {
    nodes.push({ name: n.name, op: n.op, inputs: n.inputs || [], depth: n.depth || 0, isInput: false });
  });
  nodes.forEach(function (n, k) { n.order = k; n.consumers = []; byName.set(n.name, n); });
  var edges = [];                                      // source -> consumer, one per use
  nodes.forEach(function (c) {
    var seen = new Map();
    c.inputs.forEach(function (s, slot) {
      var use = (seen.get(s) || 0) + 1;
      seen.set(s, use);
      var id = c.name + "->" + s + (use > 1 ? "#" + use : "");
      edges.push({ source: s, consumer: c.name, id: id, use: use - 1, slot: slot });
      if (byName.has(s)) byName.get(s).consumers.push(c.name);
    });
  });
  function elementName(node, k, count) {
    var list = names.get(node);
    if (list && list[k] !== undefined) return list[k];
    return count === 1 ? node : node + "[" + k + "]";
  }
  function elementCount(node) {
    var v = values.get(node);
    return v ? flat(v[0]).length : 0;
  }
  // the gradient a consumer sends back to one of its inputs: the matching entry of contributions
  function contribution(source, consumer, use) {
    var list = contributions.get(source) || [];
    var k = 0;
    for (var i = 0; i < list.length; i++) {
      if (list[i].from === consumer) {
        if (k === use) return list[i].value;
        k++;
      }
    }
    if (list.length === 0 && byName.has(source) && byName.get(source).consumers.length === 1) {
      return gradients.get(source);                    // one consumer: its contribution is the gradient
    }
    return null;
  }
  var paramNodes = new Set();
  toMap(doc.params).forEach(function (row) { if (row.position) paramNodes.add(row.position[0]); });

  // ---- steps -----------------------------------------------------------------------------------

  var state = { example: 0, index: 0 };
  function visible(ex) {                               // the steps of one example and the batch's; Σ: the batch's
    var out = [];
    doc.steps.forEach(function (s, i) { if (s.example === null || s.example === undefined || s.example === ex) out.push(i); });
    return out;
  }
  var steps = visible(0);

  var reveal = JB.revealTimes(doc, steps, nodes, elementCount, paramNodes, false);

  // ---- the page --------------------------------------------------------------------------------

  root.textContent = "";
  var header = el("header", {}, root);
  var heading = typeof doc.heading === "string" ? doc.heading
    : "Walkthrough of " + doc.example + (doc.title ? ": " + doc.title : "");
  el("h1", { title: heading }, header, heading);
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
    el("option", { value: SUM }, select, "Σ batch");
  }
  var btnPresent = el("button", { id: "present", type: "button", title: "presenter mode: the drawing and this step only (P)" },
    controls, "Present");
  var hint = el("span", { "class": "hint" }, controls, "← → step · Home End · P present");

  var legend = el("p", { "class": "legend" }, root);
  el("span", { "class": "key-value" }, legend, "black: values (forward)");
  el("span", { "class": "key-grad" }, legend, "green: gradients ∂" + E + "/∂(value) (backward)");
  el("span", { "class": "key-current" }, legend, "orange: this step");

  var figure = el("div", { "class": "figure", id: "figure" }, root);
  var ctx = { doc: doc, fmt: fmt, E: E, batch: batch, nodes: nodes, byName: byName, edges: edges,
              values: values, gradients: gradients, contributions: contributions, names: names,
              elementName: elementName, elementCount: elementCount, contribution: contribution,
              perExample: perExample, allExamples: allExamples, shownNumbers: shownNumbers, isSum: isSum,
              batchText: batchText, shortBatchText: shortBatchText, batchTitle: batchTitle,
              PHASES: PHASES, paramNodes: paramNodes, legend: legend,
              example: function () { return state.example; } };
  var layers = JB.chainLayers(doc);
  var small = layers && layers.every(function (L) { return L.units <= UNIT_VIEW_MAX && L.inputs <= UNIT_VIEW_MAX &&
    L.units * L.inputs <= UNIT_VIEW_WEIGHTS; });
  var kind = small ? "units" : layers ? "matrices" : "boxes";
  root.setAttribute("data-view", kind);
  var view = kind === "units" ? JB.unitView(ctx, figure, layers) : kind === "matrices" ? JB.matrixView(ctx, figure, layers)
    : JB.graphView(ctx, figure);
  if (kind === "units") {
    JB.pathPanel(ctx, view, root);
    hint.textContent += " · click a neuron or a weight";
  }
  var sumKey = el("span", { "class": "key-sum", id: "sum-key", hidden: "", title: "each gradient is the sum over the " +
    "batch of the per-example gradients the document records, added up by this page; values list the batch" }, legend,
    "Σ: each gradient adds up the examples' recorded ones");
  var note = el("p", { id: "overview-note", "class": "overview-note" }, root, view.note || "");
  if (!view.note) note.hidden = true;

  // the panel: this step's lines, and the contributions that add at a value
  var panel = el("section", { "class": "panel", id: "panel", "aria-live": "polite" }, root);
  var stepTitle = el("h2", { id: "step-title" }, panel);
  var batchNote = el("p", { id: "batch-note", "class": "batch-note" }, panel);
  var linesBox = el("div", { id: "step-lines", "class": "lines" }, panel);
  var contribBox = el("div", { id: "contributions", "class": "contributions" }, panel);

  // the footer: the loss, the training curve and its slider, the tutorial's errata
  var footer = el("footer", {}, root);
  var lossLine = el("p", { id: "loss-line" }, footer);
  // with snapshots the slider and the curve stand right under the drawing; otherwise the curve is in the footer
  var snapshots = doc.snapshots && doc.snapshots.updates && doc.snapshots.updates.length;
  var training = snapshots ? el("section", { "class": "training", id: "training" }) : footer;
  if (snapshots) root.insertBefore(training, panel);
  var curve = null, slider = null;
  if (doc.curve && doc.curve.loss && doc.curve.loss.length) {
    curve = JB.drawCurve(el("div", { "class": "curve" }, training), doc.curve, { fmt: fmt, E: E, updates: doc.steps_before });
  }
  if (snapshots) {
    slider = JB.trainingSlider(ctx, training, view, curve);
    training.insertBefore(training.lastChild, training.firstChild);   // the slider before the curve
  }
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
    sumKey.hidden = !isSum(ex);
    counter.textContent = "step " + (pos + 1) + " of " + steps.length;
    btnFirst.disabled = btnPrev.disabled = pos === 0;
    btnNext.disabled = btnLast.disabled = pos === steps.length - 1;
    view.update(pos, ex, s, reveal);
    showPanel(s, ph, ex);
    var lossKnown = pos >= reveal.loss;
    var reduction = (doc.loss && doc.loss.reduction) || "sum";
    var lossText = E + " = " + (lossKnown ? fmt(doc.loss.value) : "?");
    if (batch > 1) lossText += " (" + reduction + " over the batch of " + batch + ")";
    if (doc.loss.after_update !== null && doc.loss.after_update !== undefined && ph >= PHASES.update) {
      lossText += " · after the update: " + fmt(doc.loss.after_update);
    }
    lossLine.textContent = lossText;
  }

  function showPanel(s, ph, ex) {
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
    var arrivals = s.node && ph === PHASES.backward ? contributions.get(s.node) || [] : [];
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
      el("td", { "class": "num", "data-contrib-sum": s.node }, trs, vectorText(perExample(gradients.get(s.node), ex), 6));
      if (count > 1) {
        el("p", { "class": "muted" }, contribBox, "element by element, " +
          (isSum(ex) ? "each summed over the batch" : "for example " + (ex + 1) + "'s " + count + " elements"));
      }
    }
  }

  function go(pos) {
    state.index = Math.max(0, Math.min(steps.length - 1, pos));
    if (slider && slider.active()) slider.leave();
    show();
  }
  function present(on) {
    root.classList.toggle("presenter", on);
    btnPresent.setAttribute("aria-pressed", on ? "true" : "false");
  }
  btnFirst.addEventListener("click", function () { go(0); });
  btnPrev.addEventListener("click", function () { go(state.index - 1); });
  btnNext.addEventListener("click", function () { go(state.index + 1); });
  btnLast.addEventListener("click", function () { go(steps.length - 1); });
  btnPresent.addEventListener("click", function () { present(!root.classList.contains("presenter")); });
  document.addEventListener("keydown", function (ev) {
    var tag = ev.target && ev.target.tagName;
    if (tag === "SELECT" || tag === "INPUT") return;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var moves = { ArrowRight: 1, ArrowLeft: -1 };
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") { go(state.index + moves[ev.key]); ev.preventDefault(); }
    else if (ev.key === "Home") { go(0); ev.preventDefault(); }
    else if (ev.key === "End") { go(steps.length - 1); ev.preventDefault(); }
    else if (ev.key === "p" || ev.key === "P") { present(!root.classList.contains("presenter")); ev.preventDefault(); }
    else if (ev.key === "Escape") present(false);
  });
  if (select) {
    select.addEventListener("change", function () {
      var old = doc.steps[steps[state.index]], oldIndex = steps[state.index];
      var ex = isSum(select.value) ? SUM : Number(select.value);
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
      reveal = JB.revealTimes(doc, steps, nodes, elementCount, paramNodes, isSum(ex));
      go(pos < 0 ? 0 : pos);
    });
  }

  window.jaxbpWalkthrough = { fmtNumber: JB.fmtNumber, go: go, present: present };   // for tests and the console
  go(0);
})();
