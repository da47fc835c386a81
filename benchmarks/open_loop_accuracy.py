"""Open-loop accuracy: the planner's predictions for every committed open-loop GPU run, against what was measured.

Each point is a run of real vLLM 0.26.0 (dummy weights) at a Poisson arrival rate: `serveplan verify` of a plan
(the plan's request, configuration and traffic are in its verify.json), or `serveplan bench` of a bare
`vllm serve` with vLLM's defaults (the configuration those defaults amount to is written below). None of these
runs was used to fit anything: the only fitted engine terms are the H100 calibration from closed-loop runs
(benchmarks/accuracy.py), and the H200 has none. So every row is held out. The table shows predicted / measured - 1 (negative = optimistic)
and, per row, the worst optimism factor (measured / predicted) over TTFT P50, TPOT P50 and TPOT P99.

    python benchmarks/open_loop_accuracy.py            # table
    python benchmarks/open_loop_accuracy.py --markdown # the table docs/accuracy.md shows
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from serveplan.planner.config import build_request  # noqa: E402
from serveplan.planner.estimate import estimate  # noqa: E402
from serveplan.planner.spec import Candidate, PlanRequest  # noqa: E402

R = HERE / "gpu" / "results"

# (label, verify.json) for plans run by `serveplan verify`
VERIFY_RUNS = [
    ("H100 8B fp8 rag 2 req/s", R / "verify-rag.json"),
    ("H100 8B fp8 rag 2 req/s, prefix cached", R / "verify-rag-prefixcached.json"),
    ("H100 8B fp8 long-generation 1 req/s", R / "verify-long-generation.json"),
    ("H200 8B fp8 TP1x2 summarize 1 req/s", R / "launch_safety/session3/verify-8b-2gpu-summarize-1.json"),
    ("H200 8B fp8 chat 26 req/s (winner)", R / "session4/q1/q1-winner-verify.json.gz"),
    ("H200 70B fp8 TP1x2 chat 8 req/s (winner)", R / "session4/q2w/q2-winner-verify.json.gz"),
]
# (label, bench JSON, model, gpus, rate, tp): `vllm serve FOLDER [--tensor-parallel-size TP]` with vLLM
# 0.26.0's defaults on an H200: bf16, max_num_seqs 1024, max_num_batched_tokens 8192 (>= 70 GiB cards),
# chunked prefill and prefix caching on, max_model_len = the folder's 32768, gpu_memory_utilization 0.92.
DEFAULTS_RUNS = [
    ("H200 8B bf16 chat 26 req/s (vLLM defaults)", R / "session4/q1/q1-defaults-bench.json.gz",
     "llama-3.1-8b", "1xH200", 26.0, 1),
    ("H200 70B bf16 TP2 chat 8 req/s (vLLM defaults)", R / "session4/q2d/q2-defaults-bench.json.gz",
     "llama-3.1-70b", "2xH200", 8.0, 2),
]


def _read(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def points() -> list[tuple[str, PlanRequest, Candidate, dict]]:
    out = []
    for label, path in VERIFY_RUNS:
        doc = _read(path)
        req = PlanRequest(**doc["request"])
        req = req.model_copy(update={"traffic": type(req.traffic)(**doc["traffic"])})
        out.append((label, req, Candidate(**doc["config"]), doc["measured"]))
    for label, path, model, gpus, rate, tp in DEFAULTS_RUNS:
        doc = _read(path)
        req = build_request(model=model, gpus=gpus, traffic="chat",  # the runs' vLLM, not the default (0.33.0)
                            overrides=[f"traffic.rate_rps={rate}", "engine.version=0.26.0"])
        cand = Candidate(tp=tp, weight_dtype="bf16", kv_cache_dtype="auto", max_num_seqs=1024,
                         max_num_batched_tokens=8192, chunked_prefill=True, max_model_len=32768,
                         enable_prefix_caching=True)
        out.append((label, req, cand, doc["summary"]))
    return out


METRICS = [("TTFT P50", "ttft_ms", "p50"), ("TTFT P99", "ttft_ms", "p99"), ("TPOT P50", "tpot_ms", "p50"),
           ("TPOT P99", "tpot_ms", "p99"), ("out tok/s", "output_tok_s", None)]


def rows() -> list[dict]:
    table = []
    for label, req, cand, measured in points():
        pred = estimate(req, cand).predictions
        row = {"point": label, "saturated (predicted)": pred.saturated}
        worst = 1.0
        for name, key, pct in METRICS:
            if pct:
                p, m = getattr(pred, key).at(pct), measured[key][pct]
            else:
                p, m = pred.throughput_tok_s, measured.get("output_tok_s")
            row[name] = (p, m)
            if pct and name != "TTFT P99" and p > 0:
                worst = max(worst, m / p)
        row["optimism"] = worst
        table.append(row)
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    table = rows()
    names = [n for n, _, _ in METRICS]
    if a.markdown:
        print("| point | " + " | ".join(f"{n} pred / meas" for n in names) + " | worst optimism |")
        print("|---|" + "---:|" * (len(names) + 1))
    for r in table:
        cells = []
        for n in names:
            p, m = r[n]
            err = f"{(p / m - 1) * 100:+.0f}%" if m else "n/a"
            cells.append(f"{p:,.1f} / {m:,.1f} ({err})" if m else f"{p:,.1f} / -")
        if a.markdown:
            print(f"| {r['point']} | " + " | ".join(cells) + f" | {r['optimism']:.2f}x |")
        else:
            print(f"{r['point']}\n   " + "\n   ".join(f"{n:10s} {c}" for n, c in zip(names, cells))
                  + f"\n   worst optimism (TTFT P50, TPOT P50/P99): {r['optimism']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
