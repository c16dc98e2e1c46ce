"""Remember which declarations passed ``check_declaration``, so that repeated calls on an unchanged model skip it.

The check (``circuits.protocol_check``) costs two forward passes and a contribution per connection; ``eap``,
``acdc`` and ``node_patching`` run it before every call. Its outcome is a function of the model, the declared
graph, the rows it runs on and the tolerance, so a pass is remembered per model (weakly: the entry goes with the
model) under a key of all of them, and any change re-runs the whole check:

* every parameter and buffer: the tensor object, its version counter (``_version``: bumped by every in-place
  change made through the tensor, ``copy_``, ``load_state_dict``, an optimiser step), its storage address (a
  ``p.data = ...`` assignment), dtype, device, shape and strides;
* every submodule: the object (a swapped module), its ``training`` flag, the ids of its forward (pre-)hooks (a
  permanent hook) and its plain attributes (numbers, strings, flags); the root's ``cfg`` / ``config`` fields; the
  global forward hooks;
* the graph: nodes, output, ``node_output``, and every connection and activation with its callables keyed by what
  they compute: code, defaults, closure cells and the globals the code names, recursively (tensors and modules as
  above, containers by content); a callable whose key cannot be formed (an object of unknown kind) is never
  remembered, so the check always runs;
* the checked rows (their values) and the tolerance.

Not seen: in-place writes through ``.data`` (``p.data[0] = x``, which autograd's version counter ignores) and
changes made inside C extensions. Such writes cannot turn an honest declaration into a lie when the declaration
reads the same tensors as the forward pass (every built-in graph does), and NaN or infinite values written that
way are still refused on every call by ``circuits.validate.check_finite_parameters``.
"""

from __future__ import annotations

import functools
import types
import weakref
from typing import Any, Optional

import torch
from torch import Tensor

_ATOMS = (int, float, complex, str, bytes, bool, type(None), torch.dtype, torch.device, torch.Size, torch.layout)
_ATOM_TYPES = frozenset(_ATOMS)
_MAX_DEPTH = 8


class _Uncacheable(Exception):
    """A part of the key that cannot be formed: the check is then always run."""


class _Same:
    """Compares equal to a ``_Same`` of the very same object (held weakly where it can be, so no entry keeps a
    model alive, and a dead object never equals a new one that reuses its id)."""

    __slots__ = ("_get",)

    def __init__(self, obj: Any):
        try:
            self._get = weakref.ref(obj)
        except TypeError:
            self._get = lambda obj=obj: obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and self._get() is not None and self._get() is other._get()

    __hash__ = None  # type: ignore[assignment]


class _Rows:
    """The checked rows, compared by value."""

    __slots__ = ("x",)

    def __init__(self, x: Any):
        self.x = x.detach().clone() if isinstance(x, Tensor) else x

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Rows):
            return False
        a, b = self.x, other.x
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return (a.dtype, a.device, a.shape) == (b.dtype, b.device, b.shape) and bool(torch.equal(a, b))
        return False  # a batch of another kind is never compared: the check runs

    __hash__ = None  # type: ignore[assignment]


def tensor_key(t: Tensor) -> tuple:
    """What in a tensor can change its use: identity, version counter, storage, dtype, device, shape, strides."""
    return (_Same(t), t._version, t.data_ptr(), t.dtype, t.device, tuple(t.shape), tuple(t.stride()))


def _plain(obj: Any) -> tuple:
    """The plain-valued public attributes of ``obj`` (numbers, strings, flags, dtypes), in the object's order."""
    items = getattr(obj, "__dict__", {})
    return tuple([(k, v) for k, v in items.items() if type(v) in _ATOM_TYPES and k[0] != "_"])


def module_state(model: torch.nn.Module) -> tuple[tuple, set[int]]:
    """The key of ``model``'s state (module docstring) and the ids of its modules and tensors."""
    parts: list[Any] = [tuple(torch.nn.modules.module._global_forward_hooks),
                        tuple(torch.nn.modules.module._global_forward_pre_hooks)]
    own: set[int] = set()
    for name, m in model.named_modules():
        own.add(id(m))
        parts.append((name, _Same(m), m.training, tuple(m._forward_hooks), tuple(m._forward_pre_hooks), _plain(m)))
        for group in (m._parameters, m._buffers):
            for tname, t in group.items():
                if t is not None:
                    own.add(id(t))
                    parts.append((tname, tensor_key(t)))
    for attr in ("cfg", "config"):
        parts.append((attr, _plain(getattr(model, attr, None))))
    return tuple(parts), own


class _Keys:
    """Keys of the values a declaration's callables use; the model's own modules and tensors by identity only
    (``module_state`` covers them), anything else by content. Memoised per object within one key."""

    def __init__(self, own: set[int]):
        self.own, self.memo = own, {}

    def of(self, obj: Any, depth: int = 0) -> Any:
        if type(obj) in _ATOM_TYPES:
            return (type(obj), obj)
        if depth > _MAX_DEPTH:
            raise _Uncacheable("too deep")
        i = id(obj)
        if i not in self.memo:
            self.memo[i] = ("cycle", _Same(obj))  # a self-reference keys as the object itself
            self.memo[i] = self._of(obj, depth + 1)
        return self.memo[i]

    def _of(self, obj: Any, depth: int) -> Any:
        if type(obj) is types.FunctionType:
            return self._function(obj, depth)
        if isinstance(obj, _ATOMS):  # a subclass of a plain type (an IntEnum, say)
            return (type(obj), obj)
        if id(obj) in self.own or isinstance(obj, (types.ModuleType, type, types.CodeType, types.BuiltinFunctionType)):
            return ("same", _Same(obj))
        if isinstance(obj, Tensor):
            return ("tensor", tensor_key(obj))
        if isinstance(obj, torch.nn.Module):
            return ("module", module_state(obj)[0])
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            return (type(obj), tuple(self.of(v, depth) for v in items))
        if isinstance(obj, dict):
            return (dict, tuple((self.of(k, depth), self.of(v, depth)) for k, v in obj.items()))
        if isinstance(obj, types.MethodType):
            return ("method", self.of(obj.__func__, depth), self.of(obj.__self__, depth))
        if isinstance(obj, functools.partial):
            return ("partial", self.of(obj.func, depth), self.of(obj.args, depth), self.of(obj.keywords, depth))
        raise _Uncacheable(type(obj).__name__)

    def _function(self, fn: types.FunctionType, depth: int) -> tuple:
        code, glob = fn.__code__, fn.__globals__
        names = tuple(n for n in _names(code) if n in glob)
        return ("function", _Same(code), self.of(fn.__defaults__, depth), self.of(fn.__kwdefaults__, depth),
                tuple(self.of(c.cell_contents, depth) if _filled(c) else None for c in fn.__closure__ or ()),
                tuple((n, self.of(glob[n], depth)) for n in names))


@functools.lru_cache(maxsize=4096)
def _names(code: types.CodeType) -> tuple[str, ...]:
    """The global (and attribute) names ``code`` and its nested functions read."""
    nested = (n for c in code.co_consts if isinstance(c, types.CodeType) for n in _names(c))
    return tuple(dict.fromkeys((*code.co_names, *nested)))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later in the enclosing function)
        return False
    return True


def _graph_key(graph: Any, keys: _Keys) -> tuple:
    conns = tuple((c.sender, c.receiver, keys.of(c.contribute), keys.of(c.weight), keys.of(c.node_mix))
                  for c in graph.connections)
    nodes = tuple((h, n.count, n.axis) for h, n in graph.nodes.items())
    acts = tuple((h, keys.of(f)) for h, f in graph.activations.items())
    return (nodes, graph.output, tuple(graph.node_output.items()), tuple(graph.grouped_output.items()), conns, acts,
            graph.family)


def declaration_key(model: Any, graph: Any, x1: Any, x2: Any, rtol: float) -> Optional[tuple]:
    """The key a pass of ``check_declaration(model, graph, ...)`` on rows ``x1``, ``x2`` is remembered under, or
    None where one cannot be formed (not a ``torch.nn.Module``, or a callable of unknown kind)."""
    if not isinstance(model, torch.nn.Module):
        return None
    state, own = module_state(model)
    try:
        graph_key = _graph_key(graph, _Keys(own))
    except _Uncacheable:
        return None
    return (state, graph_key, _Rows(x1), _Rows(x2), float(rtol))


_PASSED: "weakref.WeakKeyDictionary[Any, tuple[tuple, list[str]]]" = weakref.WeakKeyDictionary()


def passed(model: Any, key: Optional[tuple]) -> Optional[list[str]]:
    """The hooks' firing order of the remembered pass under ``key``, or None (never passed, or something changed)."""
    if key is None:
        return None
    try:
        entry = _PASSED.get(model)
    except TypeError:  # a model that cannot be weakly referenced
        return None
    return list(entry[1]) if entry is not None and entry[0] == key else None


def remember(model: Any, key: Optional[tuple], order: list[str]) -> None:
    """Remember that the check passed under ``key`` (one entry per model: the latest)."""
    if key is None:
        return
    try:
        _PASSED[model] = (key, list(order))
    except TypeError:
        pass


def forget(model: Any) -> None:
    """Drop ``model``'s remembered pass (the next check runs in full)."""
    _PASSED.pop(model, None)
