"""Decode steps against the planner: what one step of C running sequences at context L costs, FP8 against bf16 KV.

Session 10 (`benchmarks/gpu/session10_decode.sh`, one H200, vLLM 0.26.0, dummy weights) sent bursts of C prompts of
L tokens at once (C requests, 256 tokens out each): they prefill together and then decode in lockstep at batch C, so
the last 128 gaps between tokens of every request are decode steps of C sequences at context L+128..L+256. This
prints, per server and burst, the measured step (median over requests of each one's median last-128 gap) and the
shipped model's step for the same batch and context (calibrated), with the model's decode-attention share.

    python benchmarks/decode_steps.py                 # table (markdown)
    python benchmarks/decode_steps.py --fp8-kv-term   # solve conf/engine/vllm.yaml's fp8_kv_decode_cost

The term is solved on the 8B pair alone (FP8 and bf16 KV on the same weights, batches of 32 and 64: at 128
sequences the API server streams fewer tokens per second than the GPU makes, and its gaps are the front end's); the
70B's sweep is held out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import step_model_of  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

R = HERE / "gpu" / "results"
SERVERS = [R / "session10" / s for s in ("D8F", "D8A", "D70F", "D70A")]
LAST_GAPS = 128  # the lockstep decode: every request's prefill has ended before its last 128 tokens
OUTPUT_LEN = 256


def _read(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def bursts(folder: Path) -> list[tuple[int, int, float, int]]:
    """[(concurrency, prompt tokens, measured decode step ms, requests)] of a server's burst-cC-lL files."""
    out = []
    for path in folder.glob("burst-c*-l*.json*"):
        c, L = map(int, re.match(r"burst-c(\d+)-l(\d+)", path.name).groups())
        per_request = [statistics.median(r["itl_ms"][-LAST_GAPS:]) for r in _read(path)["requests"]
                       if r.get("ok") and len(r.get("itl_ms") or []) >= LAST_GAPS]
        if per_request:
            out.append((c, L, statistics.median(per_request), len(per_request)))
    return sorted(out)


def model_step(meta: dict, c: int, L: int) -> tuple[float, float]:
    """The shipped model's decode step (ms) of c sequences at the lockstep's mean context, and its attention part."""
    cal = find_calibration("vllm", "0.26.0", meta["gpu"])
    sm = step_model_of(meta, cal, L, OUTPUT_LEN)
    ctx = c * (L + OUTPUT_LEN - LAST_GAPS / 2)
    att = ctx * sm.decode_kv_bytes_per_token / sm._decode_att_bw(int(ctx)) * 1000
    return sm.step_ms(c, ctx), att


def rows() -> list[dict]:
    out = []
    for folder in SERVERS:
        if not (folder / "meta.json").exists():
            continue
        meta = json.loads((folder / "meta.json").read_text())
        for c, L, measured, n in bursts(folder):
            model, att = model_step(meta, c, L)
            out.append({"server": folder.name, "model": meta["model"], "kv": meta["kv_cache_dtype"], "c": c, "L": L,
                        "measured": measured, "predicted": model, "attention": att, "requests": n})
    return out


FIT_PAIR = ("D8F", "D8A")  # the same 8B weights with FP8 and with bf16 KV
FIT_MAX_BATCH = 64


def fp8_kv_term(table: list[dict]) -> float:
    """fp8_kv_decode_cost by least squares: FP8-KV step - bf16-KV step = (cost - 1) x the model's bf16 decode
    attention, over the bursts both servers of FIT_PAIR ran at batches up to FIT_MAX_BATCH (the non-attention part of
    the step, the same weights and batch, cancels)."""
    fp8 = {(r["c"], r["L"]): r for r in table if r["server"] == FIT_PAIR[0] and r["c"] <= FIT_MAX_BATCH}
    bf16 = {(r["c"], r["L"]): r for r in table if r["server"] == FIT_PAIR[1] and r["c"] <= FIT_MAX_BATCH}
    pairs = [(fp8[k]["measured"] - bf16[k]["measured"], bf16[k]["attention"]) for k in sorted(fp8.keys() & bf16.keys())]
    if not pairs:
        raise SystemExit("no FP8/bf16 burst pairs in benchmarks/gpu/results/session10")
    return 1 + sum(d * a for d, a in pairs) / sum(a * a for _, a in pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp8-kv-term", action="store_true", help="solve fp8_kv_decode_cost from the 8B pair")
    a = ap.parse_args()
    if a.fp8_kv_term:
        print(f"fp8_kv_decode_cost: {fp8_kv_term(rows()):.2f}")
        return 0
    print("| server | model | KV | batch | prompt | decode step meas (ms) | model (ms) | model's attention (ms) | "
          "model / meas - 1 |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows():
        print(f"| {r['server']} | {r['model']} | {r['kv']} | {r['c']} | {r['L']:,} | {r['measured']:.2f} | "
              f"{r['predicted']:.2f} | {r['attention']:.2f} | {r['predicted'] / r['measured'] - 1:+.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
