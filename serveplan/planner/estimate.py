"""Scoring one candidate: memory fit, then predictions, SLO violations and the objective's score.

`Scorer` holds what is fixed for a request (profile, calibration, per-structure step models) so the search
can score thousands of candidates quickly; `estimate()` scores one with the step-level simulation.
"""

from __future__ import annotations

from serveplan.errors import ConfigError
from serveplan.planner.catalog import quant_method
from serveplan.planner.checkpoints import checkpoint_for
from serveplan.planner.memory import memory_breakdown, weight_bytes_per_gpu
from serveplan.planner.perf import StepModel, cudagraph_tokens
from serveplan.planner.profiles import Calibration, HardwareProfile, find_calibration, find_profile
from serveplan.planner.result import Estimate, MemoryBreakdown, Predictions
from serveplan.planner.serving import analytic
from serveplan.planner.simulation import OPEN_LOOP_HORIZON_S, REPORTED_HORIZON_S, simulate
from serveplan.planner.space import Structure
from serveplan.planner.spec import Candidate, PlanRequest

QUALITY_PENALTY_PER_PCT = 0.01  # score lost per % of stated perplexity cost: a tie goes to higher quality


class Scorer:
    def __init__(self, req: PlanRequest, profile: HardwareProfile | None = None,
                 calibration: Calibration | None = None, *, use_calibration: bool = True):
        self.req = req
        prof = profile or find_profile(req.inventory.gpu.name)
        if prof is None:
            raise ConfigError(f"No hardware profile for GPU '{req.inventory.gpu.name}': add one under "
                              f"profiles/ (run `profile` on that GPU) or set SERVEPLAN_PROFILES.")
        self.profile = prof
        if calibration is None and use_calibration:
            calibration = find_calibration(req.engine.name, req.engine.version, req.inventory.gpu.name)
        self.calibration = calibration
        self._step_models: dict[tuple, StepModel] = {}
        self._sat: dict[Candidate, float] = {}

    # ---------------------------------------------------------------------------------------- memory
    def memory(self, cand: Candidate) -> MemoryBreakdown:
        r = self.req
        return memory_breakdown(r.model, r.inventory.gpu, r.engine, cand, r.traffic)

    def weights_fit(self, st: Structure) -> bool:
        w = weight_bytes_per_gpu(self.req.model, st.tp, st.pp, st.weight_dtype)
        return w < self.req.inventory.gpu.usable_gib * 2**30 * self.req.engine.gpu_memory_utilization

    def explain_nothing_fits(self, structs: list[Structure]) -> str:
        """One sentence: why nothing fits, and what would."""
        from serveplan.planner.advice import nothing_fits_message

        return nothing_fits_message(self.req)

    # ---------------------------------------------------------------------------------------- scoring
    def step_model(self, cand: Candidate) -> StepModel:
        # what the step model depends on: the layout, the precisions and which steps run in CUDA graphs
        key = (cand.tp, cand.pp, cand.weight_dtype, cand.kv_cache_dtype, cudagraph_tokens(self.req.engine, cand))
        sm = self._step_models.get(key)
        if sm is None:
            r = self.req
            sm = StepModel(r.model, r.inventory, r.engine, cand, self.profile, self.calibration)
            self._step_models[key] = sm
        return sm

    def violations(self, cand: Candidate, p: Predictions) -> tuple[str, ...]:
        out = []
        for metric, pct, limit in self.req.slo.latency_targets():
            got = getattr(p, f"{metric}_ms").at(pct)
            if got > limit:
                out.append(f"{metric.upper()} {pct.upper()} {got:,.0f} ms > {limit:,.0f} ms")
        if self.req.slo.min_throughput_tok_s and p.throughput_tok_s < self.req.slo.min_throughput_tok_s:
            out.append(f"throughput {p.throughput_tok_s:,.0f} tok/s < {self.req.slo.min_throughput_tok_s:,.0f}")
        if p.saturated:
            out.append("offered load exceeds capacity")
        return tuple(out)

    def constraint_values(self, est: Estimate) -> list[float]:
        """Optuna constraints: <= 0 means satisfied (relative excess over each limit)."""
        p = est.predictions
        if p is None:
            return [1e6]
        vals = []
        for metric, pct, limit in self.req.slo.latency_targets():
            vals.append(getattr(p, f"{metric}_ms").at(pct) / limit - 1.0)
        if self.req.slo.min_throughput_tok_s:
            vals.append(1.0 - p.throughput_tok_s / self.req.slo.min_throughput_tok_s)
        vals.append(1.0 if p.saturated else -1.0)
        return vals

    def _score(self, cand: Candidate, p: Predictions, capacity_rps: float) -> float:
        obj = self.req.search.objective
        q = quant_method(cand.weight_dtype).quality_cost_pct
        if obj == "cost":
            base = -p.cost_per_1m_tokens
            return base * (1 + QUALITY_PENALTY_PER_PCT * q)
        if obj == "latency":
            return -p.e2e_ms.at(self.req.slo.headline_percentile) * (1 + QUALITY_PENALTY_PER_PCT * q)
        # goodput per GPU; headroom (capacity per GPU) breaks ties between candidates that serve it all.
        gpus = cand.total_gpus
        base = p.goodput_rps / gpus + 0.01 * capacity_rps * cand.replicas / gpus
        return base * (1 - QUALITY_PENALTY_PER_PCT * q)

    def score(self, cand: Candidate, *, simulated: bool = False, seed: int = 0,
              horizon_s: float = OPEN_LOOP_HORIZON_S) -> Estimate:
        if cand.checkpoint is None:  # a candidate built by hand (estimate, calibrate): say what it serves
            ckpt = checkpoint_for(self.req.model, cand.weight_dtype, cand.engine)
            cand = cand.model_copy(update={"checkpoint": ckpt})
        mem = self.memory(cand)
        q = quant_method(cand.weight_dtype).quality_cost_pct
        if not mem.fits:
            return Estimate(config=cand, memory=mem, quality_cost=q, score=float("-inf"),
                            violations=(mem.reason,))
        r = self.req
        sm = self.step_model(cand)
        preds, cap = analytic(sm, cand, mem, r.traffic, r.slo, r.inventory)
        if simulated:
            preds = simulate(sm, cand, mem, r.traffic, r.slo, r.inventory, seed=seed,
                             kv_block=r.engine.kv_block_size, analytic_capacity=cap, horizon_s=horizon_s)
        return Estimate(config=cand, memory=mem, predictions=preds, violations=self.violations(cand, preds),
                        quality_cost=q, score=self._score(cand, preds, cap))

    def reported(self, cand: Candidate, *, seed: int = 0) -> Estimate:
        """score, simulated on the sample a prediction the user reads takes (REPORTED_HORIZON_S of arrivals: a plan's
        finalists and their capacity at the SLO, `plan estimate`, a fleet's assigned plans); the search's leaders
        take the shorter OPEN_LOOP_HORIZON_S."""
        return self.score(cand, simulated=True, seed=seed, horizon_s=REPORTED_HORIZON_S)


def rank(estimates: list[Estimate]) -> list[Estimate]:
    """SLO-meeting candidates first (by score), then the rest by SLO attainment and score."""
    fits = [e for e in estimates if e.predictions is not None]
    return sorted(fits, key=lambda e: (not e.meets_slo, -(e.predictions.slo_attainment if not e.meets_slo
                                                           else 0.0), -e.score))


def estimate(req: PlanRequest, cand: Candidate, *, simulated: bool = True, seed: int = 0,
             profile: HardwareProfile | None = None, calibration: Calibration | None = None) -> Estimate:
    """Predictions for one fixed configuration under the request's traffic (the `estimate` command), on the sample a
    plan's finalists take (Scorer.reported)."""
    scorer = Scorer(req, profile, calibration)
    return scorer.reported(cand, seed=seed) if simulated else scorer.score(cand, seed=seed)
