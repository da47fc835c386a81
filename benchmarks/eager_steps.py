"""A prompt alone on the server: measured TTFT against the planner, the host-time floor of an eager step
(conf/engine/vllm.yaml's eager_layer_us, eager_moe_layer_us) and the floor of a step on an idle engine
(idle_step_floor_ms).

vLLM 0.26.0 captures CUDA graphs for steps of up to 512 tokens (its default max_cudagraph_capture_size); a longer
step runs eagerly and the host launches its kernels one by one. Session 11 (`benchmarks/gpu/session11.sh`) ran the
8B with --enforce-eager: every step took 35-44 ms, ten times its graphed decode step, the same for 16 prompt tokens
as for 1,024. So an eager step costs at least a host time per layer, whatever the GPU does, and a prompt of 768-2,048
tokens alone on the server (concurrency 1) waits on the host, not on the GPU. Every committed concurrency-1 sweep
(`c1-LEN.json.gz`, sessions 6-11) beyond the graphs is read here and predicted as `benchmarks/accuracy.py` predicts
a closed-loop point (6 requests, 16 tokens out, the shipped calibration of the GPU).

    python benchmarks/eager_steps.py             # every sweep point beyond the graphs, with the floor and without
    python benchmarks/eager_steps.py --solve     # solve the two terms: dense on the 8B, MoE on Mixtral (fit set)
    python benchmarks/eager_steps.py --idle      # every point inside the graphs (16-512 tokens), idle floor or not
    python benchmarks/eager_steps.py --idle --solve   # solve idle_step_floor_ms on server A's 128-token prompts

A prompt of 16-512 tokens alone (inside the graphs) waits ~15 ms in vLLM 0.26 from scheduling to its first token,
whatever its length (session 11: with or without async scheduling); one that joins running decodes costs one step
(9 ms for 192 tokens on the 8B). The idle floor is solved on session 6's server A alone (the H200 calibration's fit
server) at 128 tokens; every other server, GPU and model is held out.

The fit set is fixed (FIT): the dense term from the 8B FP8 on two H200 hosts (session 6's server A, session 10's
FP8- and bf16-KV servers; other machines of the same kind), the MoE term from Mixtral-8x7B, each at 1,024 tokens
alone (session 11's C0 ran its 1,024-token prompts mixed with other lengths, c1-mix, which is not read here). Everything else is held out:
the 14B at TP 1 and 2, the 70B at TP 1, 2 and 4, every H100 point, and Qwen3-30B-A3B (128 experts, never fitted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import Observation, predict_observation  # noqa: E402
from serveplan.planner.config import build_request  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

import open_loop_accuracy as ola  # noqa: E402  (benchmarks/: the sweep files and their reader)

R = HERE / "gpu" / "results"
# (results folder, prompt length) of the points each term is solved on
FIT = {"eager_layer_us": {("session6/A", 1024), ("session10/D8F", 1024), ("session10/D8A", 1024)},
       "eager_moe_layer_us": {("session6/F", 1024)},
       "idle_step_floor_ms": {("session6/A", 128)}}
GRAPH_TOKENS = 512  # vLLM 0.26.0's default capture size at max_num_seqs 256 (a folder's meta.json may say otherwise)


def sweep_points(inside: bool = False) -> list[tuple[str, int, dict, float, float]]:
    """(folder, prompt length, configuration, measured TTFT median ms, measured engine prefill median ms) of every
    committed concurrency-1 point whose prompt is beyond the CUDA graphs and at most 2,048 tokens (inside: within
    the graphs instead). Session 11's C2 ran with --enforce-eager, which the planner does not model: left out."""
    out = []
    for meta_path in sorted(R.glob("session*/*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if "enforce-eager" in meta.get("variant", ""):
            continue
        graphs = meta.get("max_cudagraph_capture_size") or GRAPH_TOKENS
        for n, path in ola.concurrency1_files(meta_path.parent):
            if not (n <= graphs if inside else graphs < n <= 2048):
                continue
            reqs = [r for r in ola._read(path)["requests"] if r.get("ok")]
            engine = [r["server_prefill_ms"] for r in reqs if r.get("server_prefill_ms") is not None]
            out.append((f"{meta_path.parent.parent.name}/{meta_path.parent.name}", n, meta,
                        statistics.median(r["ttft_ms"] for r in reqs), statistics.median(engine) if engine else 0.0))
    return out


def predict(meta: dict, length: int, measured: float, engine: dict | None) -> float:
    config = {k: v for k, v in meta.items() if k in Observation.model_fields}  # the server's flags
    obs = Observation(**config, input_len=length, output_len=16, concurrency=1, num_prompts=6, ttft_ms=measured,
                      tpot_ms=1.0, throughput_tok_s=1.0)
    return predict_observation(obs, find_calibration("vllm", "0.26.0", meta["gpu"]), engine)["ttft_ms"]


def solve(term: str, points: list, shipped: dict) -> float:
    """The term's value (us per layer, ms for the idle floor) at which the fit points' median predicted / measured
    TTFT is 1."""
    fit = [p for p in points if (p[0], p[1]) in FIT[term]]

    def ratio(us: float) -> float:
        return statistics.median(predict(meta, n, ttft, {**shipped, term: us}) / ttft for _, n, meta, ttft, _ in fit)

    lo, hi = 0.0, 5000.0
    if ratio(lo) >= 1.0:
        return 0.0  # the fit points are not host-bound: no floor to solve
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) < 1.0 else (lo, mid)
    return (lo + hi) / 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solve", action="store_true", help="solve eager_layer_us and eager_moe_layer_us on FIT")
    ap.add_argument("--idle", action="store_true", help="prompts inside the graphs and the idle-engine floor")
    a = ap.parse_args()
    eng = build_request(model="llama-3.1-8b", gpus="1xh200", engine="vllm", overrides=["engine.version=0.26.0"]).engine
    shipped = {"eager_layer_us": eng.eager_layer_us, "eager_moe_layer_us": eng.eager_moe_layer_us}
    points = sweep_points(inside=a.idle)
    if a.idle and a.solve:
        print(f"idle_step_floor_ms: {solve('idle_step_floor_ms', points, {}):.1f} "
              f"(shipped {eng.idle_step_floor_ms:g})")
        return 0
    if a.solve:
        dense = solve("eager_layer_us", points, {**shipped, "eager_moe_layer_us": 0.0})
        moe = solve("eager_moe_layer_us", points, {**shipped, "eager_layer_us": dense})
        print(f"eager_layer_us: {dense:.0f} (shipped {shipped['eager_layer_us']:g}); "
              f"eager_moe_layer_us: {moe:.0f} (shipped {shipped['eager_moe_layer_us']:g})")
        return 0
    off = {"idle_step_floor_ms": 0.0} if a.idle else {"eager_layer_us": 0.0, "eager_moe_layer_us": 0.0}
    print(f"{'point':22} {'model':14} {'gpu':8} tp {'len':>5} | {'TTFT meas':>9} {'engine':>7} | "
          f"{'no floor':>8} {'err':>5} | {'floor':>7} {'err':>5} | split")
    errs: dict[str, list[float]] = {"fit": [], "held out": []}
    for folder, n, meta, ttft, eng_ms in points:
        p0, p1 = predict(meta, n, ttft, off), predict(meta, n, ttft, None)
        split = "fit" if any((folder, n) in pts for pts in FIT.values()) else "held out"
        errs[split].append(p1 / ttft - 1)
        print(f"{folder:22} {meta['model']:14} {meta['gpu']:8} {meta.get('tp', 1):2d} {n:5d} | {ttft:9.1f} "
              f"{eng_ms:7.1f} | {p0:8.1f} {p0 / ttft - 1:+5.0%} | {p1:7.1f} {p1 / ttft - 1:+5.0%} | {split}")
    for split, e in errs.items():
        if e:
            print(f"{split}: {len(e)} points, mean |error| {statistics.fmean(map(abs, e)):.1%}, "
                  f"worst optimism {max(1 / (1 + x) for x in e):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
