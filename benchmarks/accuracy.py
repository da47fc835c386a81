"""Planner accuracy against vLLM 0.26.0 measured on an H100 (benchmarks/gpu/results/grid_*.jsonl).

Each measured point is `vllm bench serve` at fixed prompt/output lengths and a fixed concurrency (closed
loop) against the configuration in benchmarks/gpu/plans/. The planner predicts the same point with the
step-level simulation of the same number of prompts. Prints a table and the error summary; with --fit,
fits an engine calibration on the training split and reports the error on the held-out split.

    python benchmarks/accuracy.py                         # uncalibrated (profile only)
    python benchmarks/accuracy.py --fit --write-calibration --plot docs/accuracy.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import Observation, fit_calibration, predict_observation  # noqa: E402
from serveplan.planner.profiles import Calibration  # noqa: E402


def load_points(paths: list[Path]) -> list[Observation]:
    """Mean over repeats of each (label, shape, concurrency) point, keeping the spread."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in paths:
        for line in p.read_text().splitlines():
            row = json.loads(line)
            if row.get("error"):
                continue
            groups[(row["label"], row["shape"], row["concurrency"])].append(row)
    obs = []
    for (label, shape, c), rows in sorted(groups.items()):
        def mean(k: str) -> float:
            return statistics.fmean(r[k] for r in rows)

        def spread(k: str) -> float:
            vals = [r[k] for r in rows]
            return (max(vals) - min(vals)) / statistics.fmean(vals) if len(vals) > 1 else 0.0

        obs.append(Observation(
            label=label, shape=shape, weight_dtype="fp8" if label == "fp8" else "bf16",
            kv_cache_dtype="fp8" if label == "fp8" else "auto", input_len=rows[0]["input_len"],
            output_len=rows[0]["output_len"], concurrency=c, num_prompts=rows[0]["num_prompts"],
            ttft_ms=mean("mean_ttft_ms"), tpot_ms=mean("mean_tpot_ms"),
            throughput_tok_s=mean("output_throughput"), repeats=len(rows),
            ttft_spread=spread("mean_ttft_ms"), tpot_spread=spread("mean_tpot_ms")))
    return obs


TRAIN_POINTS = {"balanced": (1, 64), "decode": (16, 256), "prefill": (1, 64)}


def is_train(o: Observation) -> bool:
    """A checkerboard over (shape, concurrency), both precisions: the calibration sees balanced and
    prefill-heavy at concurrency 1 and 64 and decode-heavy at 16 and 256; every held-out point is a
    (shape, concurrency) pair it never saw."""
    return o.concurrency in TRAIN_POINTS[o.shape]


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


def print_table(rows: list[tuple[Observation, dict]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'dtype':5} {'shape':9} {'conc':>4} | {'TTFT meas':>9} {'pred':>8} {'err':>6} | {'TPOT meas':>9} "
          f"{'pred':>7} {'err':>6} | {'tok/s meas':>10} {'pred':>8} {'err':>6} | spread TTFT/TPOT")
    for o, p in rows:
        e = lambda k: (p[k] - getattr(o, k)) / getattr(o, k) * 100  # noqa: E731
        print(f"{o.label:5} {o.shape:9} {o.concurrency:4d} | {o.ttft_ms:9.1f} {p['ttft_ms']:8.1f} {e('ttft_ms'):+5.0f}% | "
              f"{o.tpot_ms:9.2f} {p['tpot_ms']:7.2f} {e('tpot_ms'):+5.0f}% | {o.throughput_tok_s:10.0f} "
              f"{p['throughput_tok_s']:8.0f} {e('throughput_tok_s'):+5.0f}% | {o.ttft_spread:5.1%}/{o.tpot_spread:5.1%}")


def print_summary(name: str, err: dict) -> None:
    for k, v in err.items():
        print(f"  {name:9} {k:10}: mean APE {v['mape']:6.1%}  P90 APE {v['p90_ape']:6.1%}  "
              f">1.3x optimistic {v['share_over_1.3x_optimistic']:5.1%}  worst optimism {v['worst_optimism']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", nargs="*", type=Path,
                    default=sorted((HERE / "gpu" / "results").glob("grid_*.jsonl")))
    ap.add_argument("--fit", action="store_true", help="fit a calibration on the training split")
    ap.add_argument("--write-calibration", action="store_true")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", type=Path, help="write the table and summary as JSON")
    a = ap.parse_args()
    obs = load_points(a.results)
    train = [o for o in obs if is_train(o)]
    test = [o for o in obs if not is_train(o)]
    t0 = time.perf_counter()
    base = [(o, predict_observation(o, None)) for o in obs]
    print_table(base, "Uncalibrated (measured H100 profile, engine defaults)")
    print_summary("all", errors(base))
    report = {"uncalibrated": {"all": errors(base)}}
    cal = None
    if a.fit:
        cal = fit_calibration(train, source="benchmarks/gpu/results/grid_*.jsonl, training checkerboard (see benchmarks/accuracy.py)",
                              version="0.26.0")  # the version the grid ran, not the default
        print(f"\nFitted on {len(train)} training points in {time.perf_counter() - t0:.1f} s: "
              f"step_overhead_ms={cal.step_overhead_ms:.3f} per_seq_overhead_us={cal.per_seq_overhead_us:.2f} "
              f"request_overhead_ms={cal.request_overhead_ms:.2f} prefill_seq_overhead_ms={cal.prefill_seq_overhead_ms:.3f} "
              f"max_stream_tok_s={cal.max_stream_tok_s:,.0f} "
              f"bandwidth_scale={cal.bandwidth_scale:.3f} compute_scale={cal.compute_scale:.3f} "
              f"prefill_scale={cal.prefill_scale:.3f}")
        fitted = [(o, predict_observation(o, cal)) for o in obs]
        print_table(fitted, "Calibrated")
        tr = [r for r in fitted if is_train(r[0])]
        te = [r for r in fitted if not is_train(r[0])]
        print_summary("train", errors(tr))
        print_summary("held-out", errors(te))
        print("  (uncalibrated on the held-out split:)")
        print_summary("held-out", errors([r for r in base if not is_train(r[0])]))
        report["calibrated"] = {"train": errors(tr), "held_out": errors(te),
                                "calibration": cal.model_dump(exclude={"path"})}
        report["uncalibrated"]["held_out"] = errors([r for r in base if not is_train(r[0])])
        if a.write_calibration:
            from serveplan.planner.calibrate import write_calibration
            print("wrote", write_calibration(cal))
    if a.json:
        rows = [{"point": o.model_dump(), "uncalibrated": b} for o, b in base]
        if cal is not None:
            for r, (_, f) in zip(rows, fitted):
                r["calibrated"] = f
        report["points"] = rows
        a.json.write_text(json.dumps(report, indent=1))
    if a.plot:
        plot(base, fitted if cal is not None else None, a.plot)
    _ = test


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
                xs = [getattr(o, key) for o, p in rows if is_train(o) == split]
                ys = [p[key] for o, p in rows if is_train(o) == split]
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
    fig.suptitle("serveplan vs vLLM 0.26.0, Llama-3-8B shape, H100 SXM (bf16 and fp8+fp8 KV)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


if __name__ == "__main__":
    main()
