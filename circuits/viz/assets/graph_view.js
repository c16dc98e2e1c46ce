/* hooked-bimt circuit view for any circuit graph (transformer bridges, the zoo): units in rows,
   input at the bottom. Self-contained: no imports, no fetches; data comes from the JSON script tag
   inside the root element; reports what it drew as data-* attributes on the root. */
function hbGraphView(root) {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(root.querySelector("script.hb-data").textContent);
  var U = D.units, E = D.edges, nU = U.label.length, nE = E.s.length;
  var KIND_COLORS = { q: "#1f77b4", k: "#e6550d", v: "#31a354", mlp_in: "#756bb1", pre: "#756bb1" };
  var OTHER = ["#8c564b", "#d6616b", "#17becf", "#bcbd22"];
  var state = { hl: null };

  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;"); }
  function fmt(x) { return (x === null || x === undefined) ? "\u2014" : Number(x).toPrecision(4); }
  function kindColor(k) {
    var name = D.kinds[k];
    if (k === D.output_kind) return "#444";
    return KIND_COLORS[name] || OTHER[k % OTHER.length];
  }
  function edgeName(k) {
    return D.hooks[E.sh[k]] + "[" + E.si[k] + "] \u2192 " + D.hooks[E.rh[k]] + "[" + E.ri[k] + "]";
  }

  var outEdges = {}, inEdges = {};
  for (var k = 0; k < nE; k++) {
    (outEdges[E.s[k]] = outEdges[E.s[k]] || []).push(k);
    (inEdges[E.r[k]] = inEdges[E.r[k]] || []).push(k);
  }

  var PL = D.placement, BD = PL ? PL.backdrop : null;
  if (PL) root.classList.add("hb-placed");
  root.insertAdjacentHTML("beforeend",
    '<div class="hb-bar"><span class="hb-title"></span><button class="hb-clear">clear highlight</button>' +
    (BD ? '<button class="hb-backdrop hb-on">network</button>' : '') + '</div>' +
    '<div class="hb-main"><div class="hb-stage"><svg class="hb-svg"></svg></div><div class="hb-legend"></div></div>' +
    '<div class="hb-tip"></div>');
  root.querySelector(".hb-title").textContent = D.title;
  var stage = root.querySelector(".hb-stage"), svg = root.querySelector(".hb-svg");
  var tip = root.querySelector(".hb-tip"), legend = root.querySelector(".hb-legend");

  var W = D.size[0], H = D.size[1], uw = D.unit_width, boxW = Math.max(6, uw * 0.8), boxH = uw >= 30 ? 24 : 8;
  /* where an edge into receiver hook rh of unit u lands: its port on the unit's bottom side */
  function port(u, rh) {
    var ps = U.ports[u], j = ps.indexOf(rh), n = ps.length, xy = U.xy[u];
    var x = n > 1 ? xy[0] - boxW / 2 + boxW * (j + 0.5) / n : xy[0];
    return [x, xy[1] + boxH / 2];
  }
  function top(u) { var xy = U.xy[u]; return [xy[0], xy[1] - boxH / 2]; }

  /* a placement's backdrop: the caller's points and weighted lines, once, on a canvas under the SVG */
  function toScreen(p) {
    var F = PL.frame;
    return [F.left + (p[0] - F.x0) * F.sx, F.height - F.bottom - (p[1] - F.y0) * F.sy];
  }
  function backdropCanvas() {
    var dpr = Math.max(1, window.devicePixelRatio || 1), NB = 8, paths = [], drawn = 0;
    var c = document.createElement("canvas");
    c.className = "hb-bg"; c.width = Math.round(W * dpr); c.height = Math.round(H * dpr);
    c.style.width = W + "px"; c.style.height = H + "px";
    var ctx = c.getContext("2d"); ctx.scale(dpr, dpr);
    var P = BD.points.map(toScreen);
    for (var p = 0; p < 3 * NB; p++) paths.push(new Path2D());
    for (var k = 0; k < BD.a.length; k++) {
      var s = BD.strength[k]; if (s <= 0) continue;
      var bin = Math.min(NB - 1, Math.floor(s * NB)), a = P[BD.a[k]], b = P[BD.b[k]];
      var path = paths[(BD.sign[k] + 1) * NB + bin];
      path.moveTo(a[0], a[1]); path.lineTo(b[0], b[1]); drawn++;
    }
    var SIGN = ["#1f77b4", "#555", "#d62728"];  /* negative, unsigned, positive */
    for (var q = 0; q < 3 * NB; q++) {
      var lv = ((q % NB) + 0.5) / NB;
      ctx.strokeStyle = SIGN[Math.floor(q / NB)]; ctx.globalAlpha = 0.5 * lv; ctx.lineWidth = 0.3 + 1.4 * lv;
      ctx.stroke(paths[q]);
    }
    ctx.globalAlpha = 1; ctx.fillStyle = "#222";
    var r = P.length > 400 ? 1 : 1.6;
    P.forEach(function (xy) { ctx.beginPath(); ctx.arc(xy[0], xy[1], r, 0, 2 * Math.PI); ctx.fill(); });
    root.setAttribute("data-backdrop-lines", drawn);
    root.setAttribute("data-backdrop-points", P.length);
    return c;
  }

  function render() {
    var t1 = performance.now();
    stage.style.width = W + "px"; stage.style.height = H + "px";
    if (BD && !stage.querySelector("canvas.hb-bg")) stage.insertBefore(backdropCanvas(), svg);
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var parts = [];
    /* row labels: the caller's (placement) or one per row of units */
    if (PL) PL.row_labels.forEach(function (rl) {
      parts.push('<text class="hb-layer" x="12" y="' + (toScreen([0, rl[0]])[1] + 4).toFixed(1) + '">' + esc(rl[1]) + '</text>');
    });
    else D.rows.forEach(function (r, n) {
      var y = null;
      for (var u = 0; u < nU; u++) if (U.row[u] === r) { y = U.xy[u][1]; break; }
      parts.push('<text class="hb-layer" x="12" y="' + (y + 4) + '">' + esc(D.row_labels[n]) + '</text>');
    });
    /* edges, weakest first */
    var mag = new Float64Array(nE), mmax = 0;
    for (var k = 0; k < nE; k++) { mag[k] = E.e[k] === null ? 0 : Math.abs(E.e[k]); mmax = Math.max(mmax, mag[k]); }
    var order = Array.from({ length: nE }, function (_, k) { return k; }).sort(function (a, b) { return mag[a] - mag[b]; });
    order.forEach(function (k) {
      var p = top(E.s[k]), q = port(E.r[k], E.rh[k]), t = mmax > 0 ? mag[k] / mmax : 0.5;
      var dy = Math.max(30, (p[1] - q[1]) * 0.45);
      var d = "M" + p[0].toFixed(1) + "," + p[1].toFixed(1) + " C" + p[0].toFixed(1) + "," + (p[1] - dy).toFixed(1) + " " +
              q[0].toFixed(1) + "," + (q[1] + dy).toFixed(1) + " " + q[0].toFixed(1) + "," + q[1].toFixed(1);
      var neg = E.e[k] !== null && E.e[k] < 0;
      parts.push('<path class="edge hb-kind-' + esc(D.kinds[E.kind[k]]) + (neg ? " hb-neg" : "") + '" data-k="' + k + '" d="' + d +
        '" stroke="' + kindColor(E.kind[k]) + '" stroke-width="' + (0.8 + 4.5 * Math.sqrt(t)).toFixed(2) +
        '" stroke-opacity="' + (0.35 + 0.6 * Math.sqrt(t)).toFixed(2) + '"/>');
    });
    /* units: a box per unit, port ticks on its bottom side */
    for (var u = 0; u < nU; u++) {
      var xy = U.xy[u], inC = U.in_circuit[u];
      parts.push('<rect class="node' + (inC ? "" : " hb-out") + '" data-u="' + u + '" x="' + (xy[0] - boxW / 2).toFixed(1) +
        '" y="' + (xy[1] - boxH / 2).toFixed(1) + '" width="' + boxW.toFixed(1) + '" height="' + boxH + '" rx="4"/>');
      if (boxH >= 20) {
        parts.push('<text class="hb-unit' + (inC ? "" : " hb-out") + '" x="' + xy[0] + '" y="' + (xy[1] + 4) +
                   '" text-anchor="middle">' + esc(U.label[u]) + '</text>');
        if (U.ports[u].length > 1) U.ports[u].forEach(function (rh, j) {
          var pp = port(u, rh), kind = U.port_kinds[u][j];
          parts.push('<text class="hb-port" x="' + pp[0].toFixed(1) + '" y="' + (pp[1] + 10).toFixed(1) +
                     '" text-anchor="middle" fill="' + kindColor(kind) + '">' + esc(D.kinds[kind]) + '</text>');
        });
      }
    }
    svg.innerHTML = parts.join("");
    applyHighlight();
    root.setAttribute("data-edges-drawn", svg.querySelectorAll("path.edge").length);
    root.setAttribute("data-units-drawn", svg.querySelectorAll("rect.node").length);
    root.setAttribute("data-render-ms", (performance.now() - t1).toFixed(1));
  }
  function updateLegend() {
    var kinds = D.kinds.map(function (name, k) {
      return '<span class="hb-kind"><span class="hb-sw" style="background:' + kindColor(k) + '"></span>' + esc(name) + '</span>';
    }).join(" ");
    legend.innerHTML =
      '<div><b>' + D.n_edges + '</b> of ' + D.n_total_edges + ' edges (sparsity ' + (100 * D.sparsity).toFixed(2) + '%)</div>' +
      '<div>edge colour: the input it feeds ' + kinds + '</div>' +
      (D.has_effects ? '<div>line width \u221d |effect size|; dashed: negative effect</div>'
                     : '<div class="hb-note">this circuit records no effect sizes: all edges drawn alike</div>') +
      '<div><span class="hb-box"></span>unit in the circuit, <span class="hb-box hb-out"></span>outside</div>' +
      (BD ? '<div>under the circuit: ' + esc(BD.description || "the network") + ' (button \u201cnetwork\u201d hides it)</div>' : '') +
      '<div class="hb-hint">hover: names and effect sizes; click a unit: its paths to the output</div>';
  }

  function downstream(u0) {
    var seenE = {}, seenN = {}, stack = [u0];
    seenN[u0] = true;
    while (stack.length) {
      (outEdges[stack.pop()] || []).forEach(function (k) {
        seenE[k] = true;
        if (!seenN[E.r[k]]) { seenN[E.r[k]] = true; stack.push(E.r[k]); }
      });
    }
    return { edges: seenE, nodes: seenN };
  }
  function applyHighlight() {
    svg.classList.toggle("hb-dim", state.hl !== null);
    svg.querySelectorAll(".hb-hl").forEach(function (x) { x.classList.remove("hb-hl"); });
    if (state.hl === null) { root.removeAttribute("data-highlighted-edges"); return; }
    var h = downstream(state.hl);
    svg.querySelectorAll("path.edge").forEach(function (el) { if (h.edges[el.dataset.k]) el.classList.add("hb-hl"); });
    svg.querySelectorAll("rect.node").forEach(function (el) { if (h.nodes[el.dataset.u]) el.classList.add("hb-hl"); });
    root.setAttribute("data-highlighted-edges", Object.keys(h.edges).length);
  }

  function describe(el) {
    if (el.dataset.k !== undefined) {
      var k = +el.dataset.k;
      return edgeName(k) + "\ninput: " + D.kinds[E.kind[k]] + "\neffect: " + fmt(E.e[k]);
    }
    var u = +el.dataset.u, lines = [U.label[u] + "  " + D.hooks[U.hook[u]] + "[" + U.index[u] + "]"];
    U.ports[u].forEach(function (rh) { if (rh !== U.hook[u]) lines.push("input " + D.hooks[rh] + "[" + U.index[u] + "]"); });
    var ins = inEdges[u] || [], outs = outEdges[u] || [];
    lines.push((U.in_circuit[u] ? "in" : "not in") + " the circuit: " + ins.length + " edges in, " + outs.length + " out");
    if (D.has_effects) {
      var s = ins.concat(outs).reduce(function (a, k) { return a + Math.abs(E.e[k] || 0); }, 0);
      lines.push("\u03a3|effect| of its circuit edges: " + fmt(s));
    }
    return lines.join("\n");
  }
  svg.addEventListener("mousemove", function (ev) {
    var el = ev.target.closest("[data-k], [data-u]");
    if (!el) { tip.style.display = "none"; return; }
    tip.textContent = describe(el); tip.style.display = "block";
    var box = root.getBoundingClientRect();
    tip.style.left = (ev.clientX - box.left + 14) + "px"; tip.style.top = (ev.clientY - box.top + 14) + "px";
  });
  svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  svg.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-u]");
    state.hl = el ? +el.dataset.u : null;
    applyHighlight();
  });
  root.querySelector(".hb-clear").addEventListener("click", function () { state.hl = null; applyHighlight(); });
  if (BD) root.querySelector(".hb-backdrop").addEventListener("click", function (ev) {
    var c = stage.querySelector("canvas.hb-bg"), on = c.style.display === "none";
    c.style.display = on ? "" : "none";
    ev.target.classList.toggle("hb-on", on);
    root.setAttribute("data-backdrop-shown", on ? "1" : "0");
  });

  function reportResources() {
    var n = (performance.getEntriesByType ? performance.getEntriesByType("resource").length : -1);
    root.setAttribute("data-resources", n);
  }
  render();
  updateLegend();
  root.setAttribute("data-first-render-ms", (performance.now() - t0).toFixed(1));
  reportResources();
  window.addEventListener("load", reportResources);
}
