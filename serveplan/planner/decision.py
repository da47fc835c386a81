"""The final ranking and the sentence that explains it.

At a light offered load most candidates serve everything and tie on goodput, so the finalists are ranked by
what an engineer sizes with: requests/s per GPU within the SLO (capacity_at_slo), quality-adjusted. The "why"
then names each decision the winner embodies: against the best finalist of another precision, of another
layout and of other batching, with the numbers that decided it.
"""

from __future__ import annotations

import math

from serveplan.planner.capacity import capacity_at_slo
from serveplan.planner.estimate import QUALITY_PENALTY_PER_PCT
from serveplan.planner.result import Estimate
from serveplan.planner.spec import Candidate, PlanRequest

GOODPUT_TIE = 1.02  # goodput per GPU within 2% is a tie at the offered load


def capacity_per_gpu(e: Estimate) -> float:
    """Requests/s per GPU within the SLO at capacity; where no capacity was computed (a closed loop has no
    arrival rate to raise), the goodput per GPU at the offered load."""
    p = e.predictions
    if p is None:
        return 0.0
    return (p.capacity_rps if p.capacity_rps is not None else p.goodput_rps) / e.config.total_gpus


def _structure(c: Candidate) -> tuple:
    return (c.tp, c.pp, c.replicas, c.weight_dtype, c.kv_cache_dtype)


def diverse(ranked: list[Estimate], k: int) -> list[Estimate]:
    """The best candidate of each structure in rank order, then the rest, k in all."""
    seen: set[tuple] = set()
    first, rest = [], []
    for e in ranked:
        (rest if _structure(e.config) in seen else first).append(e)
        seen.add(_structure(e.config))
    return (first + rest)[:k]


def _final_key(e: Estimate) -> tuple:
    p = e.predictions
    assert p is not None
    good = p.goodput_rps / e.config.total_gpus
    bucket = round(math.log(good) / math.log(GOODPUT_TIE)) if good > 0 else -10**9
    quality = 1 - QUALITY_PENALTY_PER_PCT * e.quality_cost
    return (not e.meets_slo, -bucket, -capacity_per_gpu(e) * quality, -e.score)


def final_ranking(req: PlanRequest, scorer, top: list[Estimate], k: int) -> tuple[list[Estimate], str]:  # noqa: ANN001
    """The k finalists (best of each structure first, from the simulated leaders `top`, already ranked) with
    their capacity at the SLO, re-ranked for the goodput objective, and the why."""
    seed = req.search.seed
    final = [capacity_at_slo(scorer, e, seed=seed) for e in diverse(top, k)]
    if req.search.objective == "goodput_per_gpu":
        final.sort(key=_final_key)
    alternatives = list(final)
    if final and final[0].meets_slo:  # a decision no finalist questions gets the best leader that made it otherwise
        mine = _dims(final[0].config)
        for i in (0, 1):  # weights, layout
            if not any(_dims(e.config)[i] != mine[i] for e in alternatives):
                alt = next((e for e in top if _dims(e.config)[i] != mine[i]), None)  # meeting ones rank first
                if alt is not None:
                    alternatives.append(capacity_at_slo(scorer, alt, seed=seed))
    return final, why(req, final, alternatives)


def _dims(c: Candidate) -> tuple:
    """(weights, layout, batching): the decisions a configuration makes (the KV-cache dtype goes with batching:
    it decides how many sequences fit)."""
    return (c.weight_dtype, (c.tp, c.pp, c.replicas),
            (c.kv_cache_dtype, c.max_num_seqs, c.max_num_batched_tokens, c.chunked_prefill))


def _layout(c: Candidate) -> str:
    return f"TP{c.tp}{f' PP{c.pp}' if c.pp > 1 else ''}{f' x{c.replicas}' if c.replicas > 1 else ''}"


def _weights(c: Candidate) -> str:
    return c.weight_dtype


def _batching(c: Candidate) -> str:
    return (f"{'kv:fp8 ' if c.kv_cache_dtype == 'fp8' else ''}seqs {c.max_num_seqs} / {c.max_num_batched_tokens} "
            f"{'chunked' if c.chunked_prefill else 'unchunked'}")


def why(req: PlanRequest, ranked: list[Estimate], alternatives: list[Estimate] | None = None) -> str:
    """Why the winner: for the goodput objective, one clause per decision (precision, layout, batching)
    against the best alternative that decided differently; for cost and latency, the runner-up's number."""
    if not ranked:
        return ""
    w = ranked[0]
    wp = w.predictions
    assert wp is not None
    pct = req.slo.headline_percentile
    if not w.meets_slo:
        if wp.saturated:
            return (f"No candidate carries the offered load: the closest ({w.config.label()}) serves at most "
                    f"{wp.max_rps:.2f} of the {req.traffic.rate_rps or 0:g} req/s offered.")
        return (f"No candidate meets the SLO at the offered load; the closest ({w.config.label()}) keeps "
                f"{wp.slo_attainment:.0%} of requests within every target and misses {'; '.join(w.violations)}.")
    alternatives = alternatives if alternatives is not None else list(ranked)
    others = [e for e in alternatives if e is not w and e.config != w.config and e.predictions is not None]
    if not others:
        return "It is the only candidate that fits and meets the SLO."
    obj = req.search.objective
    if obj in ("cost", "latency"):
        r = others[0]
        rp = r.predictions
        assert rp is not None
        reason = (f"${wp.cost_per_1m_tokens:.3f} vs ${rp.cost_per_1m_tokens:.3f} per 1M tokens" if obj == "cost"
                  else f"E2E {pct.upper()} {wp.e2e_ms.at(pct):,.0f} vs {rp.e2e_ms.at(pct):,.0f} ms")
        if not r.meets_slo:
            reason = f"the runner-up misses the SLO ({'; '.join(r.violations)})"
        return f"Against the runner-up ({r.config.label()}): {reason}."
    cap = capacity_per_gpu(w)
    head = (f"Most traffic per GPU within the SLO: {cap:.2f} req/s per GPU ({wp.capacity_rps or 0:.2f} on "
            f"{w.config.total_gpus} GPU{'s' if w.config.total_gpus > 1 else ''}, {req.traffic.rate_rps or 0:g} "
            f"offered)" if wp.capacity_rps is not None else
            f"Highest goodput per GPU: {cap:.2f} req/s ({wp.throughput_tok_s / w.config.total_gpus:,.0f} output "
            f"tok/s) per GPU within the SLO")
    clauses = []
    for i, (name, show) in enumerate((("weights", _weights), ("layout", _layout), ("batching", _batching))):
        alt = next((e for e in others if _dims(e.config)[i] != _dims(w.config)[i]), None)
        if alt is None:
            continue
        ap = alt.predictions
        assert ap is not None
        if not alt.meets_slo:
            num = f"misses the SLO ({alt.violations[0]})"
        else:
            num = f"{capacity_per_gpu(alt):.2f}"
            if name == "weights":
                num += (f" (KV cache {w.memory.kv_cache_gb:.1f} vs {alt.memory.kv_cache_gb:.1f} GB per GPU, TPOT "
                        f"{pct.upper()} {wp.tpot_ms.at(pct):.0f} vs {ap.tpot_ms.at(pct):.0f} ms)")
            else:
                num += (f" (TTFT {pct.upper()} {wp.ttft_ms.at(pct):,.0f} vs {ap.ttft_ms.at(pct):,.0f} ms, TPOT "
                        f"{wp.tpot_ms.at(pct):.0f} vs {ap.tpot_ms.at(pct):.0f} ms)")
            if capacity_per_gpu(alt) > cap:
                num += (f", more, but at +{alt.quality_cost:g}% stated perplexity cost" if alt.quality_cost >
                        w.quality_cost else ", more, but less goodput per GPU at the offered load")
        clauses.append(f"{name} {show(w.config)} vs {show(alt.config)}: {num}")
    if not clauses:
        return head + "."
    return head + ". Against the best alternative of each decision: " + "; ".join(clauses) + "."
