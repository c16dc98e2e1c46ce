"""A two-layer transformer trained here, on CPU, to do induction on repeated random tokens; loaded as a bridge.

The task: a sequence ``[BOS, f_1..f_m, r_1..r_n, r_1..r_n]`` of distinct random tokens (``BOS = 0``);
the loss is the next-token cross-entropy inside the second copy, with ``T`` the sequence length,

    loss = - mean over t in [T - n, T - 1) of log p(x_{t+1} | x_{<=t}),

where the answer is only predictable by looking back: find the earlier copy of the current token and
read the token after it. A two-layer transformer learns the known mechanism (Olsson et al., 2022):
a *previous-token head* in layer 0 writes "my previous token was A" into position t; an *induction
head* in layer 1 has its **key** read that (K-composition), so the query "current token A" matches
the position right after the earlier A, and its **value** copies that position's token.

``induction_tokens`` gives clean sequences and corrupted ones whose first copy is reversed (same tokens,
other successors): patching an edge to its corrupted value tells whether induction runs through it. Saved as ``model.safetensors``
(the Hugging Face state dict) + ``config.json`` (the ``transformers`` config and how it was trained), atomically;
``load_induction`` returns a TransformerLens 4 ``TransformerBridge`` built offline from that folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from jaxtyping import Int
from torch import Tensor

from hooked_bimt.atomic import atomic_write_bytes, atomic_write_json
from hooked_bimt.files import CONFIG, WEIGHTS

BOS = 0
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}  # learned positions / rotary
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "induction"  # the model trained by demos/induction_circuit.py


@dataclass(frozen=True)
class InductionSetup:
    """Model size, sequence shape and training schedule (defaults: a few minutes on one CPU core).

    A sequence is ``[BOS, filler, r, r]``, ``seq_len`` tokens after BOS; ``r`` has a length drawn per
    training batch from ``min_half..max_half`` so the repeat sits at no fixed offset (a layer-1 head
    cannot find it by position alone), and the filler pads the rest. Non-BOS tokens in a sequence are distinct.
    """

    d_vocab: int = 48
    seq_len: int = 24
    min_half: int = 4
    max_half: int = 10
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_mlp: int = 128
    steps: int = 400
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    architecture: str = "llama"

    def __post_init__(self) -> None:
        for name in ("d_vocab", "seq_len", "min_half", "max_half", "n_layer", "n_head", "d_model", "d_mlp", "steps", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"InductionSetup.{name} must be a positive integer, got {v!r}")
        if not 2 <= self.min_half <= self.max_half or 2 * self.max_half > self.seq_len:
            raise ValueError(f"InductionSetup needs 2 <= min_half <= max_half <= seq_len / 2, got "
                             f"{self.min_half}, {self.max_half}, seq_len {self.seq_len}")
        if self.d_vocab - 1 < self.seq_len:
            raise ValueError(f"InductionSetup.d_vocab ({self.d_vocab}) must exceed seq_len ({self.seq_len}): tokens are distinct")
        if self.d_model % self.n_head:
            raise ValueError(f"InductionSetup.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"InductionSetup.architecture must be one of {sorted(ARCHITECTURES)}, got {self.architecture!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"InductionSetup.lr must be a positive number, got {self.lr!r}")

    @property
    def n_ctx(self) -> int:
        return self.seq_len + 1


def hf_config(setup: InductionSetup) -> Any:
    """The ``transformers`` config: no dropout, untied unembedding (so the state dict saves as plain tensors).

    ``"gpt2"``: LayerNorm, learned absolute positions. ``"llama"``: RMSNorm, rotary positions, gated MLP."""
    if setup.architecture == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=setup.d_vocab, hidden_size=setup.d_model, intermediate_size=setup.d_mlp,
            num_hidden_layers=setup.n_layer, num_attention_heads=setup.n_head, num_key_value_heads=setup.n_head,
            max_position_embeddings=setup.n_ctx, attention_dropout=0.0, tie_word_embeddings=False,
            bos_token_id=BOS, eos_token_id=BOS,
        )
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=setup.d_vocab, n_positions=setup.n_ctx, n_embd=setup.d_model, n_layer=setup.n_layer,
        n_head=setup.n_head, n_inner=setup.d_mlp, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=BOS,
    )


def hf_model(setup: InductionSetup, config: Any = None) -> Any:
    """A freshly initialised ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` for ``setup``."""
    import transformers

    return getattr(transformers, ARCHITECTURES[setup.architecture])(config if config is not None else hf_config(setup))


def induction_tokens(
    n: int, setup: InductionSetup, half: int, generator: torch.Generator
) -> tuple[Int[Tensor, "n pos"], Int[Tensor, "n pos"]]:
    """Clean ``[BOS, filler, r, r]`` and corrupted ``[BOS, filler, reversed(r), r]``, ``seq_len + 1`` tokens.

    The corrupted run holds the same tokens at the same distances, so only *order* differs: after
    ``r_k`` the first copy now shows ``r_{k-1}``, and induction predicts ``r_{k-1}`` instead of ``r_{k+1}``,
    while any "copy a token seen earlier" heuristic gives the same answer in both runs."""
    if not setup.min_half <= half <= setup.max_half:
        raise ValueError(f"half must be in {setup.min_half}..{setup.max_half}, got {half}")
    m = setup.seq_len - 2 * half
    perm = torch.rand(n, setup.d_vocab - 1, generator=generator).argsort(dim=1) + 1
    bos = torch.full((n, 1), BOS, dtype=torch.long)
    filler, r = perm[:, :m], perm[:, m : m + half]
    return torch.cat([bos, filler, r, r], dim=1), torch.cat([bos, filler, r.flip(1), r], dim=1)


def _second_copy(tokens: Tensor, half: int) -> tuple[slice, slice]:
    """(positions that predict, their targets): the second copy's tokens 2..half from the ones before."""
    n = tokens.shape[1]
    return slice(n - half, n - 1), slice(n - half + 1, n)


def induction_loss(logits: Tensor, tokens: Tensor, half: int) -> Tensor:
    """Mean next-token cross-entropy over the predictable positions (inside the second copy)."""
    at, target = _second_copy(tokens, half)
    pred = logits[:, at]
    return torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), tokens[:, target].reshape(-1))


def induction_accuracy(model: Any, tokens: Int[Tensor, "n pos"], half: int) -> float:
    """Share of predictable positions whose argmax is the repeated token (works on HF models and bridges)."""
    with torch.no_grad():
        out = model(tokens)
        logits = out.logits if hasattr(out, "logits") else out
    at, target = _second_copy(tokens, half)
    return (logits[:, at].argmax(-1) == tokens[:, target].to(logits.device)).double().mean().item()


def _mixed_batch_loss(model: Any, setup: InductionSetup, gen: torch.Generator) -> Tensor:
    """One batch whose sequences have repeat lengths drawn uniformly from ``min_half..max_half``."""
    halves = torch.randint(setup.min_half, setup.max_half + 1, (setup.batch,), generator=gen)
    batches = [(int(h), induction_tokens(int((halves == h).sum()), setup, int(h), gen)[0]) for h in halves.unique()]
    logits = model(torch.cat([t for _, t in batches])).logits
    total, start = 0.0, 0
    for h, t in batches:
        total = total + induction_loss(logits[start : start + len(t)], t, h) * len(t)
        start += len(t)
    return total / setup.batch


def train_induction(setup: InductionSetup = InductionSetup(), *, log_every: int = 0) -> tuple[Any, dict[str, Any]]:
    """Train the model on the task (seeded, CPU, float32); returns it (eval mode) and a record.

    The default is Llama-style (rotary positions): trained with GPT-2's learned absolute positions the same
    task is solved too, but through layer-0 heads feeding layer-1 *queries* (the earlier copy's position is
    looked up by content and the next position attended by absolute position), not the textbook K-composition."""
    torch.manual_seed(setup.seed)
    gen = torch.Generator().manual_seed(setup.seed)
    model = hf_model(setup)
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=setup.lr, total_steps=setup.steps, pct_start=0.1)
    model.train()
    for step in range(setup.steps):
        loss = _mixed_batch_loss(model, setup, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}")
    model.eval()
    test_gen = torch.Generator().manual_seed(setup.seed + 1)
    accuracy = {h: induction_accuracy(model, induction_tokens(256, setup, h, test_gen)[0], h)
                for h in range(setup.min_half, setup.max_half + 1)}
    return model, {"final_loss": loss.item(), "test_accuracy": min(accuracy.values()), "accuracy_by_half": accuracy}


def prompts(n: int, setup: InductionSetup, half: int, seed: int) -> dict[str, Tensor]:
    """Circuit-discovery batches ending inside the second copy, at ``r_{half-1}``: the clean answer is
    ``r_half`` (what followed it before), the corrupted one ``r_{half-2}`` (what follows it in the
    reversed copy). Keys: ``clean``, ``corrupted``, ``clean_labels``, ``corrupt_labels``."""
    if half < 3:
        raise ValueError(f"prompts need half >= 3 (the corrupted answer is r_(half-2)), got {half}")
    clean, corrupted = induction_tokens(n, setup, half, torch.Generator().manual_seed(seed))
    r = clean[:, -half:]
    return {"clean": clean[:, :-1], "corrupted": corrupted[:, :-1], "clean_labels": r[:, -1], "corrupt_labels": r[:, -3]}


def head_scores(bridge: Any, tokens: Int[Tensor, "n pos"], half: int) -> dict[str, Tensor]:
    """Per layer and head, from the attention patterns on clean ``[BOS, filler, r, r]`` sequences:

        previous_token[l, h] = mean over t >= 1 of A[l, h, t, t - 1]
        induction[l, h]      = mean over second-copy positions t of A[l, h, t, t - half + 1]

    (``A[l, h, query, key]``; ``t - half + 1`` is the token after the earlier copy of the current one).
    The names say which head does what, independently of any circuit discovery."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    n_layers = bridge.cfg.n_layers
    A = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"].double().mean(0) for l in range(n_layers)])  # l h q k
    T = tokens.shape[1]
    t = torch.arange(1, T)
    prev = A[:, :, t, t - 1].mean(-1)
    q = torch.arange(T - half, T)
    ind = A[:, :, q, q - half + 1].mean(-1)
    return {"previous_token": prev, "induction": ind}


def save_induction(model: Any, setup: InductionSetup, directory: str | Path, *, record: Optional[dict] = None,
                   overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` atomically.

    Raises:
        FileExistsError: the folder already holds a saved model and ``overwrite`` is False.
    """
    from safetensors.torch import save as st_save

    directory = Path(directory)
    if not overwrite and ((directory / WEIGHTS).exists() or (directory / CONFIG).exists()):
        raise FileExistsError(f"{directory} already holds a saved model; pass overwrite=True to replace it")
    meta = {"hf_config": model.config.to_dict(), "setup": asdict(setup), "record": record or {}}
    json.dumps(meta)  # JSON-serialisable, checked before anything is written
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, st_save(tensors))
    atomic_write_json(directory / CONFIG, meta)
    return directory


def load_induction(directory: str | Path = SHIPPED, *, dtype: torch.dtype = torch.float64,
                   device: str | torch.device = "cpu") -> tuple[Any, InductionSetup]:
    """The saved model as a ``TransformerBridge`` (eval mode, ``dtype``), and its ``InductionSetup``."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found (save_induction writes it)")
    try:
        meta = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        setup = InductionSetup(**meta["setup"])
        cfg = type(hf_config(setup)).from_dict(meta["hf_config"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{directory / CONFIG} is not an induction model config: {err}") from err
    try:
        tensors = st_load((directory / WEIGHTS).read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"{directory / WEIGHTS} is not a readable safetensors file: {err}") from err
    model = hf_model(setup, cfg)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{directory / WEIGHTS} does not match {directory / CONFIG}: {err}") from err
    model = model.to(dtype).eval()
    bridge = build_bridge_from_module(model, ARCHITECTURES[setup.architecture], hf_config=cfg, tokenizer=None,
                                      device=device)
    bridge.eval()
    return bridge, setup
