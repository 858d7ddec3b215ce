// Shared by every view of the walkthrough page: number formatting, building DOM and SVG elements, and the document's
// user-keyed tables as Maps (a node may be called "constructor", "__proto__" or a closing script tag).
var JB = (function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

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

  function flat(v) {                                   // nested lists -> flat list, C order
    if (!Array.isArray(v)) return [v];
    var out = [];
    (function walk(x) { if (Array.isArray(x)) x.forEach(walk); else out.push(x); })(v);
    return out;
  }

  // A large array of the document comes packed, exactly: {"packed": "float64"|"float32", "shape": [...],
  // "base64": little-endian bytes}. parseDocument gives it back as nested lists, like every other array.
  function unpack(p) {
    var bytes = atob(p.base64), size = p.packed === "float32" ? 4 : 8;
    var view = new DataView(new ArrayBuffer(bytes.length));
    for (var i = 0; i < bytes.length; i++) view.setUint8(i, bytes.charCodeAt(i));
    var n = bytes.length / size, at = 0;
    function read() {
      var v = size === 4 ? view.getFloat32(at * 4, true) : view.getFloat64(at * 8, true);
      at++;
      return isFinite(v) ? v : null;                   // as the document writes NaN and infinity
    }
    function nest(d) {
      var out = [];
      for (var k = 0; k < p.shape[d]; k++) out.push(d === p.shape.length - 1 ? read() : nest(d + 1));
      return out;
    }
    return p.shape.length ? nest(0) : (n ? read() : null);
  }
  function parseDocument(text) {
    return JSON.parse(text, function (key, v) {
      return v && typeof v === "object" && !Array.isArray(v) && typeof v.packed === "string" &&
        typeof v.base64 === "string" && Array.isArray(v.shape) ? unpack(v) : v;
    });
  }

  // a JSON object keyed by user names -> a Map of its own keys (JSON.parse makes "__proto__" an own key)
  function toMap(obj) {
    var m = new Map();
    if (obj && typeof obj === "object") Object.keys(obj).forEach(function (k) { m.set(k, obj[k]); });
    return m;
  }

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

  // Every parameter element of the document, by node and leaf: {shape, size, names, value, grad,
  // new_value, trainable}, flat in C order: from param_arrays (the whole arrays), with the display
  // names of params' rows where the document has them (a large network has none: node.leaf[i,j]).
  function paramTables(doc) {
    if (doc.param_arrays) return fromArrays(doc);
    return fromRows(doc);
  }
  function shapeOf(v) { var s = []; while (Array.isArray(v)) { s.push(v.length); v = v[0]; } return s; }
  function fromArrays(doc) {
    var out = new Map(), display = new Map();
    toMap(doc.params).forEach(function (row, name) {
      if (row.position) display.set(JSON.stringify([row.position[0], row.position[1], row.position[2] || []]), name);
    });
    toMap(doc.param_arrays).forEach(function (leaves, node) {
      var m = new Map();
      toMap(leaves).forEach(function (a, leaf) {
        var t = { shape: shapeOf(a.value), value: flat(a.value), grad: flat(a.grad), new_value: flat(a.new_value),
                  trainable: a.trainable !== false };
        t.size = t.value.length;
        t.names = t.value.map(function (v, k) {
          var index = [], rest = k;
          for (var d = t.shape.length - 1; d >= 0; d--) { index.unshift(rest % t.shape[d]); rest = Math.floor(rest / t.shape[d]); }
          var name = display.get(JSON.stringify([node, leaf, index]));
          return name !== undefined ? name : node + "." + leaf + (index.length ? "[" + index.join(",") + "]" : "");
        });
        m.set(leaf, t);
      });
      out.set(node, m);
    });
    return out;
  }
  function fromRows(doc) {
    var out = new Map();
    toMap(doc.params).forEach(function (row, display) {
      var pos = row.position;
      if (!pos) return;
      var node = pos[0], leaf = pos[1], index = pos[2] || [];
      if (!out.has(node)) out.set(node, new Map());
      var leaves = out.get(node);
      if (!leaves.has(leaf)) leaves.set(leaf, { rows: [], shape: index.map(function () { return 0; }) });
      var t = leaves.get(leaf);
      index.forEach(function (i, d) { t.shape[d] = Math.max(t.shape[d], i + 1); });
      t.rows.push({ display: display, index: index, row: row });
    });
    out.forEach(function (leaves) {
      leaves.forEach(function (t) {
        var size = t.shape.reduce(function (a, b) { return a * b; }, 1);
        t.size = size;
        t.names = new Array(size); t.value = new Array(size); t.grad = new Array(size); t.new_value = new Array(size);
        t.trainable = true;
        t.rows.forEach(function (r) {
          var k = 0;
          r.index.forEach(function (i, d) { k = k * t.shape[d] + i; });
          t.names[k] = r.display; t.value[k] = r.row.value; t.grad[k] = r.row.grad; t.new_value[k] = r.row.new_value;
          if (r.row.trainable === false) t.trainable = false;
        });
        delete t.rows;
      });
    });
    return out;
  }

  // A chain of dense layers, each followed by its activation (the tutorials' networks), or null:
  // [{dense, act, input, units, inputs, activation, bias: "none"|"shared"|"per_unit"}]
  function chainLayers(doc) {
    var g = doc.graph;
    if (!g || g.inputs.length !== 1 || g.nodes.length % 2 !== 0 || g.nodes.length === 0) return null;
    var layers = [], prev = g.inputs[0].name;
    for (var k = 0; k < g.nodes.length; k += 2) {
      var d = g.nodes[k], a = g.nodes[k + 1];
      if (!/^dense\(/.test(d.op) || d.inputs.length !== 1 || d.inputs[0] !== prev) return null;
      if (a.inputs.length !== 1 || a.inputs[0] !== d.name || /^dense\(/.test(a.op)) return null;
      var bias = /bias=none/.test(d.op) ? "none" : /bias=shared/.test(d.op) ? "shared" : "per_unit";
      layers.push({ dense: d.name, act: a.name, input: prev, activation: a.op, bias: bias,
                    units: (d.shape || [0])[0], inputs: null });
      prev = a.name;
    }
    if (prev !== g.output) return null;
    var sizes = toMap(doc.values);
    layers.forEach(function (L) {
      var v = sizes.get(L.input);
      L.inputs = v ? flat(v[0]).length : 0;
      var w = sizes.get(L.dense);
      if (w) L.units = flat(w[0]).length;
    });
    return layers;
  }

  return { SVG: SVG, fmtNumber: fmtNumber, flat: flat, toMap: toMap, el: el, svg: svg, parseDocument: parseDocument,
           paramTables: paramTables, chainLayers: chainLayers };
})();
