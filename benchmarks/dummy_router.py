"""How many experts a dummy-weight FP8 router picks: why session 11b's Qwen3-30B-A3B FP8 decode steps read fewer
experts than uniform routing (`docs/accuracy.md`, session 12).

vLLM's dummy loader (`--load-format dummy`, vLLM 0.26.0 `initialize_single_dummy_weight`) draws every parameter from
U(-0.001, 0.001), in fp16 for FP8 parameters, which are then cast to e4m3: its smallest step is 2^-9 (0.002), so about
98% of the FP8 weights become zero. Session 11b's compressed-tensors folder quantized Qwen3's router (`mlp.gate`)
too. This numpy model of that router draws the same distributions (a fixed random generator, not vLLM's CUDA one):
FP8 gate weights, per-channel scales U(-0.001, 0.001), the RMSNorm weight, a token's embedding; it quantizes the
router's input per token to FP8 (three mantissa bits) and takes each token's top 8 of 128 experts. It prints the share
of experts a batch of random tokens touches, against uniform routing, and what the step model's decode step would be
with that share instead (the expert bytes not read at the profile's bandwidth).

    python benchmarks/dummy_router.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

EXPERTS, HIDDEN, TOP_K = 128, 2048, 8  # Qwen3-30B-A3B
FP8_STEP = 2.0 ** -9  # e4m3's subnormal step: U(-0.001, 0.001) rounds to 0 or +-2^-9


def to_fp8(x: np.ndarray) -> np.ndarray:
    """Round to e4m3 with three mantissa bits (subnormals in steps of 2^-9)."""
    m, e = np.frexp(x)
    normal = np.ldexp(np.round(m * 16) / 16, e)
    return np.where(np.abs(x) < 2.0 ** -6, np.round(x / FP8_STEP) * FP8_STEP, normal)


def touched_share(batch: int, rng: np.random.Generator, gate: np.ndarray, scale: np.ndarray,
                  norm: np.ndarray) -> float:
    """The share of experts the top-k of `batch` random tokens touches."""
    emb = rng.uniform(-1e-3, 1e-3, (batch, HIDDEN))
    x = emb / np.sqrt((emb ** 2).mean(1, keepdims=True)) * norm
    x_scale = np.abs(x).max(1, keepdims=True) / 448.0  # dynamic per-token FP8
    logits = (to_fp8(x / x_scale) * x_scale) @ gate.T * scale
    return len(set(np.argsort(-logits, 1)[:, :TOP_K].ravel().tolist())) / EXPERTS


def main() -> int:
    from decode_steps import bursts, model_step  # benchmarks/

    from serveplan.planner.calibrate import step_model_of
    from serveplan.planner.profiles import find_calibration

    rng = np.random.default_rng(0)
    gate = to_fp8(rng.uniform(-1e-3, 1e-3, (EXPERTS, HIDDEN)))
    scale, norm = rng.uniform(-1e-3, 1e-3, EXPERTS), rng.uniform(-1e-3, 1e-3, HIDDEN)
    folder = HERE / "gpu/results/session11b/QF"
    meta = json.loads((folder / "meta.json").read_text())
    sm = step_model_of(meta, find_calibration("vllm", "0.26.0", meta["gpu"]), 256, 256)
    measured = {c: step for c, L, step, _ in bursts(folder) if L == 256}  # the QF decode bursts at 256 tokens
    print(f"FP8 gate weights that are not zero: {(gate != 0).mean():.1%}\n")
    print("| batch | experts touched, dummy FP8 router | uniform | model step, uniform (ms) | model step, dummy share "
          "(ms) | measured (ms) |\n|---:|---:|---:|---:|---:|---:|")
    for batch in (1, 16, 64):
        share = float(np.mean([touched_share(batch, rng, gate, scale, norm) for _ in range(20)]))
        uniform = 1 - (1 - TOP_K / EXPERTS) ** batch
        step = model_step(meta, batch, 256)[0]
        dummy = step - sm.expert_bytes * (uniform - share) / sm.bw * 1000
        print(f"| {batch} | {share:.0%} | {uniform:.0%} | {step:.2f} | {dummy:.2f} | "
              + (f"{measured[batch]:.2f} |" if batch in measured else "- |"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
