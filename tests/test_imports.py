"""The package import graph: one-way packages and no rings.

Every ``import`` statement of ``circuits`` and ``hooked_bimt`` counts, function-local ones included (they
run the first time the function does); only imports under ``if TYPE_CHECKING:`` are left out, since they
never execute. An edge goes to the module named (``from circuits.acdc.mlp import engine`` -> ``circuits.acdc.mlp.engine``;
``from circuits.graph import Edge`` -> ``circuits.graph``), not to the parent packages Python also loads:
a package's ``__init__`` re-exporting its submodules is not a ring.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("circuits", "hooked_bimt")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = list(node.orelse)
        stack.extend(children)


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def _targets(module: str, path: Path, known: set[str]) -> set[str]:
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _targets(m, p, known) for m, p in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_the_graph_sees_function_local_imports_and_the_known_edges():
    g = import_graph()
    assert "circuits.acdc.mlp.engine" in g["circuits.acdc.discover"]  # ``from circuits.acdc.mlp import engine as mlp``
    assert "circuits.graph" in g["hooked_bimt.model"]  # function-local, inside circuit_graph()
    assert "circuits.patching" in g["circuits.acdc.loop"]


def test_the_cycle_finder_finds_rings():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    cycles = find_cycles(import_graph())
    assert cycles == [], f"import rings (each a strongly connected set of modules): {cycles}"


def test_circuits_imports_nothing_of_hooked_bimt():
    bad = sorted((m, t) for m, ts in import_graph().items() if m.split(".")[0] == "circuits"
                 for t in ts if t.split(".")[0] == "hooked_bimt")
    assert bad == [], f"circuits must not import hooked_bimt: {bad}"


def test_the_core_never_imports_a_model_family():
    """Families register themselves (``circuits.families``); the core asks the registry. Only the package root
    (which imports ``circuits.models`` so the families register), the families themselves and the engine a family
    registers for its own graphs (``circuits.acdc.attention``, which reads its hook names) may import them."""
    allowed = ("circuits.models", "circuits.acdc.attention")
    bad = sorted((m, t) for m, ts in import_graph().items() if m.startswith("circuits.") and not m.startswith(allowed)
                 for t in ts if t.startswith("circuits.models"))
    assert bad == [], f"core modules importing a model family: {bad}"
