"""The plan's own TTFT P99 against how many requests it simulates (session 23).

A plan predicts an open loop from a sample of the traffic: at least `simulation.OPEN_LOOP_HORIZON_S` seconds of
arrivals (30 s), 60-300 requests at light load. A P99 of ~100 requests is their slowest one. This re-predicts every
held-out open loop of `open_loop_accuracy.py` the way the plan would (the default sample, seed 0, not the run's own
size) with the shipped horizon and with another, and compares each TTFT P99 with the measured one, split by the
measured run's size (a run of a few hundred requests has a P99 of a few requests too) and leaving out the runs that
saturated (measured P99 over 5 s: their P99 grows with the run's length). Nothing is fitted.

    python benchmarks/p99_horizon.py            # 30 s against simulation.REPORTED_HORIZON_S (what the user reads)
    python benchmarks/p99_horizon.py --horizon 60
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import open_loop_accuracy as ola  # noqa: E402

import serveplan.planner.simulation as simulation  # noqa: E402
from serveplan.planner.calibrate import scorer_of  # noqa: E402
from serveplan.planner.profiles import find_calibration  # noqa: E402

LONG_RUN = 600  # requests: a measured P99 of at least six of them
SATURATED_MS = 5000.0  # a measured TTFT P99 above this: the server fell behind


def plan_p99(o, horizon: float) -> float:  # noqa: ANN001
    """The TTFT P99 the plan shows for the run's configuration and rate: its default sample at `horizon`."""
    req, cand, sc = scorer_of(o, find_calibration("vllm", "0.26.0", o.gpu))
    p = simulation.simulate(sc.step_model(cand), cand, sc.memory(cand), req.traffic, req.slo, req.inventory,
                            kv_block=req.engine.kv_block_size, horizon_s=horizon)
    return p.ttft_ms.p99


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--horizon", type=float, default=simulation.REPORTED_HORIZON_S,
                    help="seconds of arrivals to compare with the search's (default: what a reported prediction takes)")
    a = ap.parse_args()
    base = simulation.OPEN_LOOP_HORIZON_S
    rows = []
    print(f"| run | requests | measured P99 (ms) | plan, {base:g} s | plan, {a.horizon:g} s |\n|---|---:|---:|---:|---:|")
    for label, fit, o in ola.observations():
        if fit or label in ola.excluded_rows() or o.rate_rps is None:
            continue
        m, p0, p1 = o.ttft_p99_ms, plan_p99(o, base), plan_p99(o, a.horizon)
        rows.append((o.num_prompts, m, p0 / m - 1, p1 / m - 1))
        print(f"| {label} | {o.num_prompts:,} | {m:,.0f} | {p0:,.0f} ({p0 / m - 1:+.0%}) | {p1:,.0f} ({p1 / m - 1:+.0%}) |")
    print(f"\n| measured runs | rows | mean abs error, {base:g} s / {a.horizon:g} s | within 30% | optimistic |\n"
          "|---|---:|---:|---:|---:|")
    for name, keep in ((f"under {LONG_RUN} requests", lambda n, m: n < LONG_RUN and m < SATURATED_MS),
                       (f"{LONG_RUN} requests or more", lambda n, m: n >= LONG_RUN and m < SATURATED_MS),
                       ("saturated (measured P99 > 5 s)", lambda n, m: m >= SATURATED_MS)):
        sel = [r for r in rows if keep(r[0], r[1])]
        if not sel:
            continue
        e0, e1 = [abs(r[2]) for r in sel], [abs(r[3]) for r in sel]
        print(f"| {name} | {len(sel)} | {statistics.mean(e0):.0%} / {statistics.mean(e1):.0%} | "
              f"{sum(e <= 0.3 for e in e0)} / {sum(e <= 0.3 for e in e1)} | "
              f"{sum(r[2] < 0 for r in sel)} / {sum(r[3] < 0 for r in sel)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
