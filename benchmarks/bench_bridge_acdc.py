"""ACDC on a TransformerLens bridge: the fast attention engine against the reference (issue 11 item 3).

A randomly initialised GPT-2 bridge (n_heads 8, d_model 128, vocab 64; float64, built offline), clean and
corrupted batches of 16 random 12-token sequences, KL at the last position, ``threshold`` chosen so the
circuit keeps a middling share of the edges (0.0002: 27% on 4 layers). Prints the edge sets' agreement, the largest
difference of the tested edges' effects, both times (wall clock and CPU time of the process) and their ratios (one
process, same inputs), then the fast engine's again after the reference and the ratio to the mean of the two
(this VM's speed drifts over minutes), then the fast engine's time for 2, 4 and 8 layers.

    PYTHONPATH=. python benchmarks/bench_bridge_acdc.py [--threshold 0.0002] [--layers 4] [--growth 2 4 8] [--no-reference]
        [--arch gpt2|neox|qwen3|llama] [--stacked] [--pythia70m]
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Optional

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformer_lens.model_bridge.sources import build_bridge_from_module

import circuits
from circuits.acdc.options import AttentionOptions, Options


def bridge(layers: int, seed: int = 0, arch: str = "gpt2"):
    """The benchmark's model: 8 heads, d_model 128, vocab 64, float64; ``arch`` another family of the same size
    (``neox``: GPT-NeoX / Pythia, parallel attention and MLP, rotary on a quarter of each head; ``qwen3``: q/k
    norms, 4 KV groups; ``llama``: 4 KV groups). All four have the fast engine's delta path."""
    return wrap(*hf_model(layers, seed, arch))


def wrap(name: str, model, cfg, device: str = "cpu"):
    """The TransformerLens 4 bridge of a HuggingFace model on ``device`` (changes ``model`` in place)."""
    return build_bridge_from_module(model.to(device), name, hf_config=cfg, tokenizer=None, device=device)


def hf_model(layers: int, seed: int = 0, arch: str = "gpt2"):
    """``bridge``'s HuggingFace model before wrapping: (architecture name, float64 model in eval mode, config)."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(n_layer=layers, n_head=8, n_embd=128, vocab_size=64, n_positions=32, initializer_range=0.1)
        name, cls = "GPT2LMHeadModel", GPT2LMHeadModel
    else:
        import transformers

        common = dict(num_hidden_layers=layers, num_attention_heads=8, hidden_size=128, intermediate_size=512,
                      vocab_size=64, max_position_embeddings=32, initializer_range=0.1)
        name, cfg = {
            "neox": ("GPTNeoXForCausalLM", transformers.GPTNeoXConfig(**common, rotary_pct=0.25,
                                                                        use_parallel_residual=True)),
            "qwen3": ("Qwen3ForCausalLM", transformers.Qwen3Config(**common, num_key_value_heads=4, head_dim=16)),
            "llama": ("LlamaForCausalLM", transformers.LlamaConfig(**common, num_key_value_heads=4)),
        }[arch]
        cls = getattr(transformers, name)
    return name, cls(cfg).double().eval(), cfg


def pythia70m_shaped(seed: int = 0):
    """A randomly initialised GPT-NeoX of Pythia-70m's shape (6 layers, 8 heads, d_model 512, d_mlp 2048, vocab
    50304, rotary on a quarter of each head, parallel attention and MLP), float64; no weights downloaded."""
    return wrap(*pythia70m_hf(seed))


def pythia70m_hf(seed: int = 0):
    """``pythia70m_shaped``'s HuggingFace model before wrapping: (architecture name, model, config)."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPTNeoXConfig(num_hidden_layers=6, num_attention_heads=8, hidden_size=512, intermediate_size=2048,
                                     vocab_size=50304, max_position_embeddings=64, rotary_pct=0.25,
                                     use_parallel_residual=True, initializer_range=0.05)
    return "GPTNeoXForCausalLM", transformers.GPTNeoXForCausalLM(cfg).double().eval(), cfg


def batches(seed: int = 1, vocab: int = 64, batch: int = 16, seq: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g), torch.randint(0, vocab, (batch, seq), generator=g)


def timed(model, clean, corrupted, threshold: float, engine: str, options: Optional[Options] = None
          ) -> tuple[circuits.Circuit, float, float]:
    """The circuit, wall-clock seconds and CPU seconds of this process (1 thread: CPU time is robust to load)."""
    t0, c0 = time.perf_counter(), time.process_time()
    c = circuits.acdc(model, clean, corrupted, threshold=threshold, engine=engine, options=options)
    return c, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=0.0002)  # 27% of the 4-layer edges kept
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--growth", type=int, nargs="*", default=[2, 4, 8])
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--arch", default="gpt2", choices=["gpt2", "neox", "qwen3", "llama"])
    ap.add_argument("--stacked", action="store_true", help="the fast engine without its delta path (stacked forwards)")
    ap.add_argument("--pythia70m", action="store_true",
                    help="instead: a Pythia-70m-shaped GPT-NeoX (pythia70m_shaped), batch 8 x 12 tokens, no growth")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.machine()}, torch {torch.__version__}, 1 thread, float64")
    options = Options(attention=AttentionOptions(delta=not args.stacked))
    if args.stacked:
        print("fast engine: stacked bridge forwards only (--stacked)")
    if args.pythia70m:
        clean, corrupted = batches(vocab=50304, batch=8)
        model, args.growth, args.layers = pythia70m_shaped(), [], 6
    else:
        clean, corrupted = batches()
        model = bridge(args.layers, arch=args.arch)
    print(f"architecture: {model.cfg.architecture}")
    fast, t_fast, c_fast = timed(model, clean, corrupted, args.threshold, "fast", options)
    print(f"{args.layers} layers: fast ({fast.settings['path']}) {t_fast:.2f} s wall, {c_fast:.2f} s CPU, "
          f"{fast.n_edges}/{fast.n_total_edges} edges kept, {fast.settings['n_tested']} tested, "
          f"{fast.settings.get('passes')} stacked passes", flush=True)
    if not args.no_reference:
        ref, t_ref, c_ref = timed(model, clean, corrupted, args.threshold, "reference")
        worst = max(abs(ref.effects[e] - fast.effects[e]) for e in ref.effects) if ref.effects.keys() == fast.effects.keys() else None
        print(f"{args.layers} layers: reference {t_ref:.2f} s wall, {c_ref:.2f} s CPU, {ref.n_edges} edges kept; "
              f"identical edge sets: {ref.edges == fast.edges}; max |effect difference| {worst}; "
              f"speed-up {t_ref / t_fast:.1f}x wall, {c_ref / c_fast:.1f}x CPU", flush=True)
        # this VM's speed drifts over minutes: a fast run after the reference too, and the ratio to their mean
        after, t_after, c_after = timed(model, clean, corrupted, args.threshold, "fast", options)
        assert after.edges == fast.edges
        print(f"{args.layers} layers: fast again after the reference {t_after:.2f} s wall, {c_after:.2f} s CPU; "
              f"reference / mean of the fast runs before and after it: {2 * t_ref / (t_fast + t_after):.1f}x wall, "
              f"{2 * c_ref / (c_fast + c_after):.1f}x CPU", flush=True)
    for layers in args.growth:
        if layers == args.layers:
            c, t, cpu = fast, t_fast, c_fast
        else:
            c, t, cpu = timed(bridge(layers, arch=args.arch), clean, corrupted, args.threshold, "fast", options)
        print(f"growth: {layers} layers, {c.n_total_edges} edges, fast {t:.2f} s wall, {cpu:.2f} s CPU, {c.n_edges} kept, "
              f"{c.settings.get('passes')} passes", flush=True)


if __name__ == "__main__":
    main()
