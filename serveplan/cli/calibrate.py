"""`plan calibrate DIR --bench a.json b.json`: fit the engine-level terms to benchmarks of a plan's winner."""

from __future__ import annotations

from pathlib import Path

from serveplan.cli.args import _Parser
from serveplan.cli.boundary import _console


def main(argv: list[str]) -> int:
    p = _Parser(prog="plan calibrate", description="Fit the engine-level terms (per-step and per-request "
                "overheads, achieved bandwidth and compute) to benchmarks of a plan's configuration and store "
                "them as an engine calibration the planner applies.")
    p.add_argument("plan_dir", help="folder holding the plan.yaml whose winner was benchmarked")
    p.add_argument("--bench", nargs="+", required=True, type=Path,
                   help="results: serveplan `bench -o` / `verify` JSON or `vllm bench serve --save-result` JSON, "
                   "closed loop (a concurrency) or open loop (a rate; fitted on TTFT P50 and mean TPOT)")
    p.add_argument("--out", type=Path, help="profiles folder to write into (default ~/.serveplan/profiles)")
    p.add_argument("--trials", type=int, default=120)
    a = p.parse_args(argv)
    from serveplan.bench.results import read_bench_summary
    from serveplan.planner.calibrate import (BenchPoint, fit_calibration, observations, predict_observation,
                                             write_calibration)
    from serveplan.planner.profiles import USER_PROFILES, find_calibration
    from serveplan.planner.result import load_plan

    plan = load_plan(a.plan_dir)
    points = []
    for f in a.bench:
        s, model = read_bench_summary(f)
        points.append(BenchPoint(label=str(f), model=model, completed=s.completed,
                                 total_input_tokens=s.total_input_tokens, total_output_tokens=s.total_output_tokens,
                                 concurrency=s.concurrency_limit, ttft_ms=s.ttft_ms.mean, tpot_ms=s.tpot_ms.mean,
                                 # an open loop's output as served while the load was on, where the file has it
                                 throughput_tok_s=s.served_output_tok_s or s.output_tok_s, rate_rps=s.offered_rps,
                                 ttft_p50_ms=s.ttft_ms.p50))
    obs = observations(plan, points)
    req = plan.request
    shipped = find_calibration(req.engine.name, req.engine.version, req.inventory.gpu.name)
    cal = fit_calibration(obs, source=", ".join(str(b) for b in a.bench), n_trials=a.trials,
                          version=req.engine.version,  # the version benchmarked, not the default
                          kernel_tables=shipped.kernel_tables() if shipped else None)  # measured: kept
    path = write_calibration(cal, a.out or USER_PROFILES)
    con = _console()
    for o in obs:
        pr = predict_observation(o, cal)
        load = f"{o.rate_rps:g} req/s" if o.rate_rps is not None else f"x {o.concurrency}"
        con.print(f"{o.input_len}/{o.output_len} tokens {load}: TTFT {o.ttft_ms:.1f} -> "
                  f"{pr['ttft_ms']:.1f} ms, TPOT {o.tpot_ms:.2f} -> {pr['tpot_ms']:.2f} ms (measured -> fitted)")
    con.print(f"Wrote {path} (loss {cal.fit.get('loss', 0):.3f} over {len(obs)} points); plans for "
              f"{cal.gpu} on {cal.engine} {cal.engine_version} now use it.")
    return 0
