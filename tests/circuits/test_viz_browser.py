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
