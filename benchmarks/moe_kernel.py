"""vLLM 0.26.0's fused MoE kernel by M, per weight format: the table the calibrations carry for INT8 experts.

Session 27 (`benchmarks/gpu/moe_by_m.py`, one H200) timed `fused_experts`, the call vLLM's Triton MoE backend makes,
on Mixtral-8x7B's and Qwen3-30B-A3B's expert shapes at 27 step sizes (1-16,384 tokens), with the weight formats the
servers ran: bf16, fp8_w8a8 (online FP8: a scale per expert, activations quantized per tensor), int8_w8a16 (what
vLLM 0.26.0 makes of a compressed-tensors W8A8 INT8 checkpoint: its activation scales are dynamic, so the experts run
weight-only, "Config file not found ... dtype=int8_w8a16.json" in every MXI server log) and int8_w8a8 (static
activation scales, for the record). The INT8 experts' time over FP8's is the table: ~1 up to 32 tokens (both read
the same bytes), 1.2-1.8 at 48-192, ~3 from 256 (bf16 MMA behind an untuned tile against FP8 MMA behind a tuned one).
It replaces engine.moe_int8_compute_penalty (3.61, one number solved on bursts of 1,024-token prompts) where a
calibration carries it. Nothing is fitted: the table is the kernel's ratio as timed.

    python benchmarks/moe_kernel.py            # the times and ratios by M, both shapes
    python benchmarks/moe_kernel.py --write    # put the tables in the vLLM 0.26.0 calibrations (H200's own; the
                                               # H100's carried from it, measured_on h200)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import write_calibration  # noqa: E402
from serveplan.planner.profiles import KernelFactor, find_calibration, moe_shape_key  # noqa: E402

R = HERE / "gpu" / "results" / "session27"
# session 27: the two served models at TP=1, four formats; session 27b: the catalog's MoE models at the tensor-parallel
# sizes a plan shards their experts to (intermediate size per GPU), INT8 and FP8 only
RUNS = (R / "moe.jsonl", R / "moe-tp.jsonl")
# session 27's rows name their shape only: experts, intermediate (moe_by_m.SHAPES); later rows carry both
SHAPES = {"mixtral-8x7b": (8, 14336), "qwen3-30b-a3b": (128, 768)}
KINDS = ("bf16", "fp8_w8a8", "int8_w8a16", "int8_w8a8")
MEASURED_ON = "h200"
CARRIED_TO = ("h100-sxm",)  # the same architecture's calibrations, whose MoE kernels were not timed


Timings = dict[str, tuple[str, dict[int, dict[str, float]], Path]]


def read(paths: tuple[Path, ...] = RUNS) -> Timings:
    """shape name -> (its vLLM config key, M -> kind -> microseconds, the file it was read from), over the files that
    exist."""
    out: Timings = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if "us" not in r:
                continue
            e, n = (r["experts"], r["intermediate"]) if "experts" in r else SHAPES[r["shape"]]
            _, by_m, _ = out.setdefault(r["shape"], (moe_shape_key(e, n), {}, path))
            by_m.setdefault(r["m"], {})[r["kind"]] = r["us"]
    return out


def tables(data: Timings | None = None) -> dict[str, KernelFactor]:
    """Expert shape key -> the INT8 (int8_w8a16) over FP8 (fp8_w8a8) kernel time by M."""
    data = data if data is not None else read()
    out = {}
    for shape, (key, by_m, path) in data.items():
        ms = sorted(m for m, k in by_m.items() if "int8_w8a16" in k and "fp8_w8a8" in k)
        if not ms:
            continue
        out[key] = KernelFactor(
            tokens=tuple(ms), factor=tuple(round(by_m[m]["int8_w8a16"] / by_m[m]["fp8_w8a8"], 3) for m in ms),
            source=f"benchmarks/moe_kernel.py: vLLM 0.26.0 fused_experts, int8_w8a16 (default config) over fp8_w8a8, "
                   f"{shape}'s experts on {MEASURED_ON} ({path.relative_to(HERE.parent)})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the tables into the shipped vLLM 0.26.0 "
                    "calibrations (their fitted terms unchanged)")
    a = ap.parse_args()
    data = read()
    for shape, (key, by_m, _) in data.items():
        kinds = [x for x in KINDS if any(x in k for k in by_m.values())]
        over = [x for x in kinds if x != "fp8_w8a8"]
        print(f"\n{shape} ({key}), microseconds per layer, and over fp8_w8a8\n")
        print("| M | " + " | ".join(kinds) + " | " + " | ".join(f"{x} / fp8" for x in over) + " |")
        print("|---:|" + "---:|" * (len(kinds) + len(over)))
        for m in sorted(by_m):
            k = by_m[m]
            ratios = " | ".join(f"{k[x] / k['fp8_w8a8']:.2f}" if x in k and "fp8_w8a8" in k else "" for x in over)
            print(f"| {m:,} | " + " | ".join(f"{k[x]:,.1f}" if x in k else "" for x in kinds) + f" | {ratios} |")
    if a.write:
        found = tables(data)
        for gpu in (MEASURED_ON, *CARRIED_TO):
            cal = find_calibration("vllm", "0.26.0", gpu)
            if cal is None or cal.applied_to:
                raise SystemExit(f"no shipped vLLM 0.26.0 calibration for {gpu}")
            carried = found if gpu == MEASURED_ON else {
                key: t.model_copy(update={"measured_on": MEASURED_ON}) for key, t in found.items()}
            print("wrote", write_calibration(cal.model_copy(update={"moe_int8_kernel": carried})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
