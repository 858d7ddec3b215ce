// The training slider: with `explain --updates N` the document records up to 200 snapshots of every
// parameter and the loss (the trainer's own numbers). Dragging the slider shows one snapshot's weights
// in the view and moves the loss curve's marker to its (update, loss); nothing is recomputed.
JB.trainingSlider = function (ctx, box, view, curve) {
  "use strict";
  var el = JB.el, snap = ctx.doc.snapshots, S = snap.updates.length;
  var tables = JB.toMap(snap.params);
  var wrap = el("div", { "class": "slider", id: "slider" }, box);
  var label = el("label", { "for": "snapshot" }, wrap, "training: ");
  var input = el("input", { id: "snapshot", type: "range", min: "0", max: String(S - 1), step: "1", value: String(S - 1) }, label);
  var readout = el("span", { id: "snapshot-readout", "class": "readout" }, wrap);
  var live = el("button", { id: "snapshot-off", type: "button", title: "back to the walkthrough's own numbers" }, wrap, "this pass");
  var flatCache = new Map();
  function snapshotOf(node, leaf, s) {              // flat C-order elements of one leaf at snapshot s
    var key = JSON.stringify([node, leaf, s]);
    if (!flatCache.has(key)) {
      var leaves = tables.get(node);
      var arr = leaves ? JB.toMap(leaves).get(leaf) : undefined;
      flatCache.set(key, arr ? JB.flat(arr[s]) : null);
    }
    return flatCache.get(key);
  }
  function showAt(s) {
    var u = snap.updates[s], loss = snap.loss[s];
    readout.textContent = "after " + u + " update" + (u === 1 ? "" : "s") + ": " + ctx.E + " = " + ctx.fmt(loss);
    readout.setAttribute("data-update", String(u));
    if (view.showSnapshot) {
      view.showSnapshot(function (node, leaf, index) {
        var f = snapshotOf(node, leaf, s);
        return f ? f[index] : undefined;
      });
    }
    if (curve) curve.mark(u, loss);
    box.setAttribute("data-snapshot", String(s));
  }
  function leave() {
    box.removeAttribute("data-snapshot");
    readout.textContent = "drag to see the weights through training";
    if (view.showLive) view.showLive();
  }
  input.addEventListener("input", function () { showAt(Number(input.value)); });
  live.addEventListener("click", leave);
  readout.textContent = "drag to see the weights through training";
  return { showAt: showAt, leave: leave, active: function () { return box.hasAttribute("data-snapshot"); } };
};
