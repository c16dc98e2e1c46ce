"""The fast MLP engine's sequential loop, compiled (``circuits.acdc.mlp.engine``; KL in float64; runs on the CPU).

While receiver j of layer k+1 is processed, everything but its input ``z_j`` is fixed, and the KL is a mean of
per-example terms ``F_b`` that depend on example b's ``z_j[b]`` alone (``state``'s module docstring). ACDC's
loop over the receiver's candidate senders is then, exactly:

    for each candidate i, in order:
        effect_i = (1/B) sum_{b: d_bi != 0} F_b(C_b + d_bi) - F_b(C_b)      (C: the current inputs z_j)
        if effect_i < threshold: C += d_i

``F_b(x)`` is the downstream network from ``z_j[b] = x`` to example b's KL term: the receiver's nonlinearity,
each hidden hop ``z <- z + W_present (a(x) - a)``, then the changed logits' KL (the stable log-sum-exp of
``metrics.ChangedKL``'s formula). ``_loop`` runs this loop compiled (numba), each candidate's state evaluated
on the examples it moves, gathered (the loops over them vectorize), so no decision is guessed and no state is
scored twice. The speculative torch path (``speculative``: guess, score a chain of
states, verify) remains for other metrics, float32 discovery and nonlinearities the loop does not know. A model on
an accelerator gets the compiled loop too, on CPU copies of each receiver's few arrays.

Near-ties: an effect within the tie window of the threshold (``ties.Ties``: where rounding could decide)
stops the loop; the caller re-scores it the reference's way, decides, and resumes after it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from circuits.acdc.mlp.state import State

# the nonlinearities the compiled loop evaluates itself (a declared ``Graph.activations`` entry, by identity)
_IDENTITY, _SILU, _RELU, _GELU, _TANH = range(5)
_CODES = {
    torch.nn.functional.silu: _SILU,
    torch.nn.functional.relu: _RELU,
    torch.nn.functional.gelu: _GELU,  # the exact (erf) form, torch's default
    torch.tanh: _TANH,
}


def supports(st: State) -> bool:
    """Whether the compiled loop applies: KL, float64, every hidden nonlinearity one it knows. On an accelerator it
    runs on the CPU on copies of the receiver's data (a few small arrays per receiver; the loop is sequential)."""
    if st.kl is None or st.Z[st.L].dtype != torch.float64:
        return False
    return all(fn in _CODES for fn in st.acts)


class Receiver:
    """The compiled loop's inputs for receiver j of layer k+1: float64 numpy copies of the current circuit,
    examples on the last axis (the compiled loops run over examples, which vectorizes)."""

    def __init__(self, st: State, k: int, j: int, d: Tensor) -> None:
        self.dT = np.ascontiguousarray(_np(d.T))  # (n, b): change of z_j per candidate and example
        self.z0 = _np(st.Z[k + 1][:, j]).copy()
        chain = st.downstream(k, j)
        if chain:  # a hidden receiver: its nonlinearity, hidden hops, then the logits
            self.act0 = _CODES[st.acts[k]]
            hidden, (rows, sub, _, _) = chain[:-1], chain[-1]
        else:  # a logit: the change goes straight to class j
            self.act0, hidden = _IDENTITY, []
            rows, sub = torch.tensor([j], device=d.device), torch.ones(1, 1, dtype=torch.float64)
        codes = [_CODES[st.acts[m]] for m in range(k + 1, k + 1 + len(hidden))]
        self.codes = np.array(codes, dtype=np.int64)
        self.width = np.array([1] + [h[0].numel() for h in hidden], dtype=np.int64)  # sizes, receiver first
        self.subs = _flat([h[1] for h in hidden])  # (r_h, r_{h-1}) present weights, row-major, concatenated
        self.zs = _flat([h[2].T for h in hidden])  # (r_h, b) hidden inputs of the current circuit
        # their nonlinearity's values by the compiled loop's own evaluation, so an unchanged input changes nothing
        self.azs = np.concatenate([_act_of(c, _flat([h[2].T])) for c, h in zip(codes, hidden)]) if hidden else self.zs
        self.a0 = _act_of(self.act0, self.z0)
        self.out = np.ascontiguousarray(_np(sub.T))  # (r_last, classes)
        pb = st.cached(("pair", k, j), lambda: st.kl.pair_base(st.Z[st.L], rows))  # a metrics.PairBase
        self.y, self.p = np.ascontiguousarray(_np(pb.y_rows.T)), np.ascontiguousarray(_np(pb.p_rows.T))
        self.const, self.rest = _np(pb.const), _np(pb.rest)
        self.has_rest = bool(np.isfinite(self.rest).all())  # some class outside ``rows`` (else rest = -inf)
        width, b = max(int(self.width.max()), 1), len(self.z0)
        self.scratch = (np.empty((width, b)), np.empty((width, b)), np.empty((len(rows), b)), np.empty((5, b)))

    def _args(self) -> tuple:
        return (self.a0, self.act0, self.codes, self.width, self.subs, self.zs, self.azs, self.out, self.y, self.p,
                self.const, self.rest, self.has_rest, *self.scratch)

    def run(self, threshold: float, window: float, current: float, start: int, c: np.ndarray, cur: np.ndarray,
            new: np.ndarray, effects: np.ndarray, removed: np.ndarray) -> int:
        """Candidates ``start..`` from inputs ``c`` with per-example terms ``cur`` (both updated in place); stops
        at a near-tie (returns its index; ``new`` holds the terms of its state) or at the end (returns n)."""
        return _loop(self.dT, threshold, window, current, start, c, cur, new, effects, removed, *self._args())

    def terms(self, c: np.ndarray) -> np.ndarray:
        """Each example's KL term at inputs ``c`` (b,)."""
        out = np.empty(len(c))
        _values(c.copy(), np.arange(len(c)), len(c), out, *self._args())
        return out


def _np(t: Tensor) -> np.ndarray:
    """A tensor's values as a numpy array on the CPU (a copy from an accelerator; a view of a CPU tensor)."""
    return t.detach().cpu().numpy()


def _flat(parts: list[Tensor]) -> np.ndarray:
    return np.concatenate([np.ascontiguousarray(_np(p)).reshape(-1) for p in parts]) if parts else np.zeros(0)


def decide(st: State, ties, k: int, j: int, d: Tensor):
    """The compiled loop over receiver j of layer k+1's candidates (changes ``d``: (b, n)): (effects, removed,
    current metric, final ``z_j``), as ``speculative.decide``."""
    r = Receiver(st, k, j, d)
    n, b = r.dT.shape
    c = r.z0.copy()
    cur = r.terms(c)
    new = np.empty(b)
    effects, removed = np.empty(n), np.zeros(n, dtype=np.bool_)
    thr = float(st.p.threshold)
    pos = 0
    while pos < n:
        st.passes += 1
        q = r.run(thr, ties.unit, float(cur.mean()), pos, c, cur, new, effects, removed)
        if q == n:
            break
        # a near-tie: the reference's own computation decides it
        e = ties.effect(k, j, q, torch.from_numpy(removed[:q].copy()).to(d.device))
        effects[q], removed[q] = e, e < thr
        if removed[q]:
            moved = r.dT[q] != 0
            c[moved] += r.dT[q][moved]
            cur[moved] = new[moved]
        pos = q + 1
    return tuple(torch.from_numpy(a).to(d.device) for a in (effects, removed, np.array(cur.mean()), c))


# ------------------------------------------------------------------------------------------------ compiled parts
_LOG2E, _LN2_HI, _LN2_LO = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))


@numba.njit(inline="always")
def _exp(x):  # pragma: no cover - compiled
    """``exp(x)`` in plain arithmetic (so loops over it vectorize; libm's is a call per element): ``2^k exp(r)``,
    ``r = x - k ln 2`` (Cody-Waite, ``|r| <= ln 2 / 2``), its Taylor polynomial of degree 13 (truncation below
    5e-18 relative), within a few ulp of libm's over ``[-708, 709]`` (``x`` is clamped there)."""
    x = min(max(x, -708.0), 709.0)
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    f = _INV_FACT
    q = f[13]
    q = q * r + f[12]
    q = q * r + f[11]
    q = q * r + f[10]
    q = q * r + f[9]
    q = q * r + f[8]
    q = q * r + f[7]
    q = q * r + f[6]
    q = q * r + f[5]
    q = q * r + f[4]
    q = q * r + f[3]
    q = q * r + f[2]
    q = q * r + 1.0
    q = q * r + 1.0
    return q * np.int64((np.int64(k) + 1023) << 52).view(np.float64)


@numba.njit(inline="always")
def _act(code, x):  # pragma: no cover - compiled
    if code == _SILU:
        return x / (1.0 + _exp(-x))
    if code == _RELU:
        return max(x, 0.0)
    if code == _GELU:
        return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))
    if code == _TANH:
        return math.tanh(x)
    return x


@numba.njit(inline="always")
def _changes(code, s, base, off, idx, out, m, tmp):  # pragma: no cover - compiled
    """``out[t] = act(s[t]) - base[off + idx[t]]`` for t < m (``out`` may be ``s``; ``tmp``: scratch); one loop
    per nonlinearity, the exp apart from the division (so each loop vectorizes)."""
    if code == _SILU:
        for t in range(m):
            tmp[t] = _exp(-s[t])
        for t in range(m):
            out[t] = s[t] / (1.0 + tmp[t]) - base[off + idx[t]]
    elif code == _RELU:
        for t in range(m):
            out[t] = max(s[t], 0.0) - base[off + idx[t]]
    elif code == _IDENTITY:
        for t in range(m):
            out[t] = s[t] - base[off + idx[t]]
    else:
        for t in range(m):
            out[t] = _act(code, s[t]) - base[off + idx[t]]


@numba.njit(cache=True, nogil=True)
def _act_of(code, x):  # pragma: no cover - compiled
    """The compiled loop's own evaluation of nonlinearity ``code`` at ``x`` (1-D)."""
    out = np.empty_like(x)
    _changes(code, x, np.zeros(1), 0, np.zeros(x.shape[0], dtype=np.int64), out, x.shape[0], np.empty_like(x))
    return out


@numba.njit(cache=True, nogil=True)
def _values(x, idx, m, res, a0, act0, codes, width, subs, zs, azs, out, y, p, const, rest, has_rest, g, h, dl, v
            ):  # pragma: no cover - compiled
    """The KL terms of examples ``idx[:m]`` with the receiver's input at ``x[:m]``, into ``res[:m]``; ``g``, ``h``
    (width, b), ``dl`` (classes, b), ``v`` (5, b): scratch. Arrays over examples (``a0``, ``zs``, ``y``, ...)
    are read at ``idx``."""
    b = a0.shape[0]
    _changes(act0, x, a0, 0, idx, g[0], m, v[4])  # the receiver's output change
    so, zo = 0, 0
    for hop in range(codes.shape[0]):
        r, rp = width[hop + 1], width[hop]
        for q in range(r):
            row, off = h[q], zo + q * b
            for t in range(m):
                row[t] = zs[off + idx[t]]
            for u in range(rp):
                w, src = subs[so + q * rp + u], g[u]
                for t in range(m):
                    row[t] += w * src[t]
            _changes(codes[hop], row, azs, off, idx, row, m, v[4])
        g, h = h, g
        so += r * rp
        zo += r * b
    rp, classes = out.shape
    lin, top, tot = v[0], v[1], v[2]
    for t in range(m):
        lin[t] = 0.0
        top[t] = rest[idx[t]]
    for c in range(classes):
        row = dl[c]
        for t in range(m):
            row[t] = 0.0
        for u in range(rp):
            w, src = out[u, c], g[u]
            for t in range(m):
                row[t] += w * src[t]
        pc, yc = p[c], y[c]
        for t in range(m):
            e = idx[t]
            lin[t] += pc[e] * row[t]
            row[t] += yc[e]
            top[t] = max(top[t], row[t])
    if has_rest:
        for t in range(m):
            tot[t] = _exp(rest[idx[t]] - top[t])
    else:
        for t in range(m):
            tot[t] = 0.0
    for c in range(classes):
        row = dl[c]
        for t in range(m):
            tot[t] += _exp(row[t] - top[t])
    for t in range(m):
        res[t] = const[idx[t]] - lin[t] + top[t] + math.log(tot[t])


@numba.njit(cache=True, nogil=True)
def _loop(dT, threshold, window, current, start, c, cur, new, effects, removed, a0, act0, codes, width, subs, zs, azs,
          out, y, p, const, rest, has_rest, g, h, dl, v):  # pragma: no cover - compiled
    """The module docstring's loop over candidates ``start..``; returns the index of a near-tie, or n. A candidate's
    state is evaluated on the examples it moves only (``_values`` at their indices)."""
    n, b = dT.shape
    x, fx = v[3], np.empty(b)
    idx = np.empty(b, dtype=np.int64)
    for i in range(start, n):
        d = dT[i]
        m = 0
        for e in range(b):
            if d[e] != 0.0:
                idx[m] = e
                x[m] = c[e] + d[e]
                m += 1
        _values(x, idx, m, fx, a0, act0, codes, width, subs, zs, azs, out, y, p, const, rest, has_rest, g, h, dl, v)
        total = 0.0
        for t in range(m):
            new[idx[t]] = fx[t]
            total += fx[t] - cur[idx[t]]
        eff = total / b
        effects[i] = eff
        if abs(eff - threshold) <= window * (1.0 + abs(current)):
            return i
        removed[i] = eff < threshold
        if removed[i]:
            for t in range(m):
                e = idx[t]
                c[e] += d[e]
                cur[e] = fx[t]
            current += eff
    return n
