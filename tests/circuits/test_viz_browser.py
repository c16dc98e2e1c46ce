"""The circuit view in a real browser: headless Chromium, file:// URL, network cut off.

Skipped, with the reason, where no Chromium can be found (``make browser`` installs Debian's).
"""

from __future__ import annotations

import random
import re

import pytest
import torch

import circuits.viz as viz
from circuits import Circuit, graph_of
from circuits.viz import browser
from hooked_bimt import HookedMLP

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        browser.find_chromium() is None,
        reason="headless Chromium not found: `make browser` (or apt-get install chromium) to run the browser test",
    ),
]


def attr(dom: str, name: str) -> str:
    found = re.findall(rf'class="hb-circuit"[^>]*\s{name}="([^"]*)"', dom)
    assert len(found) == 1, f"{name} not found on the view's root"
    return found[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = HookedMLP((784, 100, 100, 10))
    g = graph_of(model)
    rng = random.Random(0)
    edges = rng.sample(list(g.edges()), 3000)
    circuit = Circuit.from_edges(g, edges, effects={e: rng.gauss(0, 1) for e in edges})
    folder = tmp_path_factory.mktemp("page")
    page = viz.circuit_graph(model, circuit).save(folder / "circuit.html")
    return page, circuit


def test_page_draws_every_edge_offline(saved):
    page, circuit = saved
    html = page.read_text()
    assert not re.search(r"https?://|//cdn|\ssrc=", html)  # static check: nothing to fetch
    dom = browser.dump_dom(page)
    (svg,) = re.findall(r'<svg class="hb-svg" width=.*?</svg>', dom, re.S)  # the rendered SVG, not the script text
    assert len(re.findall(r'<line class="edge"', svg)) == circuit.n_edges == 3000
    assert int(attr(dom, "data-edges-drawn")) == circuit.n_edges
    assert attr(dom, "data-resources") == "0"  # no request left the page
    assert float(attr(dom, "data-first-render-ms")) < 1000  # a few thousand edges render in under a second
    assert int(re.search(r'data-background-edges="(\d+)"', dom).group(1)) > 85_000  # the full network, on the canvas


def test_resource_counter_sees_a_request(saved, tmp_path):
    """Control: the same page with one <img> pointing outside records it, so '0' above means something."""
    page, _ = saved
    leaky = tmp_path / "leaky.html"
    leaky.write_text(page.read_text().replace("<body>", '<body><img src="http://example.invalid/x.png">', 1))
    assert attr(browser.dump_dom(leaky), "data-resources") != "0"


def test_screenshot(saved, tmp_path):
    page, _ = saved
    png = browser.screenshot(page, tmp_path / "shot.png", size=(1100, 900))
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a drawing, not a blank page


INTERACT = """<script>
(function () {
  var root = document.querySelector(".hb-circuit");
  var line = root.querySelector('line.edge[data-k="0"]');
  line.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 10, clientY: 10 }));
  root.setAttribute("data-test-tip", root.querySelector(".hb-tip").textContent.split(String.fromCharCode(10)).join(" | "));
  var node = root.querySelector('circle.node[data-l="1"]:not(.hb-out)');
  node.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  root.setAttribute("data-test-clicked", node.dataset.i);
  root.setAttribute("data-test-hl-lines", root.querySelectorAll("line.edge.hb-hl").length);
  root.querySelector('button[data-layout="layered"]').click();
  root.setAttribute("data-test-after-toggle", root.querySelectorAll("line.edge").length);
})();
</script></body>"""


def downstream_edges(circuit, layer_hook: str, index: int) -> int:
    """Edges of the circuit reachable from (hook, index) going towards the output."""
    frontier, seen = {(layer_hook, index)}, set()
    while frontier:
        nxt = set()
        for e in circuit.edges:
            if (e.sender, e.sender_index) in frontier and e not in seen:
                seen.add(e)
                nxt.add((e.receiver.replace("hook_pre", "hook_post"), e.receiver_index))
        frontier = nxt
    return len(seen)


def test_click_highlights_downstream_paths_and_toggles_layout(saved, tmp_path):
    page, circuit = saved
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.read_text().replace("</body>", INTERACT, 1))
    dom = browser.dump_dom(clicked)
    first = sorted(circuit.edges)[0]  # data-k indexes the circuit's edges in sorted order
    tip = attr(dom, "data-test-tip")
    assert tip.startswith(f"{first.sender}[{first.sender_index}] \u2192 {first.receiver}[{first.receiver_index}] | weight: ")
    assert float(re.search(r"effect: (\S+)", tip).group(1)) == pytest.approx(circuit.effects[first], rel=1e-3)
    i = int(attr(dom, "data-test-clicked"))
    expected = downstream_edges(circuit, "blocks.0.hook_post", i)
    assert expected > 0
    assert int(attr(dom, "data-test-hl-lines")) == int(attr(dom, "data-highlighted-edges")) == expected
    assert attr(dom, "data-layout") == "layered"
    assert int(attr(dom, "data-test-after-toggle")) == circuit.n_edges
    assert int(attr(dom, "data-highlighted-edges")) == expected  # the highlight survives the toggle


@pytest.fixture(scope="module")
def bridge_page(tmp_path_factory):
    """A 2-layer, 4-head GPT-2 bridge with a random half of its 110 edges, effects of both signs."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=11, n_positions=8)
    bridge = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                      tokenizer=None, device="cpu")
    g = graph_of(bridge)
    rng = random.Random(0)
    edges = rng.sample(list(g.edges()), 55)
    circuit = Circuit.from_edges(g, edges, effects={e: rng.gauss(0, 1) for e in edges})
    page = viz.circuit_graph(bridge, circuit).save(tmp_path_factory.mktemp("bridge") / "bridge.html")
    return page, circuit


BRIDGE_INTERACT = """<script>
(function () {
  var root = document.querySelector(".hb-circuit");
  var path = root.querySelector('path.edge[data-k="0"]');
  path.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 10, clientY: 10 }));
  root.setAttribute("data-test-tip", root.querySelector(".hb-tip").textContent.split(String.fromCharCode(10)).join(" | "));
  ["q", "k", "v", "mlp_in", "out"].forEach(function (kind) {
    root.setAttribute("data-test-" + kind.replace("_", "-"), root.querySelectorAll("path.edge.hb-kind-" + kind).length);
  });
  var colours = {};
  root.querySelectorAll("path.edge").forEach(function (p) { colours[p.getAttribute("stroke")] = 1; });
  root.setAttribute("data-test-colours", Object.keys(colours).length);
})();
</script></body>"""


def test_bridge_page_draws_every_edge_offline_with_q_k_v_apart(bridge_page, tmp_path):
    page, circuit = bridge_page
    assert not re.search(r"https?://|//cdn|\ssrc=", page.read_text())
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", BRIDGE_INTERACT, 1))
    dom = browser.dump_dom(probed)
    (svg,) = re.findall(r'<svg class="hb-svg" width=.*?</svg>', dom, re.S)
    assert len(re.findall(r'<path class="edge', svg)) == circuit.n_edges == int(attr(dom, "data-edges-drawn"))
    assert int(attr(dom, "data-units-drawn")) == 12  # embed, 2 x (4 heads + MLP), out
    assert attr(dom, "data-resources") == "0"
    for kind, suffix in (("q", "hook_q_input"), ("k", "hook_k_input"), ("v", "hook_v_input"),
                         ("mlp-in", "hook_mlp_in"), ("out", "blocks.1.hook_out")):
        assert int(attr(dom, f"data-test-{kind}")) == sum(e.receiver.endswith(suffix) for e in circuit.edges)
    assert int(attr(dom, "data-test-colours")) == 5  # each receiver kind its own colour
    first = sorted(circuit.edges)[0]
    tip = attr(dom, "data-test-tip")
    assert tip.startswith(f"{first.sender}[{first.sender_index}] \u2192 {first.receiver}[{first.receiver_index}]")
    assert float(re.search(r"effect: (\S+)", tip).group(1)) == pytest.approx(circuit.effects[first], rel=1e-3)


@pytest.mark.parametrize("which", ["mlp25", "attn_only"])
def test_other_models_render_offline(which, tmp_path):
    from hooked_bimt.zoo import HookedAttnOnly

    torch.manual_seed(0)
    model = HookedMLP((25, 8, 4)) if which == "mlp25" else HookedAttnOnly(2, 3, 16, 4, 6, 10)
    g = graph_of(model)
    rng = random.Random(1)
    edges = rng.sample(list(g.edges()), g.n_edges // 2)
    circuit = Circuit.from_edges(g, edges, effects={e: rng.gauss(0, 1) for e in edges})
    dom = browser.dump_dom(viz.circuit_graph(model, circuit).save(tmp_path / "p.html"))
    assert int(attr(dom, "data-edges-drawn")) == circuit.n_edges
    assert attr(dom, "data-resources") == "0"
