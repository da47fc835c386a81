"""vLLM 0.26.0's INT8 W8A8 MoE experts: how much slower they take prompts in than FP8's, solved on Mixtral's bursts.

Session 22 (`benchmarks/gpu/session22b.sh`) ran the planner's answer for Mixtral-8x7B on one H200, INT8 W8A8 with an
FP8 KV cache, through `serveplan verify` at 8 req/s: TPOT P50 127 ms against a predicted 24, TTFT P50 525 ms against
117. vLLM logs "Using TRITON Int8 MoE backend" and "Using default MoE config. Performance might be sub-optimal!": no
tuned Triton configuration for INT8 experts on an H200, where FP8 experts have one. The INT8 MoE path had never run
here; the model gave INT8 experts FP8's speed.

`session22c.sh` then served three MoE servers side by side on one host with the same flags (engine_timings.sh):
Mixtral INT8 (MXI), Mixtral FP8 (MXF) and Qwen3-30B-A3B INT8 (Q3I), each with bursts of 16, 32 and 64 prompts of
1,024 tokens. Decode steps of INT8 and FP8 Mixtral are within 0-17% of each other (memory-bound: the experts' bytes
are the same); a burst's prompts take 2.7-2.9x longer in INT8. One engine term (conf/engine/vllm.yaml) carries it:
  moe_int8_compute_penalty  INT8 experts' prompt-chunk GEMMs at 1/this of the rate FP8's reach.
Solved on Mixtral INT8's bursts of 32 and 64 against FP8's on the same host: the ratio of their mean TTFT, predicted
against measured (the host's share cancels). Each server's first burst (16) is left out: its first requests waited
1.1-1.6 s in the API server, INT8 and FP8 alike. Held out: Mixtral INT8's decode steps (the term must leave them),
Qwen3-30B-A3B INT8's bursts (another MoE shape), and the verify run (`open_loop_accuracy.py`: "H200 Mixtral int8").

    python benchmarks/moe_int8.py          # solve, and print every burst with the shipped term and the solution
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import decode_steps  # noqa: E402
import w4a16  # noqa: E402  (burst_observation: a burst as a closed-loop point; golden_section)

from serveplan.planner.calibrate import predict_observation  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

R = HERE / "gpu" / "results" / "session22"
SERVERS = {"Mixtral INT8": R / "MXI", "Mixtral FP8": R / "MXF", "Qwen3-30B-A3B INT8": R / "Q3I"}
FIT = ("Mixtral INT8", "Mixtral FP8")  # the pair whose TTFT ratio is solved on
FIT_CONCURRENCY = (32, 64)  # each server's first burst (16) waited in the API server: left out
PENALTY_RANGE = (1.0, 10.0)  # spec.EngineSpec's bounds


def _ttft(name: str, c: int, penalty: float | None) -> tuple[float, float]:
    """(measured, predicted) mean TTFT of a server's burst of c prompts; penalty None: the shipped term."""
    folder = SERVERS[name]
    o = w4a16.burst_observation(name, folder, c, 1024)
    engine = None if penalty is None else {"moe_int8_compute_penalty": penalty}
    return o.ttft_ms, predict_observation(o, find_calibration("vllm", "0.26.0", o.gpu), engine=engine)["ttft_ms"]


def solve() -> float:
    """moe_int8_compute_penalty by golden-section search on the squared log error of INT8's TTFT over FP8's."""
    # the FP8 server's measured and predicted TTFT do not move with an INT8 term: once, outside the search
    fp8 = {c: _ttft(FIT[1], c, None) for c in FIT_CONCURRENCY}

    def loss(x: float) -> float:
        total = 0.0
        for c in FIT_CONCURRENCY:
            (mi, pi), (mf, pf) = _ttft(FIT[0], c, x), fp8[c]
            total += math.log((pi / pf) / (mi / mf)) ** 2
        return total

    return round(w4a16.golden_section(loss, *PENALTY_RANGE, steps=40), 2)


def report(penalty: float | None, label: str) -> None:
    print(f"\n{label}")
    print("| server | burst | split | decode step meas / model (ms) | mean TTFT meas / model (ms) |")
    print("|---|---|---|---:|---:|")
    engine = None if penalty is None else {"moe_int8_compute_penalty": penalty}
    for name, folder in SERVERS.items():
        for c, L, step, _ in decode_steps.bursts(folder):
            p = decode_steps.model_step(w4a16._meta(folder), c, L, engine=engine)[0]
            m, t = _ttft(name, c, penalty)
            split = "fit (TTFT)" if name in FIT and c in FIT_CONCURRENCY else "held out"
            print(f"| {name} | {c} x {L:,} | {split} | {step:.2f} / {p:.2f} ({p / step - 1:+.0%}) | "
                  f"{m:,.0f} / {t:,.0f} ({t / m - 1:+.0%}) |")


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    report(1.0, "INT8 experts at FP8's rate (before session 22)")
    penalty = solve()
    report(penalty, f"solved: moe_int8_compute_penalty {penalty:g}")
    report(None, "shipped (conf/engine/vllm.yaml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
