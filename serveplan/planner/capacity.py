"""Capacity at the SLO: the highest arrival rate a candidate carries with every SLO percentile still met, and
how many replicas the offered load needs.

The search scores candidates at the offered load; at a light load nearly all of them serve everything and tie.
What an inference engineer asks instead is how much traffic each configuration carries within the SLO, and
what a million tokens costs there. Found in two passes: a bisection on the mean-field model (sub-millisecond
per rate) for a first estimate, then three to six simulations around it (the simulation is what the table shows,
and its tail percentiles differ from the mean field's), keeping the highest simulated rate that met the SLO. Once a
rate that met it and one above that did not are found, it simulates on until they are within 5% of each other (or
six simulations): the result is good to about that, so that candidates a few percent apart rank by the model, not by
where their simulated rates happened to fall.
"""

from __future__ import annotations

import math

from serveplan.planner.estimate import Scorer
from serveplan.planner.frontend import OUTPUT_TOK_S_PER_API_SERVER, api_servers_for
from serveplan.planner.result import Estimate, Predictions
from serveplan.planner.serving import analytic
from serveplan.planner.simulation import REPORTED_HORIZON_S, replica_capacity, simulate
from serveplan.planner.spec import SLO, Candidate, PlanRequest

BISECTION_STEPS = 14
SIM_POINTS = 3
MAX_SIM_POINTS = 6
# Past SIM_POINTS, simulate on while the highest rate that met the SLO and the lowest above it that did not are
# further apart than this (up to MAX_SIM_POINTS): candidates within 10-25% of each other otherwise swapped places
# with the spacing of their last simulated rates, not with what the model said of them.
BRACKET_TOLERANCE = 0.05
STEP_UP, STEP_DOWN = 1.25, 0.75  # simulated rates around the mean-field estimate


def ttft_target_s(slo: SLO) -> float | None:
    """The TTFT limit of the highest percentile the SLO sets for TTFT, in seconds (None without one)."""
    ttft = {p: v for metric, p, v in slo.latency_targets() if metric == "ttft"}
    return ttft[max(ttft, key=lambda p: int(p[1:]))] / 1000.0 if ttft else None


def prefill_tokens_per_s(req: PlanRequest, cand: Candidate) -> float:
    """Prompt tokens/s one replica prefills at best: one prefill-only step of max_num_batched_tokens tokens of
    prompts of the traffic's mean length (causal work tokens x length / 2), by the planner's step model."""
    tokens = cand.max_num_batched_tokens
    prompt = max(1.0, min(req.traffic.input_len.mean, cand.max_model_len))
    step_ms = Scorer(req).step_model(cand).step_ms(0, 0, prefill_tokens=tokens, prefill_work=tokens * prompt / 2,
                                                   prefill_seqs=max(1.0, tokens / prompt))
    return tokens / (step_ms / 1000.0)


def slo_margin(p: Predictions, slo: SLO) -> float:
    """The worst target's value / limit - 1: at most 0 when every latency target holds."""
    targets = slo.latency_targets()
    if not targets:
        return -1.0
    return max(getattr(p, f"{metric}_ms").at(pct) / limit - 1.0 for metric, pct, limit in targets)


def capacity_at_slo(scorer: Scorer, est: Estimate, *, seed: int = 0) -> Estimate:
    """est, simulated again at the offered load on the sample the user reads (Scorer.reported), with
    predictions.capacity_rps / capacity_tok_s_per_gpu / cost_per_1m_tokens_at_capacity filled: est may be the
    search's (analytic or a shorter simulation); only its configuration is taken. Open-loop traffic only: a closed
    loop has a fixed concurrency, not an arrival rate to raise (est comes back as it is)."""
    req = scorer.req
    if est.predictions is None or req.traffic.is_closed_loop or not est.memory.fits:
        return est
    est = scorer.reported(est.config, seed=seed)
    p = est.predictions
    assert p is not None
    cand, mem = est.config, est.memory
    sm = scorer.step_model(cand)
    # The most it serves: the simulated replica capacity, whatever the offered load. Not the estimate's max_rps: at a
    # light offered load that is the mean-field one, which missed both ways. Above the simulation, the 8B FP8 plan for
    # an H200 read 28.9 req/s within the SLO beside a simulated capacity of 27.7 (vLLM served 27.5 of 30 offered,
    # benchmarks/gpu/results/session24/CAP). Below it, Qwen3-30B-A3B bf16 on an H200 read 11.46 req/s at an offered 5
    # and 14.53 at an offered 15, its SLO met with 44% to spare at the 11.46 cap; vLLM met the SLO at 15 (session 11,
    # benchmarks/capacity_verdicts.py).
    top = replica_capacity(sm, cand, mem, req.traffic, seed=seed, kv_block=req.engine.kv_block_size) * cand.replicas

    def predicted(rate: float, simulated: bool) -> Predictions | None:
        if rate >= top:
            return None  # past what it serves at all
        tr = req.traffic.model_copy(update={"rate_rps": rate})
        if simulated:
            # Saturated against the capacity already known, not by the in-system count's sign: that sign is noisy
            # under Poisson arrivals and long-tailed outputs, and read alone it rated 8B FP8 + FP8 KV on an H200 at
            # 15 req/s within the SLO where 20 met it with a TTFT P99 of 0.2 s against 2 s.
            return simulate(sm, cand, mem, tr, req.slo, req.inventory, seed=seed, kv_block=req.engine.kv_block_size,
                            replica_capacity_rps=top / cand.replicas, horizon_s=REPORTED_HORIZON_S)
        return analytic(sm, cand, mem, tr, req.slo, req.inventory)[0]

    def margin_of(q: Predictions | None) -> float:
        return math.inf if q is None or q.saturated else slo_margin(q, req.slo)

    def margin(rate: float, simulated: bool) -> float:
        return margin_of(predicted(rate, simulated))

    light_load = None
    targets = req.slo.latency_targets()
    idle = predicted(top * 1e-3, simulated=False) if targets else None
    if not targets:
        rate = top
    elif margin_of(idle) > 0:
        rate = 0.0  # not even an idle deployment meets it: say what the SLO would have to allow
        if idle is not None:
            light_load = {f"{metric}_{pct}": v for metric, pct, limit in targets
                          if (v := getattr(idle, f"{metric}_ms").at(pct)) > limit}
    else:
        lo, hi = top * 1e-3, top
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if margin(mid, simulated=False) <= 0 else (lo, mid)
        known = {}  # the offered load's own simulation (Scorer.reported): a point already paid for
        if req.traffic.rate_rps:
            known[req.traffic.rate_rps] = margin_of(p)
        rate = _refine(lambda r: margin(r, simulated=True), lo, top, known)
    mean_out = req.traffic.output_len.mean
    gpus = cand.total_gpus
    tok_s = rate * mean_out
    cost = gpus * req.inventory.gpu.price_per_hour_usd / (tok_s * 3600) * 1e6 if tok_s > 0 else None
    # max_rps becomes the same simulated capacity the search stopped at: left at the mean-field one, a plan could read
    # "the most this deployment serves: 11.47 req/s" beside 14.81 within the SLO (Qwen3-30B-A3B on an H200)
    sources = {**p.sources, "capacity": "simulated around the mean-field bisection"}
    # The API servers a replica needs to stream what it serves at most (frontend.py): decided here, where that rate is
    # known; the predictions above were made with the candidate's own count (a floor only where the front end binds).
    replica_top = top / cand.replicas
    servers = api_servers_for(req, cand, replica_top)
    if servers != cand.api_server_count:
        cand = cand.model_copy(update={"api_server_count": servers})
    if servers > 1:
        sources["api_servers"] = (f"{servers} for {replica_top * mean_out:,.0f} output tok/s per replica "
                                  f"at most (one per {OUTPUT_TOK_S_PER_API_SERVER:,.0f}; "
                                  f"{'engine.api_server_count' if req.engine.api_server_count else 'measured, session 30'})")
    preds = p.model_copy(update={"capacity_rps": rate, "max_rps": top, "capacity_tok_s_per_gpu": tok_s / gpus,
                                 "cost_per_1m_tokens_at_capacity": cost, "light_load_ms": light_load,
                                 "sources": sources})
    return est.model_copy(update={"config": cand, "predictions": preds})


def _refine(margin, start: float, top: float, known: dict[float, float]) -> float:  # noqa: ANN001
    """The highest simulated rate that meets the SLO: from the mean-field estimate, up while it holds and down
    while it does not; once bracketed, the next point interpolates the margin's zero. SIM_POINTS simulations, and
    up to MAX_SIM_POINTS while none has met the SLO yet or the bracket is wider than BRACKET_TOLERANCE."""
    tried: dict[float, float] = dict(known)
    rate = min(start, top * 0.999)
    while rate not in tried and len(tried) < MAX_SIM_POINTS + len(known):
        tried[rate] = margin(rate)
        best = max((r for r, m in tried.items() if m <= 0), default=None)
        above = [r for r, m in tried.items() if m > 0 and (best is None or r > best)]
        narrow = best is not None and (not above or min(above) <= best * (1 + BRACKET_TOLERANCE))
        if best is not None and len(tried) >= SIM_POINTS + len(known) and (
                narrow or len(tried) >= MAX_SIM_POINTS + len(known)):
            break
        if best is not None and above:  # bracketed
            hi = min(above)
            frac = -tried[best] / (tried[hi] - tried[best]) if math.isfinite(tried[hi]) else 0.5
            rate = best + (hi - best) * min(max(frac, 0.2), 0.8)
        elif best is not None:
            rate = min(best * STEP_UP, top * 0.999)
        else:
            rate = min(tried) * STEP_DOWN
    return max((r for r, m in tried.items() if m <= 0), default=0.0)
