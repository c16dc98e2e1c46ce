/* hooked-bimt circuit view. Self-contained: no imports, no fetches; data comes from the JSON
   script tag inside the root element. Draws the full network once per layout on a canvas, the
   circuit as SVG on top, and reports what it drew as data-* attributes on the root. */
function hbCircuitGraph(root) {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(root.querySelector("script.hb-data").textContent);
  var L = D.widths.length - 1;
  var E = D.edges, nE = E.s.length;
  var state = { layout: D.layout, widthBy: D.width_by, hl: null };
  var POS = "#2166ac", NEG = "#b2182b";

  function fmt(x) { return (x === null || x === undefined) ? "\u2014" : Number(x).toPrecision(4); }
  function hookOf(l, role) {
    if (l === 0) return "hook_in";
    if (l === L) return "hook_logits";
    return "blocks." + (l - 1) + ".hook_" + role;
  }
  function nodeName(l, i) {
    if (l === 0 || l === L) return hookOf(l, "post") + "[" + i + "]";
    return hookOf(l, "post") + "[" + i + "] (input " + hookOf(l, "pre") + "[" + i + "])";
  }
  function edgeName(k) {
    var l = E.layer[k];
    return hookOf(l, "post") + "[" + E.s[k] + "] \u2192 " + hookOf(l + 1, "pre") + "[" + E.r[k] + "]";
  }
  function value(k) { return state.widthBy === "effect" ? E.e[k] : E.w[k]; }

  /* adjacency for click-to-highlight: outgoing circuit edges per node "l:i" */
  var outEdges = {}, inEdges = {};
  for (var k = 0; k < nE; k++) {
    var a = E.layer[k] + ":" + E.s[k], b = (E.layer[k] + 1) + ":" + E.r[k];
    (outEdges[a] = outEdges[a] || []).push(k);
    (inEdges[b] = inEdges[b] || []).push(k);
  }

  /* ---------- DOM skeleton ---------- */
  root.insertAdjacentHTML("beforeend",
    '<div class="hb-bar"><span class="hb-title"></span>' +
    '<span class="hb-group">layout <button data-layout="bimt">BIMT</button><button data-layout="layered">layered</button></span>' +
    '<span class="hb-group">width <button data-width="effect">|effect|</button><button data-width="weight">|weight|</button></span>' +
    '<button class="hb-clear">clear highlight</button></div>' +
    '<div class="hb-main"><div class="hb-stage"><svg class="hb-svg"></svg></div><div class="hb-legend"></div></div>' +
    '<div class="hb-tip"></div>');
  root.querySelector(".hb-title").textContent = D.title;
  var stage = root.querySelector(".hb-stage"), svg = root.querySelector(".hb-svg");
  var tip = root.querySelector(".hb-tip"), legend = root.querySelector(".hb-legend");
  if (!D.has_effects) root.querySelector('button[data-width="effect"]').disabled = true;
  var bgCanvases = {};

  /* ---------- background: the full network, drawn once per layout ---------- */
  function b64ToInt8(s) {
    var bin = atob(s), out = new Int8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = (bin.charCodeAt(i) << 24) >> 24;
    return out;
  }
  var bgWeights = D.background ? D.background.map(function (b) { return b64ToInt8(b.q); }) : null;
  function backgroundCanvas(lay) {
    if (!bgWeights) return null;
    if (bgCanvases[state.layout]) return bgCanvases[state.layout];
    var dpr = Math.max(1, window.devicePixelRatio || 1), W = lay.size[0], H = lay.size[1];
    var c = document.createElement("canvas");
    c.className = "hb-bg"; c.width = Math.round(W * dpr); c.height = Math.round(H * dpr);
    c.style.width = W + "px"; c.style.height = H + "px";
    var ctx = c.getContext("2d"); ctx.scale(dpr, dpr); ctx.lineWidth = 0.5;
    var NB = 6, paths = [];
    for (var p = 0; p < 2 * NB; p++) paths.push(new Path2D());
    var drawn = 0;
    for (var l = 0; l < L; l++) {
      var q = bgWeights[l], nin = D.widths[l], nout = D.widths[l + 1];
      var P0 = lay.positions[l], P1 = lay.positions[l + 1];
      for (var j = 0; j < nout; j++) {
        for (var i = 0; i < nin; i++) {
          var v = q[j * nin + i]; if (v === 0) continue;
          var bin = Math.min(NB - 1, Math.floor(Math.abs(v) / 128 * NB));
          var path = paths[(v > 0 ? 0 : NB) + bin];
          path.moveTo(P0[i][0], P0[i][1]); path.lineTo(P1[j][0], P1[j][1]); drawn++;
        }
      }
    }
    for (var p2 = 0; p2 < 2 * NB; p2++) {
      ctx.strokeStyle = p2 < NB ? POS : NEG;
      var lv = ((p2 % NB) + 1) / NB;
      ctx.globalAlpha = 0.004 + 0.12 * lv * lv;
      ctx.stroke(paths[p2]);
    }
    c.setAttribute("data-background-edges", drawn);
    bgCanvases[state.layout] = c;
    return c;
  }

  /* ---------- colours ---------- */
  var HEAT = [[247, 247, 247], [254, 224, 139], [253, 141, 60], [215, 48, 31], [127, 0, 0]];
  function heatColor(t) {
    t = Math.max(0, Math.min(1, t)) * (HEAT.length - 1);
    var a = Math.floor(Math.min(t, HEAT.length - 2)), f = t - a, c0 = HEAT[a], c1 = HEAT[a + 1];
    return "rgb(" + [0, 1, 2].map(function (m) { return Math.round(c0[m] + f * (c1[m] - c0[m])); }).join(",") + ")";
  }

  /* ---------- the circuit, as SVG ---------- */
  function render() {
    var t1 = performance.now();
    var lay = D.layouts[state.layout], W = lay.size[0], H = lay.size[1];
    stage.style.width = W + "px"; stage.style.height = H + "px";
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var old = stage.querySelector("canvas.hb-bg"); if (old) stage.removeChild(old);
    var bg = backgroundCanvas(lay); if (bg) stage.insertBefore(bg, svg);
    var P = lay.positions, parts = [];
    if (lay.frames) lay.frames.forEach(function (f, l) {
      parts.push('<polygon class="hb-frame" points="' + f.map(function (p) { return p.join(","); }).join(" ") + '"/>');
      parts.push('<text class="hb-layer" x="' + (f[1][0] + 8) + '" y="' + (f[1][1] - 4) + '" text-anchor="start">' +
                 (l === 0 ? "hook_in" : l === L ? "hook_logits" : "blocks." + (l - 1)) + '</text>');
    });
    else for (var l0 = 0; l0 <= L; l0++) {
      var xs = P[l0].map(function (p) { return p[0]; });
      var xm = (Math.min.apply(null, xs) + Math.max.apply(null, xs)) / 2;
      parts.push('<text class="hb-layer" x="' + xm + '" y="24" text-anchor="middle">' +
                 (l0 === 0 ? "hook_in" : l0 === L ? "hook_logits" : "blocks." + (l0 - 1)) + '</text>');
    }
    /* input heat map */
    var heat = D.heat[state.widthBy] || D.heat.weight;
    if (D.input_shape && lay.cell) {
      var hmax = Math.max.apply(null, heat) || 1, u = lay.cell[0], v = lay.cell[1];
      for (var i = 0; i < D.widths[0]; i++) {
        var c = P[0][i], x0 = c[0] - (u[0] + v[0]) / 2, y0 = c[1] - (u[1] + v[1]) / 2;
        parts.push('<polygon class="hb-pixel" data-l="0" data-i="' + i + '" fill="' + heatColor(heat[i] / hmax) +
          '" points="' + [x0, y0, x0 + u[0], y0 + u[1], x0 + u[0] + v[0], y0 + u[1] + v[1], x0 + v[0], y0 + v[1]]
            .map(function (z) { return z.toFixed(1); }).join(" ") + '"/>');
      }
    }
    /* edges, weakest first so the strong ones sit on top */
    var mag = new Float64Array(nE), mmax = 0;
    for (var k = 0; k < nE; k++) { var val = value(k); mag[k] = val === null ? 0 : Math.abs(val); mmax = Math.max(mmax, mag[k]); }
    mmax = mmax || 1;
    var order = Array.from({ length: nE }, function (_, k) { return k; }).sort(function (a, b) { return mag[a] - mag[b]; });
    order.forEach(function (k) {
      var l = E.layer[k], p = P[l][E.s[k]], q = P[l + 1][E.r[k]], val = value(k), t = mag[k] / mmax;
      var col = E.w[k] >= 0 ? POS : NEG;  /* always the weight's sign: ACDC's kept edges all have effect > 0 */
      parts.push('<line class="edge" data-k="' + k + '" x1="' + p[0] + '" y1="' + p[1] + '" x2="' + q[0] + '" y2="' + q[1] +
        '" stroke="' + col + '" stroke-width="' + (0.5 + 3.5 * Math.sqrt(t)).toFixed(2) +
        '" stroke-opacity="' + (0.25 + 0.7 * Math.sqrt(t)).toFixed(2) + '"/>');
    });
    /* neurons */
    for (var l = 0; l <= L; l++) {
      if (l === 0 && D.input_shape) continue;
      var r = l === L ? 10 : (l === 0 ? 2 : 4.5);
      for (var i2 = 0; i2 < D.widths[l]; i2++) {
        var pp = P[l][i2], inC = D.in_circuit[l][i2];
        parts.push('<circle class="node' + (inC ? "" : " hb-out") + '" data-l="' + l + '" data-i="' + i2 +
                   '" cx="' + pp[0] + '" cy="' + pp[1] + '" r="' + r + '"/>');
        if (l === L) parts.push('<text class="hb-label" x="' + pp[0] + '" y="' + (pp[1] + 4) + '" text-anchor="middle">' +
                                D.labels[i2].replace(/&/g, "&amp;").replace(/</g, "&lt;") + '</text>');
      }
    }
    svg.innerHTML = parts.join("");
    applyHighlight();
    updateLegend();
    root.querySelectorAll("button[data-layout]").forEach(function (b) { b.classList.toggle("hb-on", b.dataset.layout === state.layout); });
    root.querySelectorAll("button[data-width]").forEach(function (b) { b.classList.toggle("hb-on", b.dataset.width === state.widthBy); });
    root.setAttribute("data-edges-drawn", svg.querySelectorAll("line.edge").length);
    root.setAttribute("data-layout", state.layout);
    root.setAttribute("data-width-by", state.widthBy);
    root.setAttribute("data-render-ms", (performance.now() - t1).toFixed(1));
  }

  function updateLegend() {
    var what = state.widthBy === "effect" ? "effect size" : "weight";
    legend.innerHTML =
      '<div><b>' + D.n_edges + '</b> of ' + D.n_total_edges + ' edges (sparsity ' + (100 * D.sparsity).toFixed(2) + '%)</div>' +
      '<div><span class="hb-sw" style="background:' + POS + '"></span>positive / <span class="hb-sw" style="background:' + NEG +
      '"></span>negative <b>weight</b></div>' +
      '<div>line width \u221d |' + what + '|</div>' +
      (D.has_effects ? '' : '<div class="hb-note">this circuit records no effect sizes: colours and widths use the weights</div>') +
      '<div><span class="hb-dot"></span>neuron in the circuit, <span class="hb-dot hb-out"></span>outside</div>' +
      (D.background ? '<div>faint: the full network (all ' + D.n_total_edges + ' weights, opacity \u221d |weight|)</div>' : '') +
      (D.input_shape ? '<div>input ' + D.input_shape.join("\u00d7") + ': <span class="hb-grad"></span> \u03a3 |' + what +
        '| of each pixel\'s circuit edges</div>' : '') +
      '<div class="hb-hint">hover: names and numbers; click a neuron or pixel: its paths to the output</div>';
  }

  /* ---------- click: downstream paths ---------- */
  function downstream(l, i) {
    var seenE = {}, seenN = {}, stack = [l + ":" + i];
    seenN[stack[0]] = true;
    while (stack.length) {
      var key = stack.pop(), outs = outEdges[key] || [];
      outs.forEach(function (k) {
        seenE[k] = true;
        var nk = (E.layer[k] + 1) + ":" + E.r[k];
        if (!seenN[nk]) { seenN[nk] = true; stack.push(nk); }
      });
    }
    return { edges: seenE, nodes: seenN };
  }
  function applyHighlight() {
    svg.classList.toggle("hb-dim", !!state.hl);
    if (!state.hl) return;
    var h = downstream(state.hl[0], state.hl[1]);
    svg.querySelectorAll("line.edge").forEach(function (el) { if (h.edges[el.dataset.k]) el.classList.add("hb-hl"); });
    svg.querySelectorAll("[data-l]").forEach(function (el) { if (h.nodes[el.dataset.l + ":" + el.dataset.i]) el.classList.add("hb-hl"); });
    root.setAttribute("data-highlighted-edges", Object.keys(h.edges).length);
  }

  /* ---------- tooltips ---------- */
  function sumAbs(list, arr) { return (list || []).reduce(function (s, k) { return s + Math.abs(arr[k] || 0); }, 0); }
  function describe(el) {
    if (el.classList.contains("edge")) {
      var k = +el.dataset.k;
      return edgeName(k) + "\nweight: " + fmt(E.w[k]) + "\neffect: " + fmt(E.e[k]);
    }
    var l = +el.dataset.l, i = +el.dataset.i, key = l + ":" + i, lines = [nodeName(l, i)];
    if (l === L) lines[0] += "  (" + D.labels[i] + ")";
    if (l === 0 && D.input_shape) lines.push("pixel row " + Math.floor(i / D.input_shape[1]) + ", col " + (i % D.input_shape[1]));
    if (l > 0) lines.push("bias: " + fmt(D.bias[l - 1][i]));
    lines.push((D.in_circuit[l][i] ? "in" : "not in") + " the circuit: " + (inEdges[key] || []).length + " edges in, " +
               (outEdges[key] || []).length + " out");
    lines.push("\u03a3|weight| of its circuit edges: " + fmt(sumAbs(inEdges[key], E.w) + sumAbs(outEdges[key], E.w)));
    if (D.has_effects) lines.push("\u03a3|effect| of its circuit edges: " + fmt(sumAbs(inEdges[key], E.e) + sumAbs(outEdges[key], E.e)));
    return lines.join("\n");
  }
  svg.addEventListener("mousemove", function (ev) {
    var el = ev.target.closest("[data-k], [data-l]");
    if (!el) { tip.style.display = "none"; return; }
    tip.textContent = describe(el); tip.style.display = "block";
    var box = root.getBoundingClientRect();
    tip.style.left = (ev.clientX - box.left + 14) + "px"; tip.style.top = (ev.clientY - box.top + 14) + "px";
  });
  svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  svg.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-l]");
    state.hl = el ? [+el.dataset.l, +el.dataset.i] : null;
    svg.querySelectorAll(".hb-hl").forEach(function (x) { x.classList.remove("hb-hl"); });
    applyHighlight();
  });
  root.querySelector(".hb-bar").addEventListener("click", function (ev) {
    var b = ev.target.closest("button"); if (!b) return;
    if (b.dataset.layout) state.layout = b.dataset.layout;
    if (b.dataset.width) state.widthBy = b.dataset.width;
    if (b.classList.contains("hb-clear")) state.hl = null;
    render();
  });

  function reportResources() {
    var n = (performance.getEntriesByType ? performance.getEntriesByType("resource").length : -1);
    root.setAttribute("data-resources", n);
  }
  render();
  root.setAttribute("data-first-render-ms", (performance.now() - t0).toFixed(1));
  reportResources();
  window.addEventListener("load", reportResources);
}
