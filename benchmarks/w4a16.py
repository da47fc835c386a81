"""vLLM 0.26.0's weight-only int4 (W4A16) terms, solved on half of what session 17 measured, reported on the rest.

Session 17 (`benchmarks/gpu/session17.sh`, `session17b.sh`, two H200s) served Llama-3.1-8B (G4: the closed grid,
bursts, two open loops) and Llama-3.1-70B (G70: bursts, two open loops) as compressed-tensors W4A16 checkpoints
(GPTQ-style, symmetric, group 128; vLLM picks its Machete kernel on Hopper). The planner had assumed Marlin's published
numbers: int4 weights read at 1/1.05 of a bf16 GEMM's bandwidth, prompt chunks at 1/1.15 of its rate. Measured, an 8B
W4A16 decode step is 22-29% longer than that, a 70B's 16-31%: barely shorter than INT8's at batch 16, longer at 64.

Three engine terms (conf/engine/vllm.yaml) carry it:
  w4a16_layer_us           GPU time per layer and step (the int4 kernels' fixed cost per GEMM),
  w4a16_bandwidth_penalty  the int4 weights' bytes read this much slower than a bf16 GEMM reads its own,
  w4a16_compute_penalty    prompt chunks at 1/this of a bf16 GEMM's rate.
The first two separate only across model sizes (one model's decode step has one layer count and one weight size), so
they are solved on the 8B's concurrency-1 TPOT at its training points (the accuracy split's checkerboard) and the 70B's
bursts of 16-64, least squares on relative error (the step is linear in each). The compute penalty is solved on the
70B's bursts' mean TTFT (C x 1,024 prompt tokens taken in 8,192-token chunks), the others fixed. Held out: the 8B's
other grid points and its bursts, the 70B's burst of 64, and all four open loops (`open_loop_accuracy.py`).

Session 18 served the same two models as AWQ checkpoints (asymmetric, zero points: what `serveplan quantize` writes
for AWQ), on another host: Machete's zero-point variant decodes 2-8% slower and takes prompts in 13-20% faster. The
same solve on those runs (`--checkpoint awq`) gives conf/engine/vllm.yaml's w4a16_zero_point; held out there: the
8B's other grid points and bursts and the 70B's whole grid (accuracy.py), and the open loops.

Session 20: the kernels' math counts 16 tokens at least (Machete's smallest tile; serveplan.planner.perf's
W4A16_MIN_TOKENS), so a batch of 1-16 dequantizes and multiplies each weight tile alike; both solves were run again
with it on the same points (the held-out 70B AWQ grids' TPOT at one client had read 8-13% optimistic).

The published AutoGPTQ / AutoAWQ servers of sessions 19-20 (the AWQ 70B with an FP8 KV cache and at TP=2 among them)
are printed below each solve as held-out rows.

    python benchmarks/w4a16.py          # solve, and print every point with the shipped terms and the solution
    python benchmarks/w4a16.py --checkpoint awq
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import accuracy  # noqa: E402
import decode_steps  # noqa: E402
from open_loop_accuracy import _read  # noqa: E402  (a committed bench file, gzipped or not)

from serveplan.planner.calibrate import Observation, predict_observation  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

R = HERE / "gpu" / "results"
# per checkpoint kind: the 8B's grid and both models' bursts. GPTQ-style (symmetric) from session 17, AWQ (asymmetric:
# zero points) from session 18, on another host; the 8B rows of each are its own server's.
# held_out_*: servers shown beside each solve and never solved on (their grids, and their bursts' decode steps and mean
# TTFT): the AWQ 70B's own grid (session 18), and the published formats and other layouts of sessions 19-20.
CHECKPOINTS = {
    "gptq": {"grid": R / "session17" / "G4" / "grid.jsonl",
             "bursts": {"8B": R / "session17" / "G4", "70B": R / "session17" / "G70"},
             "held_out_grids": {"8B AutoGPTQ": R / "session20" / "Q8" / "grid.jsonl"},
             "held_out_bursts": {"8B AutoGPTQ": R / "session20" / "Q8", "70B AutoGPTQ": R / "session20" / "Q70"}},
    "awq": {"grid": R / "session18" / "A8" / "grid.jsonl",
            "bursts": {"8B": R / "session18" / "A8", "70B": R / "session18" / "A70"},
            "held_out_grids": {"70B": R / "session18" / "A70" / "grid.jsonl",
                               "70B AutoAWQ": R / "session19" / "M70" / "grid.jsonl",
                               "70B AutoAWQ FP8-KV": R / "session20" / "K70" / "grid.jsonl"},
            "held_out_bursts": {"8B AutoAWQ": R / "session19" / "M8", "70B AutoAWQ": R / "session19" / "M70",
                                "70B AutoAWQ FP8-KV": R / "session20" / "K70",
                                "70B AutoAWQ TP=2": R / "session19b" / "M70T2"}},
}
FIT_BURSTS = {("70B", 16), ("70B", 32), ("70B", 64)}  # the 70B's bursts: the split by size, the growth by batch
DECODE_TERMS = {"w4a16_layer_us": 10.0, "w4a16_bandwidth_penalty": 0.5, "w4a16_overlap": -0.5}  # term: its step
# int4 weights dequantized into bf16 MMAs never outrun the bf16 GEMM: the compute penalty is at least 1 (unbounded,
# the AWQ 70B's bursts solve it at 0.95; tests/test_perf_serving.py holds W4A16 prompts no faster than bf16)
COMPUTE_PENALTY_RANGE = (1.0, 3.0)
BEFORE = {"w4a16_layer_us": 0.0, "w4a16_bandwidth_penalty": 1.05, "w4a16_compute_penalty": 1.15,
          "w4a16_overlap": 1.0}  # session 16's (Marlin's published numbers, a dense GEMM's overlap)


def grid_points(kind: str = "gptq") -> list:
    return accuracy.load_points([CHECKPOINTS[kind]["grid"]])


def held_out_grid_points(kind: str) -> list[tuple[str, object]]:
    """[(model, point)] of the other grids of this checkpoint kind: every point held out (the AWQ 70B's, session 18)."""
    return [(name, o) for name, path in CHECKPOINTS[kind].get("held_out_grids", {}).items()
            for o in accuracy.load_points([path])]


def is_fit_point(o) -> bool:  # noqa: ANN001
    """The accuracy split's concurrency-1 checkerboard points of the 8B W4A16 grid."""
    return accuracy.is_w4a16_term(o)


@functools.lru_cache(maxsize=None)
def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def _as_engine(terms: dict) -> dict:
    """The terms as the engine's, for either checkpoint kind: without the shipped zero-point set, which would
    otherwise replace them on an AWQ server."""
    return {**terms, "w4a16_zero_point": {}}


def burst_step(folder: Path, c: int, L: int, terms: dict) -> float:
    """The model's decode step (ms) of a burst of c prompts of L tokens, with these engine terms."""
    return decode_steps.model_step(_meta(folder), c, L, engine=_as_engine(terms))[0]


def bursts(kind: str = "gptq") -> list[tuple[str, Path, int, int, float]]:
    """[(model, its server's folder, c, L, measured decode step ms)] of both servers."""
    return [(name, folder, c, L, step) for name, folder in CHECKPOINTS[kind]["bursts"].items()
            for c, L, step, _ in decode_steps.bursts(folder)]


def held_out_bursts(kind: str) -> list[tuple[str, Path, int, int, float]]:
    """bursts() of the servers this checkpoint kind's solve never sees (CHECKPOINTS[kind]["held_out_bursts"])."""
    return [(name, folder, c, L, step) for name, folder in CHECKPOINTS[kind].get("held_out_bursts", {}).items()
            for c, L, step, _ in decode_steps.bursts(folder)]


@functools.lru_cache(maxsize=None)  # moe_quant.py's search asks for the same bursts at every step: read each file once
def burst_observation(name: str, folder: Path, c: int, L: int):  # noqa: ANN201
    """A burst as a closed-loop point (C prompts of L tokens at once, OUTPUT_LEN out each): its mean TTFT is how fast
    the server takes prompts in, C x L tokens in chunks of max_num_batched_tokens."""
    meta = _meta(folder)
    reqs = [r for r in _read(folder / f"burst-c{c}-l{L}.json.gz")["requests"] if r.get("ok")]
    return Observation(label=f"{name}-burst", shape="burst", model=meta["model"], gpu=meta["gpu"], tp=meta["tp"],
                       weight_dtype=meta["weight_dtype"], kv_cache_dtype=meta["kv_cache_dtype"],
                       max_num_seqs=meta["max_num_seqs"], max_num_batched_tokens=meta["max_num_batched_tokens"],
                       max_model_len=meta["max_model_len"], input_len=L, output_len=decode_steps.OUTPUT_LEN,
                       concurrency=c, num_prompts=c, ttft_ms=sum(r["ttft_ms"] for r in reqs) / len(reqs),
                       tpot_ms=0.0, throughput_tok_s=0.0)


def _predict(o, terms: dict) -> dict:  # noqa: ANN001
    cal = find_calibration("vllm", "0.26.0", o.gpu)
    return predict_observation(o, cal, engine=_as_engine(terms))


def _decode_rows(terms: dict, points: list, steps: list) -> list[tuple[float, float]]:
    """(predicted, measured) of the decode fit's rows: concurrency-1 TPOT, then the fitted bursts."""
    rows = [(_predict(o, terms)["tpot_ms"], o.tpot_ms) for o in points]
    rows += [(burst_step(folder, c, L, terms), m) for _, folder, c, L, m in steps]
    return rows


def solve_decode(base: dict, points: list, steps: list) -> dict:
    """w4a16_layer_us, w4a16_bandwidth_penalty and w4a16_overlap by least squares on relative error; the step is
    linear in each (the rate of its math fixed), so one evaluation at the base and one per term give the system."""
    import numpy as np

    at = dict(base)
    y0 = _decode_rows(at, points, steps)
    cols = []
    for k, d in DECODE_TERMS.items():
        y1 = _decode_rows({**at, k: at[k] + d}, points, steps)
        cols.append([(b[0] - a[0]) / d for a, b in zip(y0, y1)])
    meas = np.array([m for _, m in y0])
    a = np.array(cols).T / meas[:, None]
    rhs = (meas - np.array([p for p, _ in y0])) / meas
    delta, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    return {**at, **{k: round(at[k] + float(x), 2) for k, x in zip(DECODE_TERMS, delta)}}


def golden_section(loss: Callable[[float], float], lo: float, hi: float, steps: int = 30) -> float:
    """The x in [lo, hi] where a one-minimum loss is least, by golden-section search (benchmarks/moe_quant.py too)."""
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(steps):
        if loss(c) < loss(d):
            hi, d = d, c
            c = hi - g * (hi - lo)
        else:
            lo, c = c, d
            d = lo + g * (hi - lo)
    return (lo + hi) / 2


def solve_compute(base: dict, points: list) -> dict:
    """w4a16_compute_penalty by golden-section search on the squared log error of the points' mean TTFT."""
    def loss(x: float) -> float:
        return sum(math.log(_predict(o, {**base, "w4a16_compute_penalty": x})["ttft_ms"] / o.ttft_ms) ** 2
                   for o in points)

    return {**base, "w4a16_compute_penalty": round(golden_section(loss, *COMPUTE_PENALTY_RANGE), 2)}


def solve(kind: str = "gptq") -> dict:
    pts = [o for o in grid_points(kind) if is_fit_point(o)]
    steps = [b for b in bursts(kind) if (b[0], b[2]) in FIT_BURSTS]  # (model, concurrency)
    terms = solve_decode(BEFORE, pts, steps)
    terms = solve_compute(terms, [burst_observation(n, folder, c, L) for n, folder, c, L, _ in steps])
    return solve_decode(terms, pts, steps)  # the decode terms again, with the prompts' rate settled


def report(terms: dict, label: str, kind: str = "gptq") -> None:
    print(f"\n{label}: " + ", ".join(f"{k} {v:g}" for k, v in terms.items()))
    print("| point | split | TTFT meas / model (ms) | TPOT meas / model (ms) |")
    print("|---|---|---:|---:|")
    for name, o, solved_on in [("8B", o, True) for o in grid_points(kind)] + \
            [(name, o, False) for name, o in held_out_grid_points(kind)]:
        p = _predict(o, terms)
        split = "fit" if solved_on and is_fit_point(o) else "held out"
        print(f"| {name} {o.shape} x{o.concurrency} | {split} | {o.ttft_ms:.1f} / {p['ttft_ms']:.1f} "
              f"({p['ttft_ms'] / o.ttft_ms - 1:+.0%}) | {o.tpot_ms:.2f} / {p['tpot_ms']:.2f} "
              f"({p['tpot_ms'] / o.tpot_ms - 1:+.0%}) |")
    print("\n| burst | split | decode step meas / model (ms) | mean TTFT meas / model (ms) |")
    print("|---|---|---:|---:|")
    for n, folder, c, L, m in bursts(kind) + held_out_bursts(kind):
        p = burst_step(folder, c, L, terms)
        o = burst_observation(n, folder, c, L)
        t = _predict(o, terms)["ttft_ms"]
        split = "fit" if (n, c) in FIT_BURSTS else "held out"
        print(f"| {n} x{c} at {L:,} | {split} | {m:.2f} / {p:.2f} ({p / m - 1:+.0%}) | {o.ttft_ms:,.0f} / {t:,.0f} "
              f"({t / o.ttft_ms - 1:+.0%}) |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", choices=sorted(CHECKPOINTS), default="gptq",
                    help="gptq: symmetric (session 17), awq: asymmetric, zero points (session 18)")
    kind = ap.parse_args().checkpoint
    report(BEFORE, "Before (the assumed Marlin terms)", kind)
    report(solve(kind), "Solved", kind)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
