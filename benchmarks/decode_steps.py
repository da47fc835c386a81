"""Decode steps against the planner: what one step of C running sequences at context L costs, FP8 against bf16 KV.

Session 10 (`benchmarks/gpu/session10_decode.sh`, one H200, then the 8B pair on one H100; vLLM 0.26.0, dummy
weights) sent bursts of C prompts of L tokens at once (C requests, 256 tokens out each): they prefill together and
then decode in lockstep at batch C, so the last 128 gaps between tokens of every request are decode steps of C
sequences at context L+128..L+256. Session 11b (`session11b.sh`) added Qwen3-30B-A3B FP8 at batches 16 and 64 and the
70B FP8 at batches 16-64, all held out. This prints, per server and burst, the measured step (median over requests of
each one's median last-128 gap; a request whose tokens the API server coalesced has fewer gaps and is left out) and
the shipped model's step for the same batch and context (calibrated), with the model's decode attention.

    python benchmarks/decode_steps.py                 # table (markdown)
    python benchmarks/decode_steps.py --fp8-kv-term   # solve conf/engine/vllm.yaml's fp8_kv_convert_gbs
    python benchmarks/decode_steps.py --seq-term      # unequal against equal bursts, fp8_kv_seq_gbs solved (session 15)
    python benchmarks/decode_steps.py --small-batches # session 23's small batches, with and without the threshold

The term is solved on the H200 8B pair alone (FP8 and bf16 KV on the same weights, batches of 32 and 64: at 128
sequences the API server streams fewer tokens per second than the GPU makes, and its gaps are the front end's); the
70B's sweep and the H100's pair are held out.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.calibrate import step_model_of  # noqa: E402
from serveplan.planner.memory import kv_bytes_per_token_per_gpu  # noqa: E402
from serveplan.planner.perf import StepModel  # noqa: E402
from serveplan.planner.profiles import Calibration, find_calibration  # noqa: E402

from open_loop_accuracy import _read  # noqa: E402  (benchmarks/: a committed bench file, gzipped or not)

R = HERE / "gpu" / "results"
SERVERS = [R / "session10" / s for s in ("D8F", "D8A", "D70F", "D70A")] + \
    [R / "session10-h100" / s for s in ("D8F", "D8A")] + \
    [R / "session11b" / s for s in ("QF", "L")] + \
    [R / "session12" / "H2", R / "session12b" / "L2"] + \
    [R / "session13" / s for s in ("QR", "D2")] + \
    [R / "session15b" / s for s in ("SE", "SF")] + [R / "session15c" / "SA"] + \
    [R / "session16" / s for s in ("B20F", "B20A")] + [R / "session16c" / "H20F"] + \
    [R / "session17" / s for s in ("Q8", "I70", "Q32", "G4", "G70")] + \
    [R / "session18" / s for s in ("A8", "A70", "F8")] + \
    [R / "session19" / s for s in ("M8", "M70", "P8")] + [R / "session19b" / "M70T2"] + \
    [R / "session20" / s for s in ("K70", "Q8", "Q70")]
# session 11: Qwen3-30B-A3B FP8, the 70B FP8 by batch; session 12: the 70B at TP=2, and at TP=1 at batches 64-256;
# session 13: Qwen3 FP8 with a bf16 router, the 32B bf16 (each burst twice, -r1/-r2) (all held out); session 15b: the
# 70B FP8 and the 8B FP8, FP8 KV, at 1,024-token prompts (their bursts of unequal prompts, hburst-*, solve
# fp8_kv_seq_gbs: --seq-term); session 15c: the 8B FP8 with a bf16 KV cache, the same bursts; session 16: the 70B cut
# to 20 layers (meta.json's num_layers), FP8 + FP8 KV and bf16 on an H100, FP8 on an H200, at batches of 8-64 (all held
# out: the FP8 GEMM table they test is measured, benchmarks/fp8_gemm.py)
SEQ_SERVERS = [R / "session15b" / s for s in ("SE", "SF")] + [R / "session15c" / "SA"]  # bursts of equal and of
# chat-length prompts, same mean; session 15c's SA is the 8B with a bf16 cache (shown, not fitted: the term is FP8's)
LAST_GAPS = 128  # the lockstep decode: every request's prefill has ended before its last 128 tokens
OUTPUT_LEN = 256


def _lockstep(path: Path) -> tuple[float | None, int, list[int]]:
    """A burst file's measured decode step (the median over requests of each one's median last-LAST_GAPS gap; None
    where no request has that many gaps), how many requests gave it, and every ok request's prompt length."""
    reqs = [r for r in _read(path)["requests"] if r.get("ok")]
    per_request = [statistics.median(r["itl_ms"][-LAST_GAPS:]) for r in reqs if len(r.get("itl_ms") or []) >= LAST_GAPS]
    return (statistics.median(per_request) if per_request else None), len(per_request), [r["input_len"] for r in reqs]


def bursts(folder: Path) -> list[tuple[int, int, float, int]]:
    """[(concurrency, prompt tokens, measured decode step ms, requests)] of a server's burst-cC-lL files."""
    out = []
    for path in folder.glob("burst-c*-l*.json*"):
        c, L = map(int, re.match(r"burst-c(\d+)-l(\d+)", path.name).groups())
        step, n, _ = _lockstep(path)
        if step is not None:
            out.append((c, L, step, n))
    return sorted(out)


def _context(prompt_len: int) -> float:
    """A sequence's mean context over the lockstep's last LAST_GAPS steps."""
    return prompt_len + OUTPUT_LEN - LAST_GAPS / 2


def _with_engine(sm: StepModel, engine: dict) -> StepModel:
    """The same step model with these engine terms in place of conf/engine's."""
    return StepModel(sm.model, sm.inventory, sm.engine.model_copy(update=engine), sm.cand, sm.profile, sm.calib)


def model_step(meta: dict, c: int, L: int, engine: dict | None = None,
               calibration: Calibration | None = None) -> tuple[float, float, float]:
    """The shipped model's decode step (ms) of c sequences at the lockstep's mean context, its attention part (ms)
    and the bytes that context holds in an FP8 cache (one byte per element); engine: terms of the engine
    configuration to use instead of conf/engine's (benchmarks/w4a16.py solves some that way); calibration: another
    than the shipped one for the server's GPU."""
    cal = calibration or find_calibration("vllm", "0.26.0", meta["gpu"])
    sm = step_model_of(meta, cal, L, OUTPUT_LEN)
    if engine:
        sm = _with_engine(sm, engine)
    ctx = c * _context(L)
    fp8_bytes = ctx * kv_bytes_per_token_per_gpu(sm.model, sm.cand.tp, sm.cand.pp, "fp8")
    return sm.step_ms(c, ctx), sm.decode_attention_s(ctx) * 1000, fp8_bytes


def rows() -> list[dict]:
    out = []
    for folder in SERVERS:
        if not (folder / "meta.json").exists():
            continue
        meta = json.loads((folder / "meta.json").read_text())
        for c, L, measured, n in bursts(folder):
            model, att, fp8_bytes = model_step(meta, c, L)
            name = meta["model"] + (f" ({meta['num_layers']} layers)" if "num_layers" in meta else "")
            out.append({"server": f"{folder.parent.name}/{folder.name}", "gpu": meta["gpu"], "model": name,
                        "kv": meta["kv_cache_dtype"], "c": c, "L": L, "measured": measured, "predicted": model,
                        "attention": att, "requests": n, "fp8_kv_bytes": fp8_bytes})
    return out


FIT_PAIR = ("session10/D8F", "session10/D8A")  # the same 8B weights with FP8 and with bf16 KV, H200
FIT_MAX_BATCH = 64


def _rate_gbs(extra_ms: list[float], nbytes: list[float]) -> float:
    """The rate (GB/s) at which extra_ms ~ nbytes / rate, by least squares through the origin."""
    ms_per_byte = sum(y * x for y, x in zip(extra_ms, nbytes)) / sum(x * x for x in nbytes)
    return 1e-9 / (ms_per_byte / 1000)


def fp8_kv_term(table: list[dict]) -> float:
    """fp8_kv_convert_gbs by least squares. Over the bursts both servers of FIT_PAIR ran at batches up to
    FIT_MAX_BATCH, the FP8-KV step less the bf16-KV one (the rest of the step, the same weights and batch, cancels) is
    the FP8 read saved (half the model's bf16 decode attention) plus the conversion: FP8 bytes read / rate. Returns
    the rate in GB/s."""
    fp8 = {(r["c"], r["L"]): r for r in table if r["server"] == FIT_PAIR[0] and r["c"] <= FIT_MAX_BATCH}
    bf16 = {(r["c"], r["L"]): r for r in table if r["server"] == FIT_PAIR[1] and r["c"] <= FIT_MAX_BATCH}
    keys = sorted(fp8.keys() & bf16.keys())
    if not keys:
        raise SystemExit("no FP8/bf16 burst pairs in benchmarks/gpu/results/session10")
    # convert_ms = diff + 0.5 x bf16 attention = fp8 bytes x s_per_byte (x 1000): one coefficient, no constant
    convert_ms = [fp8[k]["measured"] - bf16[k]["measured"] + 0.5 * bf16[k]["attention"] for k in keys]
    nbytes = [fp8[k]["fp8_kv_bytes"] for k in keys]
    return _rate_gbs(convert_ms, nbytes)


SMALL_BATCH_SERVERS = [R / "session23" / "U32"]  # session 23: Qwen2.5-32B INT8 + FP8 KV, 8-16 prompts of ~6,000 tokens,
# equal (burst-) against the summarize preset's lengths (sburst-): below fp8_kv_unsplit_from or not (--small-batches)


def unequal_pairs(servers: list[Path] | None = None, prefix: str = "hburst") -> list[dict]:
    """Per server (SEQ_SERVERS by default) and batch: the burst of equal prompts against the burst of a preset's
    lengths (files `{prefix}-cC-lL`, L the equal burst's length), measured and modelled. `spread_bytes` is what the
    longest context holds beyond the mean, per KV head ((longest - mean) x bytes per token / KV heads per GPU: the
    bytes fp8_kv_seq_gbs reads). `model_unsplit` is the model's step with the wait at every batch size
    (fp8_kv_unsplit_from 0)."""
    out = []
    for folder in SEQ_SERVERS if servers is None else servers:
        if not (folder / "meta.json").exists():
            continue
        meta = json.loads((folder / "meta.json").read_text())
        cal = find_calibration("vllm", "0.26.0", meta["gpu"])
        for path in sorted(folder.glob(f"{prefix}-c*-l*.json*"), key=lambda p: int(re.findall(r"\d+", p.name)[0])):
            c, L = map(int, re.match(rf"{prefix}-c(\d+)-l(\d+)", path.name).groups())
            equal = next(folder.glob(f"burst-c{c}-l{L}.json*"), None)
            if equal is None:
                continue
            m_equal, _, _ = _lockstep(equal)
            m_unequal, _, lens = _lockstep(path)
            sm = step_model_of(meta, cal, round(statistics.mean(lens)), OUTPUT_LEN)
            unsplit = _with_engine(sm, {"fp8_kv_unsplit_from": 0.0})
            ctx = sum(_context(x) for x in lens)
            longest = _context(max(lens))
            out.append({"server": f"{folder.parent.name}/{folder.name}", "model": meta["model"], "c": c,
                        "kv": meta["kv_cache_dtype"],
                        "equal": m_equal, "unequal": m_unequal, "longest": max(lens), "mean": statistics.mean(lens),
                        "model_equal": step_model_of(meta, cal, L, OUTPUT_LEN).step_ms(c, c * _context(L)),
                        "model_mean": sm.step_ms(c, ctx), "model_unequal": sm.step_ms(c, ctx, longest_ctx=longest),
                        "model_unsplit": unsplit.step_ms(c, ctx, longest_ctx=longest), "kv_heads": sm.kv_heads,
                        "spread_bytes": (longest - ctx / c) * sm.kv_bytes_per_token / sm.kv_heads})
    return out


def fp8_kv_seq_term(pairs: list[dict]) -> float:
    """fp8_kv_seq_gbs by least squares through the origin: what a burst of unequal prompts costs beyond one of equal
    prompts (less what the model's mean context already adds) against the bytes its longest sequence holds beyond
    the mean, per KV head, over the FP8-cache pairs. Returns GB/s."""
    pairs = [p for p in pairs if p["kv"] == "fp8"]
    extra_ms = [p["unequal"] - p["equal"] - (p["model_mean"] - p["model_equal"]) for p in pairs]
    nbytes = [p["spread_bytes"] for p in pairs]
    return _rate_gbs(extra_ms, nbytes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp8-kv-term", action="store_true", help="solve fp8_kv_convert_gbs from the H200 8B pair")
    ap.add_argument("--seq-term", action="store_true", help="bursts of unequal against equal prompts (session 15b) "
                    "and fp8_kv_seq_gbs solved from them")
    ap.add_argument("--small-batches", action="store_true", help="session 23's bursts of 8-16 equal against "
                    "unequal long prompts (Qwen2.5-32B, FP8 KV), with and without fp8_kv_unsplit_from")
    a = ap.parse_args()
    if a.small_batches:
        pairs = unequal_pairs(SMALL_BATCH_SERVERS, "sburst")
        print("| server | batch (x KV heads) | longest / mean prompt | equal, meas | model, equal | unequal, meas | "
              "model, unequal (shipped) | model, unequal, no threshold |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for p in pairs:
            print(f"| {p['server']} | {p['c']} ({p['c'] * p['kv_heads']:g}) | {p['longest']:,} / {p['mean']:,.0f} | "
                  f"{p['equal']:.2f} | {p['model_equal']:.2f} | {p['unequal']:.2f} | "
                  f"{p['model_unequal']:.2f} ({p['model_unequal'] / p['unequal'] - 1:+.0%}) | "
                  f"{p['model_unsplit']:.2f} ({p['model_unsplit'] / p['unequal'] - 1:+.0%}) |")
        return 0
    if a.seq_term:
        pairs = unequal_pairs()
        if not pairs:
            raise SystemExit("no burst pairs in benchmarks/gpu/results/session15b")
        print("| server | KV | batch | longest / mean prompt | equal, meas | unequal, meas | model, equal | "
              "model, unequal at the mean | model, unequal |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for p in pairs:
            print(f"| {p['server']} | {p['kv']} | {p['c']} | {p['longest']:,} / {p['mean']:,.0f} | {p['equal']:.2f} | "
                  f"{p['unequal']:.2f} | {p['model_equal']:.2f} ({p['model_equal'] / p['equal'] - 1:+.0%}) | "
                  f"{p['model_mean']:.2f} ({p['model_mean'] / p['unequal'] - 1:+.0%}) | "
                  f"{p['model_unequal']:.2f} ({p['model_unequal'] / p['unequal'] - 1:+.0%}) |")
        print(f"\nfp8_kv_seq_gbs: {fp8_kv_seq_term(pairs):.0f}")
        return 0
    if a.fp8_kv_term:
        print(f"fp8_kv_convert_gbs: {fp8_kv_term(rows()):.0f}")
        return 0
    print("| server | GPU | model | KV | batch | prompt | decode step meas (ms) | model (ms) | model's attention (ms) | "
          "model / meas - 1 |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows():
        print(f"| {r['server']} | {r['gpu']} | {r['model']} | {r['kv']} | {r['c']} | {r['L']:,} | {r['measured']:.2f} | "
              f"{r['predicted']:.2f} | {r['attention']:.2f} | {r['predicted'] / r['measured'] - 1:+.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
