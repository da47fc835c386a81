"""The plan's "req/s at SLO" against what the GPU runs met (session 26).

A plan's sizing answer rests on one number per configuration: the most traffic it carries with the SLO met
(`capacity_at_slo`, the "req/s at SLO" column). Every committed open loop is a verdict on it: a run at a rate below
that number should have met the SLO, one above it should have missed. This re-plans each held-out open loop of
`open_loop_accuracy.py` (its configuration, GPU and traffic, the shipped calibration) under the default SLO preset
(TTFT P99 <= 2 s, TPOT P99 <= 100 ms), computes that configuration's capacity at the SLO once, and compares the
verdict it implies with the run's own P99s. Nothing is fitted. Rows are grouped by configuration, so a server run
at several rates shows where the measured runs bracket its capacity.

    python benchmarks/capacity_verdicts.py            # the table (CPU, a few minutes: one capacity per configuration)
    python benchmarks/capacity_verdicts.py --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import open_loop_accuracy as ola  # noqa: E402

from serveplan.planner.calibrate import Observation, scorer_of  # noqa: E402
from serveplan.planner.capacity import capacity_at_slo  # noqa: E402
from serveplan.planner.config import build_request  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

# Where a run's rate and the predicted capacity are this close, either verdict is within the run's own noise (a 60-s
# run's P99 is its slowest few requests): such rows are counted apart, not as agreements or misses.
NEAR = 0.05


def measured_p99s(label: str) -> tuple[float, float]:
    """(TTFT P99, TPOT P99) in ms of a held-out run, from its verify.json or bench JSON."""
    path, is_verify = ola.run_file(label)
    doc = ola._read(path)
    m = doc["measured"] if is_verify else doc["summary"]
    return m["ttft_ms"]["p99"], m["tpot_ms"]["p99"]


def config_key(o: Observation) -> str:
    """The configuration and traffic of a run without its rate: the runs one capacity answers for."""
    d = o.model_dump(exclude={"label", "rate_rps", "input_len", "output_len", "num_prompts", "ttft_ms", "tpot_ms",
                              "throughput_tok_s", "ttft_p99_ms", "ttft_spread", "tpot_spread", "repeats"})
    traffic = {k: v for k, v in (o.traffic or {}).items() if k not in ("rate_rps", "name", "description")}
    return json.dumps({**d, "traffic": traffic}, sort_keys=True)


def capacity(o: Observation) -> float:
    """The configuration's "req/s at SLO" as a plan states it, under the default SLO preset."""
    req, cand, sc = scorer_of(o, find_calibration("vllm", "0.26.0", o.gpu))
    slo = build_request(model=o.model, gpus=f"1x{o.gpu}").slo  # the default preset
    sc.req = req.model_copy(update={"slo": slo})
    return capacity_at_slo(sc, sc.reported(cand)).predictions.capacity_rps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    slo = build_request(model="llama-3.1-8b", gpus="1xh200").slo
    fitted = ola.shipped_fit_labels()  # the runs a shipped term was solved on
    rows = [(label, o) for label, fit, o in ola.observations()
            if not fit and label not in ola.excluded_rows() and label not in fitted]
    groups: dict[str, list[tuple[str, Observation]]] = {}
    for label, o in rows:
        groups.setdefault(config_key(o), []).append((label, o))
    agree = disagree = near = 0
    optimistic = []  # runs the plan said would meet the SLO that missed it
    out = []
    for members in groups.values():
        cap = capacity(members[0][1])
        for label, o in sorted(members, key=lambda m: m[1].rate_rps):
            ttft99, tpot99 = measured_p99s(label)
            met = ttft99 <= slo.ttft_p99_ms and tpot99 <= slo.tpot_p99_ms
            said = o.rate_rps <= cap
            ratio = o.rate_rps / cap if cap > 0 else float("inf")
            if abs(ratio - 1) <= NEAR:
                verdict, near = "near", near + 1
            elif met == said:
                verdict, agree = "agrees", agree + 1
            else:
                verdict, disagree = ("plan optimistic" if said else "plan pessimistic"), disagree + 1
                if said:
                    optimistic.append(label)
            out.append((label, o.rate_rps, cap, ratio, ttft99, tpot99, "met" if met else "missed", verdict))
    head = ("run", "rate", "plan's req/s at SLO", "rate / it", "TTFT P99 (ms)", "TPOT P99 (ms)", "measured", "verdict")
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * 5 + "---|---|")
    for label, rate, cap, ratio, t99, p99, met, verdict in out:
        cells = (label, f"{rate:g}", f"{cap:.2f}", f"{ratio:.2f}", f"{t99:,.0f}", f"{p99:,.1f}", met, verdict)
        print(("| " + " | ".join(cells) + " |") if a.markdown else "  ".join(cells))
    n = len(out)
    print(f"\n{n} held-out open loops in {len(groups)} configurations, default SLO (TTFT P99 <= {slo.ttft_p99_ms:g} ms, "
          f"TPOT P99 <= {slo.tpot_p99_ms:g} ms): the plan's req/s at SLO gave the measured verdict on {agree}, the "
          f"other on {disagree} ({len(optimistic)} of them optimistic: it said met, the run missed), and {near} ran "
          f"within {NEAR:.0%} of it")
    if optimistic:
        print("optimistic: " + "; ".join(optimistic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
