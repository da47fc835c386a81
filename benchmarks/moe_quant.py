"""vLLM 0.26.0's quantized MoE experts: how much slower INT8 W8A8 and int4 (AWQ) experts take prompts in than the
model's dense terms say, each solved on Mixtral's bursts against Mixtral FP8's on the same host.

INT8 (session 22). `benchmarks/gpu/session22b.sh` ran the planner's answer for Mixtral-8x7B on one H200, INT8 W8A8 with
an FP8 KV cache, through `serveplan verify` at 8 req/s: TPOT P50 127 ms against a predicted 24, TTFT P50 525 ms
against 117. vLLM logs "Using TRITON Int8 MoE backend" and "Using default MoE config. Performance might be
sub-optimal!": no tuned Triton configuration for INT8 experts on an H200, where FP8 experts have one. `session22c.sh`
then served Mixtral INT8 (MXI), Mixtral FP8 (MXF) and Qwen3-30B-A3B INT8 (Q3I) side by side on one host with the same
flags (engine_timings.sh), each with bursts of 16, 32 and 64 prompts of 1,024 tokens. Decode steps of INT8 and FP8
Mixtral are within 0-17% of each other (memory-bound: the experts' bytes are the same); a burst's prompts take 2.7-2.9x
longer in INT8.

int4 (session 23). No W4A16 MoE had been served; the planner's second answer for Mixtral on one A100 is AWQ. The model
priced AWQ experts with the dense W4A16 terms (the Machete GEMMs' rate). `session23b.sh` served Mixtral as an AutoAWQ
folder (MXA; vLLM logs "Using 'MARLIN' WNA16 MoE backend"): its bursts' TTFT was 36% optimistic, and at 10 req/s it ran
past its capacity (TTFT P50 3.3 s against 0.2 predicted). `session23c.sh` served it again (MXA2, chat at 6 req/s) beside
Mixtral FP8 (MXF) on one host.

One engine term each (conf/engine/vllm.yaml):
  moe_int8_compute_penalty   INT8 experts' prompt-chunk GEMMs at 1/this of the rate FP8's reach;
  moe_w4a16_compute_penalty  int4 experts' prompt-chunk GEMMs at 1/this of the dense W4A16 rate.
Each is solved on the quantized server's bursts of 32 and 64 against FP8's on the same host: the ratio of their mean
TTFT, predicted against measured (the host's share cancels). Each server's first burst (16) is left out: its first
requests waited 1-4 s in the API server, quantized and FP8 alike. Held out: the decode steps (the terms must leave the
memory-bound ones), Qwen3-30B-A3B INT8's bursts (another MoE shape), MXA's bursts (another host), and the open loops
(`open_loop_accuracy.py`: "H200 Mixtral int8" and the session-23 MXA rows).

Session 27 (`benchmarks/moe_kernel.py`) timed vLLM's INT8 and FP8 expert kernels by step size: the H200 and H100
calibrations carry that table (`moe_int8_kernel`), and where one is carried it prices INT8 experts instead of
moe_int8_compute_penalty. The INT8 solve here runs without the table (the penalty is what a GPU without one gets);
the last INT8 table prints the bursts with it, every row held out.

    python benchmarks/moe_quant.py          # solve both, and print every burst with the shipped terms and the solution
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import decode_steps  # noqa: E402
import w4a16  # noqa: E402  (burst_observation: a burst as a closed-loop point; golden_section)

from serveplan.planner.calibrate import predict_observation  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

R = HERE / "gpu" / "results"
FIT_CONCURRENCY = (32, 64)  # each server's first burst (16) waited in the API server: left out
PENALTY_RANGE = (1.0, 10.0)  # spec.EngineSpec's bounds


class Term(NamedTuple):
    key: str  # the engine term (conf/engine/vllm.yaml)
    servers: dict[str, Path]  # every server whose bursts the report shows
    fit: tuple[str, str]  # (quantized, FP8 on the same host): the pair whose TTFT ratio is solved on


TERMS = {
    "int8": Term("moe_int8_compute_penalty",
                 {"Mixtral INT8": R / "session22/MXI", "Mixtral FP8": R / "session22/MXF",
                  "Qwen3-30B-A3B INT8": R / "session22/Q3I"},
                 ("Mixtral INT8", "Mixtral FP8")),
    "w4a16": Term("moe_w4a16_compute_penalty",
                  {"Mixtral AWQ (c)": R / "session23/MXA2", "Mixtral FP8 (c)": R / "session23/MXF",
                   "Mixtral AWQ (b)": R / "session23/MXA"},
                  ("Mixtral AWQ (c)", "Mixtral FP8 (c)")),
}


def _calibration(gpu: str, kernel_table: bool):
    """The shipped calibration for gpu; kernel_table False: without its measured INT8 MoE kernel table (session 27),
    so that the engine's one penalty prices INT8 experts, as it does on a GPU no table was carried to."""
    cal = find_calibration("vllm", "0.26.0", gpu)
    return cal if kernel_table else cal.model_copy(update={"moe_int8_kernel": {}})


def _ttft(term: Term, name: str, c: int, penalty: float | None, kernel_table: bool = False) -> tuple[float, float]:
    """(measured, predicted) mean TTFT of a server's burst of c prompts; penalty None: the shipped term."""
    folder = term.servers[name]
    o = w4a16.burst_observation(name, folder, c, 1024)
    engine = None if penalty is None else {term.key: penalty}
    return o.ttft_ms, predict_observation(o, _calibration(o.gpu, kernel_table), engine=engine)["ttft_ms"]


def solve(kind: str) -> float:
    """The term by golden-section search on the squared log error of the quantized server's TTFT over FP8's."""
    term = TERMS[kind]
    # the FP8 server's measured and predicted TTFT do not move with a quantized-experts term: once, outside the search
    fp8 = {c: _ttft(term, term.fit[1], c, None) for c in FIT_CONCURRENCY}

    def loss(x: float) -> float:
        total = 0.0
        for c in FIT_CONCURRENCY:
            (mq, pq), (mf, pf) = _ttft(term, term.fit[0], c, x), fp8[c]
            total += math.log((pq / pf) / (mq / mf)) ** 2
        return total

    return round(w4a16.golden_section(loss, *PENALTY_RANGE, steps=40), 2)


def report(kind: str, penalty: float | None, label: str, kernel_table: bool = False) -> None:
    term = TERMS[kind]
    print(f"\n{label}")
    print("| server | burst | split | decode step meas / model (ms) | mean TTFT meas / model (ms) |")
    print("|---|---|---|---:|---:|")
    engine = None if penalty is None else {term.key: penalty}
    for name, folder in term.servers.items():
        for c, L, step, _ in decode_steps.bursts(folder):
            p = decode_steps.model_step(w4a16._meta(folder), c, L, engine=engine,
                                        calibration=_calibration(w4a16._meta(folder)["gpu"], kernel_table))[0]
            m, t = _ttft(term, name, c, penalty, kernel_table)
            split = ("held out" if kernel_table or name not in term.fit or c not in FIT_CONCURRENCY
                     else "fit (TTFT)")
            print(f"| {name} | {c} x {L:,} | {split} | {step:.2f} / {p:.2f} ({p / step - 1:+.0%}) | "
                  f"{m:,.0f} / {t:,.0f} ({t / m - 1:+.0%}) |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=[*TERMS, "all"], default="all")
    a = ap.parse_args()
    for kind in TERMS if a.kind == "all" else (a.kind,):
        key = TERMS[kind].key
        report(kind, 1.0, f"{key} = 1 (the dense terms alone)")
        penalty = solve(kind)
        report(kind, penalty, f"solved: {key} {penalty:g}")
        report(kind, None, "shipped (conf/engine/vllm.yaml), without a kernel table")
        if kind == "int8":  # session 27: the calibrations' measured kernel table, which the penalty stands in for
            report(kind, None, "shipped, with the calibration's INT8 MoE kernel table (benchmarks/moe_kernel.py; "
                   "nothing solved)", kernel_table=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
