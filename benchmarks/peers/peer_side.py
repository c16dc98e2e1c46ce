"""auto-circuit's side of ``compare.py``; runs in ``.peers-venv`` (TransformerLens 2.x, auto-circuit 1.0.1).

Started by ``compare.py`` as a child process with a work directory holding ``model.json`` (architecture and the
HuggingFace config), ``weights.safetensors`` (the HuggingFace state dict) and ``batch.safetensors`` (clean,
corrupt, answers, wrong_answers). It rebuilds the HuggingFace model under transformers 4.x, converts it to a
TransformerLens 2.x ``HookedTransformer`` with TL's own weight conversion (no folding, no centering), wraps it
with ``auto_circuit.utils.graph_utils.patchable_model`` (factorized, separate q/k/v, last position) and then
answers one JSON request per stdin line with one JSON line on stdout; results go to files in the work directory
(JSON or safetensors, never pickle). Requests: ``logits``, ``edges``, ``acdc`` (threshold, optional edge order),
``eap``, ``eap_ig`` (samples), ``quit``. Each timed reply carries ``seconds`` and ``cpu_seconds`` (wall clock and this process's CPU time of the library
call).

The ACDC edge order: auto-circuit's ``acdc_prune_scores`` tests ``sorted(model.edges, key=dest.layer,
reverse=True)``; ``model.edges`` is a set, so within a layer the order is Python's set order (hash order). An
``order`` request replaces ``model.edges`` by a list in the given order for that call only; Python's sort is stable
(also with ``reverse=True``), so auto-circuit then tests exactly that order, provided it lists later layers first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # auto-circuit's progress bars: not part of what is timed

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_neox_weights  # noqa: E402

from auto_circuit.data import PromptDataLoader, PromptDataset  # noqa: E402
from auto_circuit.prune_algos.ACDC import acdc_prune_scores  # noqa: E402
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores  # noqa: E402
from auto_circuit.utils.graph_utils import patchable_model  # noqa: E402


def legacy_config(arch: str, hf: dict) -> dict:
    """transformers 5 keeps NeoX's rotary settings in ``rope_parameters``; 4.x reads ``rotary_pct`` and
    ``rotary_emb_base``: give both."""
    hf = dict(hf)
    rope = hf.get("rope_parameters") or {}
    if arch == "neox":
        hf.setdefault("rotary_pct", rope.get("partial_rotary_factor", 0.25))
        hf.setdefault("rotary_emb_base", rope.get("rope_theta", 10000))
    return hf


def tl_config(arch: str, hf: dict) -> HookedTransformerConfig:
    """TL 2.x's config for the HuggingFace config ``hf`` (the gated hooks auto-circuit needs switched on)."""
    common = dict(dtype=torch.float64, device="cpu", default_prepend_bos=False, normalization_type="LN",
                  use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True)
    if arch == "gpt2":
        d = hf["n_embd"]
        return HookedTransformerConfig(
            d_model=d, n_heads=hf["n_head"], d_head=d // hf["n_head"], d_mlp=hf.get("n_inner") or 4 * d,
            n_layers=hf["n_layer"], n_ctx=hf["n_positions"], d_vocab=hf["vocab_size"],
            act_fn=hf["activation_function"], eps=hf["layer_norm_epsilon"], positional_embedding_type="standard",
            original_architecture="GPT2LMHeadModel", **common)
    if arch == "neox":
        d, h = hf["hidden_size"], hf["num_attention_heads"]
        return HookedTransformerConfig(
            d_model=d, n_heads=h, d_head=d // h, d_mlp=hf["intermediate_size"], n_layers=hf["num_hidden_layers"],
            n_ctx=hf["max_position_embeddings"], d_vocab=hf["vocab_size"], act_fn=hf["hidden_act"],
            eps=hf["layer_norm_eps"], positional_embedding_type="rotary",
            rotary_dim=int(hf["rotary_pct"] * (d // h)), rotary_base=int(hf.get("rotary_emb_base", 10000)),
            rotary_adjacent_pairs=False, parallel_attn_mlp=hf["use_parallel_residual"],
            original_architecture="GPTNeoXForCausalLM", **common)
    raise ValueError(f"unknown architecture {arch!r}")


def load_model(work: Path) -> HookedTransformer:
    """The HookedTransformer with the weights ``compare.py`` wrote (HF model rebuilt, then TL's conversion)."""
    spec = json.loads((work / "model.json").read_text())
    arch = spec["arch"]
    hf = legacy_config(arch, spec["hf_config"])
    cls, cfg_cls, convert = {
        "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config, convert_gpt2_weights),
        "neox": (transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig, convert_neox_weights),
    }[arch]
    hf_model = cls(cfg_cls.from_dict(hf)).double().eval()
    weights = load_file(str(work / "weights.safetensors"))
    if arch == "neox" and "lm_head.weight" in weights:  # transformers 5's name of 4.x's embed_out
        weights["embed_out.weight"] = weights.pop("lm_head.weight")
    missing, unexpected = hf_model.load_state_dict(weights, strict=False)
    real_missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if real_missing or unexpected:
        raise ValueError(f"weights do not fit: missing {real_missing}, unexpected {unexpected}")
    cfg = tl_config(arch, hf)
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(convert(hf_model, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    if arch == "neox":
        use_hf_rotary(model, hf_model)
    return model.eval()


def use_hf_rotary(model: HookedTransformer, hf_model) -> None:
    """HuggingFace computes NeoX's rotary cos/sin tables in float32 whatever the model's dtype, TL 2.x in float64
    (~4e-8 apart in the logits): give TL HuggingFace's tables (same layout: halves, not adjacent pairs), so that
    the two are the same model."""
    n_ctx = model.cfg.n_ctx
    cos, sin = hf_model.gpt_neox.rotary_emb(torch.zeros(1, dtype=torch.float64), torch.arange(n_ctx)[None])
    with torch.no_grad():
        for block in model.blocks:
            block.attn.rotary_cos.copy_(cos[0])
            block.attn.rotary_sin.copy_(sin[0])


def loader(work: Path) -> PromptDataLoader:
    b = load_file(str(work / "batch.safetensors"))
    ds = PromptDataset(b["clean"], b["corrupt"], list(b["answers"]), list(b["wrong_answers"]))
    return PromptDataLoader(ds, seq_len=None, diverge_idx=0, batch_size=len(b["clean"]), shuffle=False)


def edge_name(edge) -> str:
    return f"{edge.src.name}->{edge.dest.name}"


def scores_by_name(model, prune_scores: dict) -> dict[str, float]:
    return {edge_name(e): float(prune_scores[e.dest.module_name][e.patch_idx]) for e in model.edges}


def run_acdc(model, data, threshold: float, order: list[str] | None) -> dict[str, float]:
    """auto-circuit's ACDC at one threshold (tao = threshold); kept edges score inf."""
    mantissa, exponent = f"{threshold:e}".split("e")
    edges = model.edges
    if order is not None:
        by_name = {edge_name(e): e for e in edges}
        model.edges = [by_name[n] for n in order]
    try:
        # tao = tao_base * 10 ** tao_exp, exactly as auto-circuit forms it
        scores = acdc_prune_scores(model, data, None, tao_exps=[int(exponent)], tao_bases=[float(mantissa)])
    finally:
        model.edges = edges
    return scores_by_name(model, scores)


def run_mask_gradient(model, data, samples: int | None) -> dict[str, float]:
    """auto-circuit's EAP (mask gradient at mask 0, logit difference) or its IG (``samples`` + 1 mask values)."""
    kw = dict(mask_val=0.0) if samples is None else dict(integrated_grad_samples=samples)
    scores = mask_gradient_prune_scores(model, data, None, grad_function="logit", answer_function="avg_diff", **kw)
    return scores_by_name(model, scores)


def handle(req: dict, model, data, work: Path) -> dict:
    cmd = req["cmd"]
    if cmd == "logits":
        with torch.inference_mode():
            b = load_file(str(work / "batch.safetensors"))
            save_file({"clean": model(b["clean"]).contiguous()}, str(work / "peer_logits.safetensors"))
        return {"out": "peer_logits.safetensors"}
    if cmd == "edges":
        return {"edges": sorted(edge_name(e) for e in model.edges)}
    t0, c0 = time.perf_counter(), time.process_time()
    if cmd == "acdc":
        order = json.loads((work / req["order"]).read_text()) if req.get("order") else None
        scores = run_acdc(model, data, req["threshold"], order)
    elif cmd in ("eap", "eap_ig"):
        scores = run_mask_gradient(model, data, req.get("samples"))
    else:
        raise ValueError(f"unknown request {cmd!r}")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    out = f"peer_{cmd}.json"
    tmp = work / (out + ".tmp")
    tmp.write_text(json.dumps({k: (v if v != float("inf") else "inf") for k, v in scores.items()}))
    os.replace(tmp, work / out)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "out": out}


def main() -> None:
    work = Path(sys.argv[1])
    torch.set_num_threads(1)
    reply = os.fdopen(os.dup(1), "w")  # replies only; library prints go to stderr
    os.dup2(2, 1)
    tl_model = load_model(work)
    model = patchable_model(tl_model, factorized=True, slice_output="last_seq", separate_qkv=True,
                            device=torch.device("cpu"))
    data = loader(work)
    print(json.dumps({"ready": True, "n_edges": len(model.edges)}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        print(json.dumps(handle(req, model, data, work)), file=reply, flush=True)


if __name__ == "__main__":
    main()
