// The training curve: the loss before each update and after the last (the document's curve), and a
// marker that the training slider moves to a snapshot's (update, loss).
JB.drawCurve = function (box, c, opts) {
  "use strict";
  var svg = JB.svg, fmt = opts.fmt, E = opts.E;
  var W = 640, H = 220, L = 74, R = 16, T = 28, B = 40;
  var curve = c.loss, xs = c.update;
  var finite = curve.filter(function (v) { return v !== null; });
  var logy = finite.length > 0 && finite.every(function (v) { return v > 0; });
  var f = logy ? function (v) { return Math.log10(v); } : function (v) { return v; };
  var lo = Math.min.apply(null, finite.map(f)), hi = Math.max.apply(null, finite.map(f));
  if (hi === lo) { hi += 0.5; lo -= 0.5; }
  var N = curve.length - 1, x0 = xs[0], x1 = xs[N];
  var ux = function (u) { return L + (x1 > x0 ? (u - x0) / (x1 - x0) : 0.5) * (W - L - R); };
  var sx = function (i) { return ux(xs[i]); };
  var sy = function (v) { return T + (hi - f(v)) / (hi - lo) * (H - T - B); };
  var s = svg("svg", { id: "curve", viewBox: "0 0 " + W + " " + H, role: "img",
    "aria-label": "training curve", "data-points": curve.length, "data-scale": logy ? "log" : "linear" }, box);
  svg("text", { x: L, y: 16, "class": "title" }, s, E + " before each update and after the last (" + (opts.updates || N) +
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
    svg("text", { x: L - 6, y: y + 4, "class": "tick", "text-anchor": "end" }, s, JB.fmtNumber(v, 3));
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
  var marker = null;
  // the slider's marker at (update u, loss v): both the trainer's numbers, from the document
  function mark(u, v) {
    if (!marker) marker = svg("circle", { r: 7, "class": "curve-marker", id: "curve-marker" }, s);
    marker.setAttribute("cx", ux(u));
    marker.setAttribute("cy", v === null ? T : sy(v));
    marker.setAttribute("data-update", String(u));
    marker.setAttribute("data-loss", v === null ? "non-finite" : fmt(v));
  }
  return { mark: mark };
};
