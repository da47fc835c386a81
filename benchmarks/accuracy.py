"""Planner accuracy against vLLM 0.26.0 closed-loop grids (benchmarks/gpu/results/grid_*.jsonl: H100, 8B;
benchmarks/gpu/results/session5/*/grid.jsonl: H200, 8B / 70B / Mixtral-8x7B, TP 1 and 2;
benchmarks/gpu/results/session6/D/grid.jsonl: H200, Qwen2.5-32B bf16;
benchmarks/gpu/results/session7/{R0,T}/grid.jsonl: H200, Qwen2.5-14B bf16 at TP 1 and 2).

Each measured point is `vllm bench serve` at fixed prompt/output lengths and a fixed concurrency (closed
loop) against a known configuration (a session-5 row carries it; the session-2 rows are the H100 8B plans in
benchmarks/gpu/plans/). The planner predicts the same point with the step-level simulation of the same number
of prompts. Prints a table and the error summary; with --fit, fits one engine calibration per GPU on that GPU's
training split and reports the error on the held-out split.

The split is fixed (FIT_CONFIGS, MOE_TERM_CONFIGS, TRAIN_POINTS): a checkerboard of (shape, concurrency) points of the fitted
configurations (H100: 8B; H200: 8B and 70B at TP=1, two sizes so that size-dependent and constant terms can
be told apart), and the same checkerboard of Mixtral-8x7B FP8 and Qwen3-30B-A3B bf16, which solve the MoE terms
(--moe-term) and nothing else; every other point of those configurations, and every point of a configuration never
fitted (Qwen2.5-32B, Qwen2.5-14B, 70B and 14B at TP=2 and 4), is held out.

    python benchmarks/accuracy.py                         # uncalibrated (profile only)
    python benchmarks/accuracy.py --fit --write-calibration --plot docs/accuracy.png
    python benchmarks/accuracy.py --fit --gpu h200        # one GPU's points only
    python benchmarks/accuracy.py --shipped               # the shipped calibrations on the same split, no refit
    python benchmarks/accuracy.py --moe-term              # solve conf/engine/vllm.yaml's MoE terms
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import Observation, fit_calibration, predict_observation  # noqa: E402
from serveplan.planner.profiles import Calibration, HeldOutAccuracy, find_calibration, layout_name  # noqa: E402

import open_loop_accuracy  # noqa: E402  (benchmarks/: the open loops the H200 fit also takes)


# What a row without a configuration measured: the session-2 H100 grid (benchmarks/gpu/plans/h100-8b-*)
SESSION2 = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 1, "max_num_seqs": 256,
            "max_num_batched_tokens": 8192, "max_model_len": 4096, "gpu_memory_utilization": 0.92}
SESSION2_LABELS = ("bf16", "fp8")  # the session-2 rows' labels: their weight dtype
CONFIG_KEYS = ("model", "gpu", "tp", "weight_dtype", "kv_cache_dtype", "max_num_seqs", "max_num_batched_tokens",
               "max_model_len", "gpu_memory_utilization")


# Grids measured but not comparable, and why (the rows stay committed); by the grid file's folder
EXCLUDED = {"session5/32b-bf16": "the synthetic Qwen2 tokenizer folder does not round-trip: vLLM's own statistics show "
                                 "the server received about half the prompt tokens the bench counted (KV use of 256 "
                                 "running 512-token requests: 76k tokens, not 131k+), so TTFT and throughput refer "
                                 "to unknown lengths (session 6 measured the same 32B again with a llama-typed "
                                 "tokenizer copy)"}


def committed_grids() -> list[Path]:
    """Every committed grid file: session 2's H100 grids, then each later session's in session order, one per
    server."""
    results = HERE / "gpu" / "results"

    def session_order(p: Path) -> tuple:
        number = re.match(r"session(\d+)", p.parent.parent.name)
        return (int(number.group(1)) if number else 0, p.parent.parent.name, p.parent.name)

    return sorted(results.glob("grid_*.jsonl")) + sorted(results.glob("session*/*/grid.jsonl"), key=session_order)


# A short prompt alone on the server, in the H100's training split (session 15): its grid's checkerboard has none (the
# decode-heavy points alone are held out), so a fit there could trade the fixed cost per request against the steps
# beside it. Session 10's H100 rerun of the 8B FP8 + FP8 KV (the grid's FP8 configuration, another host) ran 128-token
# prompts alone: 6 requests, 16 tokens out.
PROMPTS_ALONE_FIT = tuple(("session10-h100/D8F", n) for n in (64, 128, 256, 512))


def prompts_alone_observations() -> list[Observation]:
    """PROMPTS_ALONE_FIT as Observations: the server's flags, its mean TTFT, TPOT and output tokens/s."""
    out = []
    for folder, n in PROMPTS_ALONE_FIT:
        path = HERE / "gpu" / "results" / folder / f"c1-{n}.json.gz"
        meta = json.loads((path.parent / "meta.json").read_text())
        doc = open_loop_accuracy._read(path)
        reqs = [r for r in doc["requests"] if r.get("ok")]
        summary = doc["summary"]
        config = {k: v for k, v in meta.items() if k in Observation.model_fields}
        out.append(Observation(**config, label=f"{folder} c1-{n}", shape="alone", input_len=n, output_len=16,
                               concurrency=1, num_prompts=len(reqs),
                               ttft_ms=sum(r["ttft_ms"] for r in reqs) / len(reqs),
                               tpot_ms=sum(r["tpot_ms"] for r in reqs) / len(reqs),
                               throughput_tok_s=summary["output_tok_s"]))
    return out


def load_points(paths: list[Path]) -> list[Observation]:
    """Mean over repeats of each (label, shape, concurrency) point, keeping the spread. A grid file whose server ran
    the configuration of an earlier one (the same meta fields) measured the same points again: its rows are more
    repeats of that file's points, under its label (session 13's D2 re-ran session 6's 32B). A label two grid files
    of different configurations share (each session's GPU script names its servers R, T, ...) is qualified by its
    session: s7-T, s8-T."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    files: dict[str, set[Path]] = defaultdict(set)
    first_of_config: dict[tuple, tuple[Path, str]] = {}
    read = []
    for p in paths:
        if f"{p.parent.parent.name}/{p.parent.name}" in EXCLUDED:
            continue
        rows = [row for row in map(json.loads, p.read_text().splitlines()) if not row.get("error")]
        config = tuple(rows[0].get(k) for k in CONFIG_KEYS) if rows and "model" in rows[0] else None
        if config is not None:
            first, first_label = first_of_config.setdefault(config, (p, rows[0]["label"]))
            rows = [{**row, "label": first_label} for row in rows]
            p_of_label = first
        else:
            p_of_label = p
        read.append((p, p_of_label, rows))
        for row in rows:
            files[row["label"]].add(p_of_label)
    for _, p, rows in read:
        for row in rows:
            label = row["label"]
            if len(files[label]) > 1:
                label = f"s{p.parent.parent.name.removeprefix('session')}-{label}"
            groups[(label, row["shape"], row["concurrency"])].append(row)
    obs = []
    for (label, shape, c), rows in sorted(groups.items()):
        def mean(k: str) -> float:
            return statistics.fmean(r[k] for r in rows)

        def spread(k: str) -> float:
            vals = [r[k] for r in rows]
            return (max(vals) - min(vals)) / statistics.fmean(vals) if len(vals) > 1 else 0.0

        r0 = rows[0]
        config = {k: r0[k] for k in CONFIG_KEYS if k in r0} if "model" in r0 else {
            **SESSION2, "weight_dtype": "fp8" if label == "fp8" else "bf16",
            "kv_cache_dtype": "fp8" if label == "fp8" else "auto"}
        obs.append(Observation(
            label=label, shape=shape, **config, input_len=rows[0]["input_len"],
            output_len=rows[0]["output_len"], concurrency=c, num_prompts=rows[0]["num_prompts"],
            ttft_ms=mean("mean_ttft_ms"), tpot_ms=mean("mean_tpot_ms"),
            throughput_tok_s=mean("output_throughput"), repeats=len(rows),
            ttft_spread=spread("mean_ttft_ms"), tpot_spread=spread("mean_tpot_ms")))
    return obs


TRAIN_POINTS = {"balanced": (1, 64), "decode": (16, 256), "prefill": (1, 64), "long": (1,)}
# (gpu, model, tp, weights) whose checkerboard points are fitted; every point of any other configuration is held out
FIT_CONFIGS = {("h100-sxm", "llama-3.1-8b", 1, "bf16"), ("h100-sxm", "llama-3.1-8b", 1, "fp8"),
               ("h200", "llama-3.1-8b", 1, "fp8"), ("h200", "llama-3.1-70b", 1, "fp8")}


# (gpu, model, tp, weights) whose checkerboard points solve conf/engine/vllm.yaml's MoE terms (--moe-term), with the
# calibration fixed; they are not in the calibration's fit. Mixtral's grid is FP8 (W8A8), Qwen3-30B-A3B's bf16: the
# first solves an FP8 MoE layer's time and the fused kernels' efficiency, the second the part without activation
# quantization (since session 12; session 11 had Qwen3 held out whole).
MOE_TERM_CONFIGS = {("h200", "mixtral-8x7b", 1, "fp8"), ("h200", "qwen3-30b-a3b", 1, "bf16")}
MOE_W8A8_CONFIG = ("h200", "mixtral-8x7b", 1, "fp8")
NO_MOE_TERMS = {"moe_layer_us": 0.0, "moe_act_quant_us_per_layer": 0.0, "moe_compute_efficiency": 1.0}  # before them
# (gpu, model, tp, weights) whose concurrency-1 checkerboard points solve conf/engine/vllm.yaml's W4A16 terms with the
# 70B's bursts (benchmarks/w4a16.py, session 17); the rest of the grid is held out.
W4A16_TERM_CONFIGS = {("h200", "llama-3.1-8b", 1, "gptq"), ("h200", "llama-3.1-8b", 1, "awq")}
# ... and whose bursts solve them with those points: their grids (the 70B AWQ's, session 18) are held-out points
W4A16_BURST_CONFIGS = {("h200", "llama-3.1-70b", 1, "gptq"), ("h200", "llama-3.1-70b", 1, "awq")}
# every configuration some of whose points something was fitted on: its other points are "held-out points", every
# point of any other configuration "never fitted"
PART_FITTED_CONFIGS = FIT_CONFIGS | MOE_TERM_CONFIGS | W4A16_TERM_CONFIGS | W4A16_BURST_CONFIGS


def config_of(o: Observation) -> tuple[str, str, int, str]:
    """What the split is keyed by: GPU, model, TP and weight precision (session 17 ran INT8 and W4A16 grids of the
    fitted 8B and 70B: other configurations, held out)."""
    return (o.gpu, o.model, o.tp, o.weight_dtype)


def is_train(o: Observation) -> bool:
    """A checkerboard over (shape, concurrency) of the fitted configurations: the calibration sees balanced
    and prefill-heavy at concurrency 1 and 64, decode-heavy at 16 and 256 and 8k prompts at 1; every held-out
    point is a (shape, concurrency) pair it never saw, or a configuration it never saw."""
    return config_of(o) in FIT_CONFIGS and o.concurrency in TRAIN_POINTS[o.shape]


def is_moe_term(o: Observation) -> bool:
    """The same checkerboard of the configurations the MoE terms are solved on."""
    return config_of(o) in MOE_TERM_CONFIGS and o.concurrency in TRAIN_POINTS[o.shape]


def is_w4a16_term(o: Observation) -> bool:
    """The concurrency-1 training points of the W4A16 configuration (benchmarks/w4a16.py solves on them)."""
    return config_of(o) in W4A16_TERM_CONFIGS and o.concurrency == 1 and o.concurrency in TRAIN_POINTS[o.shape]


def is_fitted(o: Observation) -> bool:
    """A point something was fitted on (the calibration, the MoE or the W4A16 terms): never reported as held out."""
    return is_train(o) or is_moe_term(o) or is_w4a16_term(o)


def errors(rows: list[tuple[Observation, dict]]) -> dict:
    out = {}
    for key, pk in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("throughput", "throughput_tok_s")):
        ape = [abs(p[pk] - getattr(o, pk)) / getattr(o, pk) for o, p in rows]
        ratio = [p[pk] / getattr(o, pk) for o, p in rows]
        # optimistic: predicted latency too low, or predicted throughput too high
        opt = [(1 / r if key != "throughput" else r) for r in ratio]
        out[key] = {"mape": statistics.fmean(ape), "p90_ape": sorted(ape)[int(0.9 * (len(ape) - 1))],
                    "share_over_1.3x_optimistic": sum(1 for x in opt if x > 1.3) / len(opt),
                    "worst_optimism": max(opt)}
    return out


CLOSED_LOOP_FIELDS = ("points", "ttft", "tpot", "throughput", "worst_optimism", "layouts")  # HeldOutAccuracy's part
# written here (open_loop_accuracy.py writes the rest)


def held_out_accuracy(rows: list[tuple[Observation, dict]], keep: HeldOutAccuracy | None = None) -> HeldOutAccuracy:
    """A calibration's `held_out`: its mean errors on these (held-out) closed-loop points and the worst optimism of
    any, with the open-loop part of `keep` (open_loop_accuracy.py --write-held-out writes that)."""
    e = errors(rows)
    closed = {"points": len(rows), "ttft": round(e["ttft"]["mape"], 4), "tpot": round(e["tpot"]["mape"], 4),
              "throughput": round(e["throughput"]["mape"], 4),
              "worst_optimism": round(max(v["worst_optimism"] for v in e.values()), 3),
              "layouts": tuple(sorted({layout_name(o.tp, o.weight_dtype, o.pp) for o, _ in rows}))}
    return keep.model_copy(update=closed) if keep else HeldOutAccuracy(**closed)


def print_table(rows: list[tuple[Observation, dict]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'gpu':8} {'config':12} {'shape':9} {'conc':>4} | {'TTFT meas':>9} {'pred':>8} {'err':>6} | {'TPOT meas':>9} "
          f"{'pred':>7} {'err':>6} | {'tok/s meas':>10} {'pred':>8} {'err':>6} | spread TTFT/TPOT")
    for o, p in rows:
        e = lambda k: (p[k] - getattr(o, k)) / getattr(o, k) * 100  # noqa: E731
        tag = f"8b-{o.label}" if o.label in SESSION2_LABELS else o.label
        split = "*" if is_fitted(o) else " "
        print(f"{o.gpu:8} {tag:11}{split} {o.shape:9} {o.concurrency:4d} | {o.ttft_ms:9.1f} {p['ttft_ms']:8.1f} {e('ttft_ms'):+5.0f}% | "
              f"{o.tpot_ms:9.2f} {p['tpot_ms']:7.2f} {e('tpot_ms'):+5.0f}% | {o.throughput_tok_s:10.0f} "
              f"{p['throughput_tok_s']:8.0f} {e('throughput_tok_s'):+5.0f}% | {o.ttft_spread:5.1%}/{o.tpot_spread:5.1%}")


def print_summary(name: str, err: dict) -> None:
    for k, v in err.items():
        print(f"  {name:9} {k:10}: mean APE {v['mape']:6.1%}  P90 APE {v['p90_ape']:6.1%}  "
              f">1.3x optimistic {v['share_over_1.3x_optimistic']:5.1%}  worst optimism {v['worst_optimism']:.2f}x")


def print_by_configuration(rows: list[tuple[Observation, dict]]) -> None:
    """Held-out points per configuration (GPU, model, TP, precision): mean APE of TTFT / TPOT / throughput and
    the worst optimism over the three; the table docs/accuracy.md shows."""
    groups: dict[tuple, list[tuple[Observation, dict]]] = defaultdict(list)
    for o, p in rows:
        if not is_fitted(o):
            groups[(o.gpu, o.model, o.tp, o.weight_dtype, o.kv_cache_dtype)].append((o, p))
    print("\n| GPU | model | TP | weights / KV | split | points | TTFT | TPOT | throughput | worst optimism |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    for (gpu, model, tp, w, kv), g in sorted(groups.items()):
        e = errors(g)
        split = "held-out points" if (gpu, model, tp, w) in PART_FITTED_CONFIGS else "never fitted"
        worst = max(v["worst_optimism"] for v in e.values())
        print(f"| {gpu} | {model} | {tp} | {w} / {kv} | {split} | {len(g)} | {e['ttft']['mape']:.1%} | "
              f"{e['tpot']['mape']:.1%} | {e['throughput']['mape']:.1%} | {worst:.2f}x |")


def by_server(paths: list[Path]) -> list[tuple[str, int, dict, float]]:
    """Each grid file alone, with the shipped calibrations, every point (fitted or not): (server, points, errors, mean
    signed TTFT error). load_points merges a server that re-ran an earlier one's configuration into its points; this
    keeps them apart, so two hosts' runs of one configuration (session 5's 8B FP8 and session 18's F8) compare."""
    out = []
    for p in paths:
        obs = load_points([p])
        if not obs:
            continue
        rows = [(o, predict_observation(o, find_calibration("vllm", "0.26.0", o.gpu))) for o in obs]
        signed = statistics.fmean(r["ttft_ms"] / o.ttft_ms - 1 for o, r in rows)
        out.append((f"{p.parent.parent.name}/{p.parent.name}" if p.parent.name != "results" else p.name,
                    len(rows), errors(rows), signed))
    return out


def layer_term(obs: list[Observation]) -> dict[str, float]:
    """conf/engine/vllm.yaml's per-layer step terms, solved from the training points alone: concurrency-1
    balanced TPOT of every fitted configuration (one token per step: the step is the weight bytes over the
    bandwidth plus a cost per layer) as layers x (step_us_per_layer + act_quant_us_per_layer if W8A8) + bytes read
    / (profile bandwidth x ratio), least squares, no constant. Prints each point and the solution."""
    import numpy as np

    from serveplan.planner.calibrate import step_model_of

    rows, rhs = [], []
    print("\nPer-layer step terms from the training points (balanced, concurrency 1, TPOT):")
    for o in obs:
        if not (is_train(o) and o.shape == "balanced" and o.concurrency == 1):
            continue
        sm = step_model_of(o.model_dump(), None, o.input_len, o.output_len)
        read_ms = sm._weight_read_bytes(1) / (sm.profile.memory_bandwidth_gbs * 1e9) * 1e3
        rows.append([sm.layers, sm.layers * sm.w8a8, read_ms])
        rhs.append(o.tpot_ms)
        print(f"  {o.gpu:9} {o.model:14} {o.weight_dtype:5} {sm.layers:3d} layers, weights at profile bandwidth "
              f"{read_ms:6.2f} ms, TPOT {o.tpot_ms:6.2f} ms")
    (base, quant, inv_ratio), *_ = np.linalg.lstsq(np.array(rows, float), np.array(rhs), rcond=None)
    fit = np.array(rows, float) @ np.array([base, quant, inv_ratio])
    print(f"  step_us_per_layer {base * 1e3:.0f}, act_quant_us_per_layer {quant * 1e3:.0f}, bandwidth "
          f"{1 / inv_ratio:.2f}x the profile's; residuals (ms) {', '.join(f'{f - y:+.2f}' for f, y in zip(fit, rhs))}")
    return {"step_us_per_layer": base * 1e3, "act_quant_us_per_layer": quant * 1e3, "bandwidth_ratio": 1 / inv_ratio}


def moe_term(obs: list[Observation]) -> dict[str, float]:
    """conf/engine/vllm.yaml's MoE terms, solved on the MoE configurations' checkerboard points (is_moe_term) with the
    shipped calibration fixed, for the least mean |log error| of TPOT + TTFT + 0.5 throughput (the calibration's
    objective), in two grid searches:
    1. on the W8A8 configuration's points (MOE_W8A8_CONFIG, Mixtral FP8): the time per MoE layer of FP8 weights
       (0-100 us) x moe_compute_efficiency (0.4-1.0);
    2. on the others' (Qwen3-30B-A3B bf16), the efficiency fixed: the part of that time without activation
       quantization, moe_layer_us (0 up to step 1's time); moe_act_quant_us_per_layer is the rest.
    Prints the solution and the error on the points solved and on the others of the same configurations."""
    import math

    train = [o for o in obs if is_moe_term(o)]
    rest = [o for o in obs if config_of(o) in MOE_TERM_CONFIGS and not is_moe_term(o)]
    w8a8 = [o for o in train if config_of(o) == MOE_W8A8_CONFIG]
    plain = [o for o in train if config_of(o) != MOE_W8A8_CONFIG]
    if not w8a8 or not plain:
        raise SystemExit("no MoE-term points of both precisions among the grids read")
    cals = {g: find_calibration("vllm", "0.26.0", g) for g in {o.gpu for o in train}}

    def loss(points: list[Observation], engine: dict) -> float:
        total = 0.0
        for o in points:
            p = predict_observation(o, cals[o.gpu], engine)
            total += (abs(math.log(p["tpot_ms"] / o.tpot_ms)) + abs(math.log(p["ttft_ms"] / o.ttft_ms))
                      + 0.5 * abs(math.log(p["throughput_tok_s"] / o.throughput_tok_s)))
        return total / len(points)

    fp8_grid = [{"moe_layer_us": float(us), "moe_act_quant_us_per_layer": 0.0, "moe_compute_efficiency": eff / 100}
                for us in range(0, 101, 5) for eff in range(40, 101, 5)]
    _, fp8 = min(((loss(w8a8, engine), engine) for engine in fp8_grid), key=lambda lb: lb[0])
    fp8_us, eff = fp8["moe_layer_us"], fp8["moe_compute_efficiency"]
    plain_grid = [{"moe_layer_us": float(us), "moe_act_quant_us_per_layer": fp8_us - us, "moe_compute_efficiency": eff}
                  for us in range(0, int(fp8_us) + 1, 5)]
    best_loss, best = min(((loss(plain, engine), engine) for engine in plain_grid), key=lambda lb: lb[0])
    print(f"\nMoE terms from {len(train)} points of {sorted(MOE_TERM_CONFIGS)}: moe_layer_us {best['moe_layer_us']:g}, "
          f"moe_act_quant_us_per_layer {best['moe_act_quant_us_per_layer']:g}, moe_compute_efficiency {eff:g} "
          f"(loss {loss(train, best):.3f}; without: {loss(train, NO_MOE_TERMS):.3f})")
    for name, pts in (("the points solved on", train), ("the other points of those configurations", rest)):
        if pts:
            print(f"  {name} ({len(pts)}), without the terms and with them:")
            for label, engine in (("without", NO_MOE_TERMS), ("with", best)):
                print_summary(label, errors([(o, predict_observation(o, cals[o.gpu], engine)) for o in pts]))
    return best


def parse_bounds(specs: list[str]) -> dict[str, tuple[float, float]]:
    """--bound TERM=LOW:HIGH values as fit_calibration's bounds."""
    out = {}
    for spec in specs:
        name, _, rng = spec.partition("=")
        lo, _, hi = rng.partition(":")
        try:
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise SystemExit(f"--bound {spec!r}: expected TERM=LOW:HIGH, e.g. prefill_seq_overhead_ms=0:0.3") from None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", nargs="*", type=Path, default=committed_grids())
    ap.add_argument("--gpu", help="only this GPU's points (h100-sxm, h200)")
    ap.add_argument("--fit", action="store_true", help="fit a calibration per GPU on its training split")
    ap.add_argument("--write-calibration", action="store_true")
    ap.add_argument("--bound", action="append", default=[], metavar="TERM=LOW:HIGH",
                    help="with --fit: hold a fitted term within LOW..HIGH (repeatable), to try a step model")
    ap.add_argument("--write-held-out", action="store_true", help="with --shipped: put each GPU's held-out error in "
                    "its shipped calibration (`held_out`, which a plan's Profile line quotes)")
    ap.add_argument("--shipped", action="store_true", help="report the shipped calibrations on the split, as --fit "
                    "reports its own (no refit)")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", type=Path, help="write the table and summary as JSON")
    ap.add_argument("--layer-term", action="store_true", help="only solve conf/engine/vllm.yaml's per-layer step "
                    "terms from the training points and print them")
    ap.add_argument("--moe-term", action="store_true", help="only solve conf/engine/vllm.yaml's MoE terms from the "
                    "MoE configurations' checkerboard points (the shipped calibration fixed) and print them")
    ap.add_argument("--by-server", action="store_true", help="only report each grid file alone, with the shipped "
                    "calibrations (a re-run of a configuration apart from the run it repeats)")
    a = ap.parse_args()
    if a.by_server:
        print("| server | points | TTFT (signed) | TPOT | throughput |\n|---|---:|---:|---:|---:|")
        for name, n, e, signed in by_server(a.results):
            print(f"| {name} | {n} | {e['ttft']['mape']:.1%} ({signed:+.1%}) | {e['tpot']['mape']:.1%} | "
                  f"{e['throughput']['mape']:.1%} |")
        return
    obs = [o for o in load_points(a.results) if a.gpu in (None, o.gpu)]
    if a.layer_term:
        layer_term(obs)
        return
    if a.moe_term:
        moe_term(obs)
        return
    gpus = sorted({o.gpu for o in obs})
    base = [(o, predict_observation(o, None)) for o in obs]
    print_table(base, "Uncalibrated (measured profiles, engine defaults); * = training point")
    print_summary("all", errors(base))
    report: dict = {"uncalibrated": {"all": errors(base)}}
    cals: dict[str, Calibration] = {}
    fitted = None
    if a.shipped:  # what ships, on the same split: no refit
        cals = {gpu: cal for gpu in gpus if (cal := find_calibration("vllm", "0.26.0", gpu)) is not None}
        print("\nThe shipped calibrations (serveplan/profiles/calibration/vllm-0.26.0/), not refitted")
    elif a.fit:
        for gpu in gpus:
            train = [o for o in obs if o.gpu == gpu and is_train(o)]
            if not train:
                continue
            t0 = time.perf_counter()
            fits = sorted({f"{m} TP{tp} {w}" for g, m, tp, w in FIT_CONFIGS if g == gpu})
            open_loops = [o for o in open_loop_accuracy.shipped_fit_observations() if o.gpu == gpu]
            also = f" and {len(open_loops)} open loops ({', '.join(sorted(open_loop_accuracy.SHIPPED_FIT))})" \
                if open_loops else ""
            alone = [o for o in prompts_alone_observations() if o.gpu == gpu]
            if alone:
                named = ", ".join(f"{f} {n}" for f, n in PROMPTS_ALONE_FIT)
                also += f" and {len(alone)} short prompts alone ({named})"
            cal = fit_calibration(train + open_loops + alone, version="0.26.0",  # the version the grid ran
                                  start=find_calibration("vllm", "0.26.0", gpu),  # the one it replaces, tried first
                                  bounds=parse_bounds(a.bound),
                                  source=f"benchmarks/accuracy.py --fit: closed-loop vLLM 0.26.0 grid on {gpu}, "
                                         f"checkerboard of {', '.join(fits)} ({len(train)} points){also}")
            cals[gpu] = cal
            print(f"\n{gpu}: fitted on {len(train)} training points{also} in {time.perf_counter() - t0:.1f} s: "
                  + " ".join(f"{k}={getattr(cal, k):.3g}" for k in (
                      "step_overhead_ms", "per_seq_overhead_us", "request_overhead_ms", "prefill_seq_overhead_ms",
                      "max_stream_tok_s", "eager_step_ms", "seq_layer_us", "bandwidth_scale", "attention_scale", "compute_scale",
                      "prefill_scale")))
    if a.fit or a.shipped:
        fitted = [(o, predict_observation(o, cals.get(o.gpu))) for o in obs]
        which = "fit" if a.fit else "shipped calibration"
        print_table(fitted, f"Calibrated (each GPU its own {which}); * = training point")
        report["calibrated"] = {}
        held_out_rows: dict[str, list] = {}  # per GPU: its held-out points and their predictions
        for gpu in gpus:
            tr = [r for r in fitted if r[0].gpu == gpu and is_fitted(r[0])]
            te = held_out_rows[gpu] = [r for r in fitted if r[0].gpu == gpu and not is_fitted(r[0])]
            unseen = [r for r in te if config_of(r[0]) not in PART_FITTED_CONFIGS]
            print(f"\n{gpu}:")
            if tr:
                print_summary("train", errors(tr))
            print_summary("held-out", errors(te))
            if unseen:
                print_summary("unseen", errors(unseen))
            print("  (uncalibrated on the held-out split:)")
            print_summary("held-out", errors([r for r in base if r[0].gpu == gpu and not is_fitted(r[0])]))
            report["calibrated"][gpu] = {"train": errors(tr) if tr else None, "held_out": errors(te),
                                         "unseen_configs": errors(unseen) if unseen else None,
                                         "calibration": cals[gpu].model_dump(exclude={"path"}) if gpu in cals
                                         else None}
        print_by_configuration(fitted)
        report["uncalibrated"]["held_out"] = errors([r for r in base if not is_fitted(r[0])])
        if a.write_calibration or a.write_held_out:
            from serveplan.planner.calibrate import write_calibration
            for gpu, cal in cals.items():
                held_out = held_out_accuracy(held_out_rows[gpu], keep=cal.held_out if a.shipped else None)
                print("wrote", write_calibration(cal.model_copy(update={"held_out": held_out})))
    if a.json:
        rows = [{"point": o.model_dump(), "uncalibrated": b} for o, b in base]
        if fitted is not None:
            for r, (_, f) in zip(rows, fitted):
                r["calibrated"] = f
        report["points"] = rows
        a.json.write_text(json.dumps(report, indent=1))
    if a.plot:
        plot(base, fitted, a.plot)


def plot(base, fitted, path: Path) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, key, name in zip(axes, ("ttft_ms", "tpot_ms", "throughput_tok_s"),
                             ("mean TTFT (ms)", "mean TPOT (ms)", "output tokens/s")):
        for rows, label, marker in ((base, "uncalibrated", "x"), (fitted, "calibrated", "o")):
            if rows is None:
                continue
            for split, color in ((True, "tab:blue"), (False, "tab:red")):
                xs = [getattr(o, key) for o, p in rows if is_fitted(o) == split]
                ys = [p[key] for o, p in rows if is_fitted(o) == split]
                ax.scatter(xs, ys, marker=marker, color=color if label == "calibrated" else "grey",
                           alpha=0.8 if label == "calibrated" else 0.5,
                           label=f"{label}, {'train' if split else 'held-out'}" if label == "calibrated"
                           else (label if split else None))
        lo = min(getattr(o, key) for o, _ in base) * 0.7
        hi = max(getattr(o, key) for o, _ in base) * 1.4
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo / 1.3, hi / 1.3] if key != "throughput_tok_s" else [lo * 1.3, hi * 1.3],
                "k:", lw=0.8, label="1.3x optimistic")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(name)
    axes[0].legend(fontsize=7)
    fig.suptitle("serveplan vs vLLM 0.26.0 closed-loop grids: H100 8B bf16/fp8; H200 8B, 70B (TP1, TP2), "
                 "Mixtral-8x7B fp8, Qwen2.5-32B bf16")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


if __name__ == "__main__":
    main()
