"""vLLM's FP8 GEMM against the one the hardware profile times, by M: the table the shipped calibrations carry.

Session 16 (`benchmarks/gpu/fp8_gemm_by_m.py`, vLLM 0.26.0, one H100 and one H200) timed the linear layers of the
70B (TP 1 and 2), the 8B and the 32B at 32 values of M (tokens in the step), each in a CUDA graph over weights
rotated past L2: vLLM's `cutlass_scaled_mm` (what `CutlassFP8ScaledMMLinearKernel` runs for every FP8 checkpoint on
Hopper) with per-tensor and with per-token x per-channel scales, `torch._scaled_mm` (the profile's FP8 curve) and
bf16 cuBLAS. Per shape set and M, the ratio is the four layers' summed CUTLASS time over their summed
`torch._scaled_mm` time; the table is the median over the four shape sets and both scale layouts (8 ratios per M),
over that median's own median at M <= 16 up to 256 tokens (1.00 on the H100, 1.08 on the H200) and at M >= 1,024
beyond (1.01 and 0.97): the calibrations' bandwidth and compute scales, fitted on vLLM's own steps (decode batches of
1-64, prompt chunks of thousands of tokens), already hold the kernel's rate there, and the table adds how it departs
from the profile's kernel in between.
Nothing here is fitted: every decode burst and open loop stays held out.
The H100 carries the H200's INT8 table (INT8_CARRIED, `measured_on: h200`; no H100 was lent to time it): its own
int8 curve, torch._int_mm, is far slower than vLLM's INT8 kernel.

    python benchmarks/fp8_gemm.py            # the factor by M on both GPUs, and the 70B's layer time
    python benchmarks/fp8_gemm.py --write    # put the factors in serveplan/profiles/calibration/vllm-0.26.0/
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import write_calibration  # noqa: E402
from serveplan.planner.perf import GEMM_COMPUTE_KNEE_TOKENS  # noqa: E402
from serveplan.planner.profiles import KernelFactor, find_calibration  # noqa: E402

R = HERE / "gpu" / "results"
# Per GPU, the runs whose rows make its table; a later run adds only the M the earlier ones lack (session 17's fine
# grid between 129 and 1,023 on another H200 host agreed with session 16b's within 0.04 at the seven M both timed;
# session 18's 17 more M between 1,025 and 8,191, a third host, within 0.03 at 2,048-8,192 and 0.08 at 1,024).
RUNS = {"h100-sxm": (R / "session16" / "gemm.jsonl.gz",),
        "h200": (R / "session16b" / "gemm.jsonl.gz", R / "session17" / "gemm-fine.jsonl.gz",
                 R / "session18" / "gemm-coarse.jsonl.gz")}
# vLLM's CUTLASS INT8 GEMM, torch._scaled_mm beside it
INT8_RUNS = {"h200": (R / "session17" / "gemm-int8.jsonl.gz", R / "session18" / "gemm-coarse.jsonl.gz")}
# GPU -> the GPU whose INT8 table it carries, not measured on it (no H100 was lent for it). vLLM runs the same SM90
# CUTLASS INT8 kernel on both, and the table is relative to the FP8 kernel's level where compute-bound; the H100's
# own int8 curve, torch._int_mm, was 1.4-1.8x slower than vLLM's kernel on the H200's prompts (session 17).
INT8_CARRIED = {"h100-sxm": "h200"}
INT8_KERNELS = ("int8-cutlass-tc",)  # compressed-tensors W8A8 INT8: per-token x per-channel scales
SETS = (("llama-70b", 1), ("llama-70b", 2), ("llama-8b", 1), ("qwen-32b", 1))
ENGINE_KERNELS = ("fp8-cutlass-t", "fp8-cutlass-tc")  # per-tensor; per-token x per-channel (compressed-tensors)
PROFILE_KERNEL = "fp8-torch"


def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_runs(paths: tuple[Path, ...]) -> list[dict]:
    """The rows of several runs of one GPU, each later run's only at the M none before it timed."""
    rows: list[dict] = []
    for path in paths:
        seen = {r["m"] for r in rows}
        rows += [r for r in read(path) if r["m"] not in seen]
    return rows


def layer_us(rows: list[dict]) -> dict[tuple[str, int, str, int], float]:
    """(model, tp, kernel, M) -> the four linear layers' summed time (us)."""
    out: dict[tuple[str, int, str, int], float] = {}
    for r in rows:
        if "us" in r and "model" in r:
            key = (r["model"], r["tp"], r["kernel"], r["m"])
            out[key] = out.get(key, 0.0) + r["us"]
    return out


def factors(rows: list[dict], kernels: tuple[str, ...] = ENGINE_KERNELS) -> list[tuple[int, float, float, float]]:
    """[(M, median, min, max)] of the engine kernels' layer time over the profile kernel's."""
    t = layer_us(rows)
    out = []
    for m in sorted({r["m"] for r in rows if "model" in r}):
        ratios = [t[(s, tp, k, m)] / t[(s, tp, PROFILE_KERNEL, m)] for s, tp in SETS for k in kernels
                  if (s, tp, k, m) in t and (s, tp, PROFILE_KERNEL, m) in t]
        if ratios:
            out.append((m, statistics.median(ratios), min(ratios), max(ratios)))
    return out


SMALL_M = 16  # the largest M of the kernels' first tile config (the ratio jumps at 17 on both GPUs)
LARGE_M = 1024  # from here on every measured M is compute-bound on both GPUs


def _level(table: list[tuple[int, float, float, float]], large: bool) -> float:
    """The table's median ratio at M <= SMALL_M, or at M >= LARGE_M."""
    return statistics.median(f for m, f, _, _ in table if (m >= LARGE_M if large else m <= SMALL_M))


def _where(paths: tuple[Path, ...] | Path) -> str:
    return ", ".join(str(p.relative_to(HERE.parent)) for p in ((paths,) if isinstance(paths, Path) else paths))


def kernel_factor(gpu: str, table: list[tuple[int, float, float, float]]) -> KernelFactor:
    """The shipped FP8 table: the ratio by M over its median at M <= SMALL_M for the memory-bound steps (M up to the
    planner's GEMM knee, 256 tokens), over its median at M >= LARGE_M beyond. A calibration's bandwidth and compute
    scales are fitted on the engine's own steps, most of them at batches of 1-64 and at prompt chunks of thousands of
    tokens (the H200's on FP8 servers alone), so they already hold the engine kernel's rate there; the table adds how
    that kernel departs from the profile's in between, not its level."""
    return _relative(table, _level(table, False), _level(table, True),
                     f"benchmarks/fp8_gemm.py: vLLM 0.26.0 cutlass_scaled_mm over torch._scaled_mm on {gpu}, the 70B "
                     f"(TP 1, 2), 8B and 32B linear layers' time, median of per-tensor and per-token x per-channel "
                     f"scales, over its median at M <= {SMALL_M} (M <= {GEMM_COMPUTE_KNEE_TOKENS}) or M >= {LARGE_M} "
                     f"({_where(RUNS[gpu])})")


def _relative(table: list[tuple[int, float, float, float]], small: float, large: float, source: str) -> KernelFactor:
    """The table's ratios over `small` up to the planner's GEMM knee and over `large` beyond it."""
    factor = tuple(round(f / (small if m <= GEMM_COMPUTE_KNEE_TOKENS else large), 3) for m, f, _, _ in table)
    return KernelFactor(tokens=tuple(m for m, *_ in table), factor=factor, source=source)


def int8_kernel_factor(gpu: str, int8_table: list[tuple[int, float, float, float]],
                       fp8_table: list[tuple[int, float, float, float]]) -> KernelFactor:
    """The shipped INT8 table, on the profile's FP8 curve: vLLM's INT8 kernel over torch._scaled_mm by M, over its
    own median at M <= SMALL_M up to the GEMM knee (a memory-bound step reads as many weight bytes as an FP8 one, at
    the bandwidth the calibration fitted), over the FP8 table's level at M >= LARGE_M beyond (where the calibration's
    compute scale holds vLLM's FP8 kernel's rate, and INT8's runs faster than that)."""
    return _relative(int8_table, _level(int8_table, False), _level(fp8_table, True),
                     f"benchmarks/fp8_gemm.py: vLLM 0.26.0 cutlass_scaled_mm on int8 (per-token x per-channel "
                     f"scales) over torch._scaled_mm on {gpu}, the 70B (TP 1, 2), 8B and 32B linear layers' time, "
                     f"over its median at M <= {SMALL_M} (M <= {GEMM_COMPUTE_KNEE_TOKENS}) or the FP8 table's at "
                     f"M >= {LARGE_M} ({_where(INT8_RUNS[gpu])})")


def shipped_tables(data: dict[str, list[dict]] | None = None,
                   int8_data: dict[str, list[dict]] | None = None) -> dict[str, dict[str, KernelFactor]]:
    """GPU -> {calibration field: table}: what --write puts in the vLLM 0.26.0 calibrations, from the rows of RUNS
    and INT8_RUNS (read here unless given)."""
    data = data if data is not None else {gpu: read_runs(paths) for gpu, paths in RUNS.items()}
    int8_data = int8_data if int8_data is not None else {gpu: read_runs(paths) for gpu, paths in INT8_RUNS.items()}
    out: dict[str, dict[str, KernelFactor]] = {}
    for gpu, rows in data.items():
        fp8 = factors(rows)
        out[gpu] = {"fp8_gemm": kernel_factor(gpu, fp8)}
        if gpu in int8_data:
            out[gpu]["int8_gemm"] = int8_kernel_factor(gpu, factors(int8_data[gpu], INT8_KERNELS), fp8)
    for gpu, src in INT8_CARRIED.items():
        if gpu in out and "int8_gemm" in out.get(src, {}):
            out[gpu]["int8_gemm"] = out[src]["int8_gemm"].model_copy(update={"measured_on": src})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the factors into the shipped vLLM 0.26.0 "
                    "calibrations (their fitted terms unchanged)")
    a = ap.parse_args()
    data = {gpu: read_runs(p) for gpu, p in RUNS.items()}
    int8_data = {gpu: read_runs(p) for gpu, p in INT8_RUNS.items()}
    tables = {gpu: factors(rows) for gpu, rows in data.items()}
    ms = sorted({m for t in tables.values() for m, *_ in t})
    by = {gpu: {m: (f, lo, hi) for m, f, lo, hi in t} for gpu, t in tables.items()}
    us = {gpu: layer_us(rows) for gpu, rows in data.items()}
    kernels = shipped_tables(data, int8_data)
    shipped = {g: dict(zip(k["fp8_gemm"].tokens, k["fp8_gemm"].factor)) for g, k in kernels.items()}
    print("| M | " + " | ".join(f"{g}: CUTLASS / torch (range), table" for g in RUNS) + " | "
          + " | ".join(f"{g}: 70B TP1 layer us, torch / CUTLASS tc / bf16" for g in RUNS) + " |")
    print("|---:|" + "---:|" * (2 * len(RUNS)))
    for m in ms:
        cells = [f"{by[g][m][0]:.2f} ({by[g][m][1]:.2f}-{by[g][m][2]:.2f}), {shipped[g][m]:.2f}" if m in by[g] else ""
                 for g in RUNS]
        lay = [" / ".join(f"{us[g].get(('llama-70b', 1, k, m), float('nan')):.0f}"
                          for k in (PROFILE_KERNEL, "fp8-cutlass-tc", "bf16")) for g in RUNS]
        print(f"| {m:,} | " + " | ".join(cells) + " | " + " | ".join(lay) + " |")
    for gpu, path in INT8_RUNS.items():
        rows = int8_data[gpu]
        i8, t = factors(rows, INT8_KERNELS), layer_us(rows)
        table = dict(zip(kernels[gpu]["int8_gemm"].tokens, kernels[gpu]["int8_gemm"].factor))
        print(f"\n{gpu}, INT8 W8A8 ({_where(path)}): vLLM's CUTLASS INT8 over torch._scaled_mm (range over the four "
              "shape sets), the table; the 70B TP1 layers' us: torch._int_mm (the profile's int8 curve) / CUTLASS "
              "INT8 / torch._scaled_mm\n")
        print("| M | CUTLASS INT8 / torch FP8 (range), table | 70B TP1 us: _int_mm / CUTLASS INT8 / _scaled_mm |")
        print("|---:|---:|---:|")
        for m, f, lo, hi in i8:
            lay = " / ".join(f"{t.get(('llama-70b', 1, k, m), float('nan')):.0f}"
                             for k in ("int8-torch", "int8-cutlass-tc", PROFILE_KERNEL))
            print(f"| {m:,} | {f:.2f} ({lo:.2f}-{hi:.2f}), {table[m]:.2f} | {lay} |")
    if a.write:
        for gpu, tables_of in kernels.items():
            cal = find_calibration("vllm", "0.26.0", gpu)
            if cal is None or cal.applied_to:
                raise SystemExit(f"no shipped vLLM 0.26.0 calibration for {gpu}")
            print("wrote", write_calibration(cal.model_copy(update=tables_of)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
