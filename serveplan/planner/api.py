"""The Python API, mirroring the CLI: `plan(request) -> Plan`, `estimate(request, candidate) -> Estimate`."""

from __future__ import annotations

import time

from serveplan.planner.config import build_request
from serveplan.planner.decision import diverse, final_ranking
from serveplan.planner.estimate import Scorer, estimate, rank
from serveplan.planner.profiles import Calibration, HardwareProfile
from serveplan.planner.result import Plan
from serveplan.planner.search import run_search
from serveplan.planner.spec import Candidate, PlanRequest

RESCORE_FACTOR = 2  # the top k x this many analytic candidates are re-scored by simulation


def plan(req: PlanRequest, *, profile: HardwareProfile | None = None,
         calibration: Calibration | None = None) -> Plan:
    t0 = time.perf_counter()
    scorer = Scorer(req, profile, calibration)
    evaluated, pareto, stats = run_search(req, scorer)
    ranked = rank(evaluated)
    k = req.search.top_k
    # Re-score with the simulation: the best batching of each of the leading structures (so the table
    # compares layouts and precisions, not near-identical batching knobs), plus the overall leaders.
    chosen = diverse(ranked, k * RESCORE_FACTOR) + ranked[:k]
    uniq = list({e.config: e for e in chosen}.values())
    top = [scorer.score(e.config, simulated=True, seed=req.search.seed) for e in uniq]
    final, reason = final_ranking(req, scorer, rank(top), k, pool=ranked)
    stats = stats.model_copy(update={"seconds": time.perf_counter() - t0})
    prof = {"gpu": scorer.profile.gpu, "kind": scorer.profile.kind, "path": scorer.profile.path}
    if scorer.calibration:
        prof["calibration"] = scorer.calibration.describe()
        if scorer.calibration.held_out:  # the same numbers the line quotes, for a machine reading plan.json
            prof["calibration_held_out"] = scorer.calibration.held_out.model_dump()
    return Plan(request=req, ranked=tuple(final), pareto=tuple(pareto), why=reason,
                profile=prof, stats=stats)


def plan_from_cli(model: str | None = None, gpus: str | None = None, traffic: str | None = None,
                  engine: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Plan:
    """`plan(...)` from the same arguments the CLI takes."""
    return plan(build_request(model=model, gpus=gpus, traffic=traffic, engine=engine, overrides=overrides))


__all__ = ["plan", "estimate", "build_request", "plan_from_cli", "PlanRequest", "Candidate"]
