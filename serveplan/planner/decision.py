"""The final ranking and the sentence that explains it.

At a light offered load most candidates serve everything and tie on goodput, so the finalists are ranked by
what an engineer sizes with: requests/s per GPU within the SLO (capacity_at_slo), quality-adjusted. The "why"
then names each decision the winner embodies: against the best finalist of another precision, of another
layout and of other batching, with the numbers that decided it.
"""

from __future__ import annotations

import math
from functools import partial

from serveplan.planner.capacity import capacity_at_slo
from serveplan.planner.parallel import parallel_map
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


def asked_rate(req: PlanRequest) -> float:
    """The rate a plan sizes for: the offered rate with search.headroom on top (0 without an offered rate)."""
    return (req.traffic.rate_rps or 0.0) * (1 + req.search.headroom)


def has_headroom(req: PlanRequest, e: Estimate) -> bool:
    """Whether e carries the offered rate with search.headroom to spare within the SLO (True where no capacity
    was computed: a closed loop, or no rate)."""
    p = e.predictions
    if p is None or p.capacity_rps is None or not req.traffic.rate_rps or req.traffic.is_closed_loop:
        return True
    return p.capacity_rps >= asked_rate(req) * (1 - 1e-9)


def _final_key(req: PlanRequest, e: Estimate) -> tuple:
    p = e.predictions
    assert p is not None
    good = p.goodput_rps / e.config.total_gpus
    bucket = round(math.log(good) / math.log(GOODPUT_TIE)) if good > 0 else -10**9
    quality = 1 - QUALITY_PENALTY_PER_PCT * e.quality_cost
    return (not e.meets_slo, not has_headroom(req, e), -bucket, -capacity_per_gpu(e) * quality, -e.score)


def final_ranking(req: PlanRequest, scorer, top: list[Estimate], k: int,  # noqa: ANN001
                  pool: list[Estimate] | None = None) -> tuple[list[Estimate], str]:
    """The k finalists (best of each structure first, from the simulated leaders `top`, already ranked) with
    their capacity at the SLO, re-ranked for the goodput objective, and the why. pool: every ranked candidate
    of the search (analytic), where one that keeps the headroom is looked for when no finalist does."""
    seed = req.search.seed
    final = capacities(req, scorer, diverse(top, k))
    if req.search.objective == "goodput_per_gpu":
        final = _with_headroom(req, scorer, pool if pool is not None else top, final, k)
        final.sort(key=lambda e: _final_key(req, e))
        final = final[:k]
    alternatives = list(final)
    if final and final[0].meets_slo:  # a decision no finalist questions gets the best leader that made it otherwise
        mine = _dims(final[0].config)
        for i in (0, 1):  # weights, layout
            if not any(_dims(e.config)[i] != mine[i] for e in alternatives):
                alt = next((e for e in top if _dims(e.config)[i] != mine[i]), None)  # meeting ones rank first
                if alt is not None:
                    alternatives.append(capacity_at_slo(scorer, alt, seed=seed))
    return final, why(req, final, alternatives)


def capacities(req: PlanRequest, scorer, ests: list[Estimate]) -> list[Estimate]:  # noqa: ANN001
    """capacity_at_slo of each, side by side in search.workers processes (parallel.parallel_map)."""
    seed = req.search.seed
    return parallel_map(partial(capacity_at_slo, scorer, seed=seed), ests, req.search.workers)


HEADROOM_TRIES = 3  # leaders outside the finalists whose capacity is computed when no finalist keeps the headroom


def _with_headroom(req: PlanRequest, scorer, pool: list[Estimate], final: list[Estimate],  # noqa: ANN001
                   k: int) -> list[Estimate]:
    """The finalists, plus the best leaders that keep search.headroom when no finalist does: the finalists are the
    best per GPU at the offered load, which at a heavy load are often the ones with no capacity to spare (70B
    fp8 on one of two H100s at 2 req/s: exactly 2.00 within the SLO), while a larger layout carries 3x more."""
    rate = req.traffic.rate_rps
    if not rate or req.traffic.is_closed_loop or any(e.meets_slo and has_headroom(req, e) for e in final):
        return final
    asked = asked_rate(req)
    shown = {_structure(e.config) for e in final}
    likely = [e for e in pool if _structure(e.config) not in shown and e.meets_slo and e.predictions is not None
              and e.predictions.max_rps >= asked]  # the mean-field ceiling: capacity within the SLO is below it
    likely.sort(key=lambda e: -e.predictions.max_rps)  # type: ignore[union-attr]  # the most capacity first
    extra = capacities(req, scorer, diverse(likely, HEADROOM_TRIES))  # it simulates them
    keep = [e for e in extra if has_headroom(req, e)]
    return keep + final  # ranked and cut to k by the caller


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


# Requests in flight at the planned load (Little's law: the rate per replica x the predicted mean E2E) above this
# share of the sequences the KV cache holds: vLLM then runs with its cache full, and queues in bursts that the
# simulated steady state understates. Session 9 (docs/accuracy.md, "One H100"): a 70B FP8 on one H100 at 2 req/s of
# chat kept ~19 of its ~22 sequences in flight; vLLM's cache stood 97-100% full and TTFT P99 was 5.2 s against
# 1.4 s predicted, while TPOT held.
KV_PRESSURE = 0.8


def kv_pressure(req: PlanRequest, w: Estimate) -> str | None:
    """A sentence when the winner's KV cache would run nearly full at the planned load."""
    p, seqs = w.predictions, w.memory.max_concurrent_seqs
    if p is None or seqs <= 0:
        return None
    if req.traffic.rate_rps:
        in_flight = req.traffic.rate_rps / w.config.replicas * p.e2e_ms.mean / 1000.0
    elif req.traffic.concurrency:
        in_flight = req.traffic.concurrency / w.config.replicas
    else:
        return None
    if in_flight <= KV_PRESSURE * seqs:
        return None
    return (f"Its KV cache holds about {seqs:,} sequences of this traffic per replica, and this load keeps "
            f"{in_flight:,.0f} in flight ({in_flight / seqs:.0%}): expect bursts of queueing beyond the predicted "
            f"TTFT tail (a 70B FP8 on one H100 at 89% measured TTFT P99 3.6x the prediction). More KV cache per "
            f"replica (more GPUs per replica, FP8 KV, smaller weights) or a lower rate avoids them.")


def load_pressure(req: PlanRequest, w: Estimate) -> str | None:
    """A sentence when an open loop's rate is closer to the deployment's most served rate (max_rps) than the
    planner's own headroom allows (rate > max_rps / (1 + search.headroom)) without exceeding it (the saturated
    case is said apart). Held-out open loops that close to capacity were the least accurate ones
    (docs/accuracy.md, "Open loop by load")."""
    p, rate = w.predictions, req.traffic.rate_rps
    if p is None or req.traffic.is_closed_loop or not rate or p.max_rps <= 0 or p.saturated:
        return None
    load, limit = rate / p.max_rps, 1.0 / (1.0 + req.search.headroom)
    if load <= limit:
        return None
    return (f"This rate is {load:.0%} of the most the deployment serves ({p.max_rps:.2f} req/s), above the "
            f"{limit:.0%} the planner keeps (search.headroom {req.search.headroom:g}): latency rises steeply this "
            f"close to capacity, and on the 21 held-out runs at 85-100% of their predicted capacity the predicted "
            f"median TTFT was 23% off and mean TPOT 48% (from 2x too slow on an 8B, whose simulated batch grows with "
            f"a 10% step error, to about 30% too fast on the 32B-70B models; docs/accuracy.md, \"Open loop by "
            f"load\").")


# An FP8 KV cache's lead in capacity over the same weights and layout with a bf16 cache below which `why` says the
# lead is not established: in vLLM 0.26.0 on an H200 the 8B FP8's steps beyond the CUDA graphs ran 6-8 ms longer
# over an FP8 cache, TPOT +9-12% and TTFT P50 +15-34% at chat 10-16 req/s, where the model has the two caches within
# 1% (docs/accuracy.md, session 31; a term for it was tried and not shipped).
FP8_CACHE_UNPROVEN_LEAD = 0.10


def fp8_cache_note(req: PlanRequest, w: Estimate, alternatives: list[Estimate]) -> str | None:
    """A sentence when the winner's FP8 KV cache beats the same weights and layout with a bf16 cache by less than
    FP8_CACHE_UNPROVEN_LEAD in capacity per GPU, and the bf16 cache holds this load without KV pressure."""
    c = w.config
    if c.kv_cache_dtype != "fp8" or c.engine != "vllm" or not w.meets_slo:
        return None
    same = [e for e in alternatives if e.config.kv_cache_dtype != "fp8" and e.meets_slo and e.predictions
            and _dims(e.config)[:2] == _dims(c)[:2] and kv_pressure(req, e) is None]  # same weights and layout
    if not same:
        return None
    alt = max(same, key=capacity_per_gpu)
    cap, alt_cap = capacity_per_gpu(w), capacity_per_gpu(alt)
    if alt_cap <= 0 or cap >= alt_cap * (1 + FP8_CACHE_UNPROVEN_LEAD):
        return None
    return (f"Its FP8 KV cache leads the same weights and layout with a bf16 cache ({alt.config.label()}, "
            f"{alt_cap:.2f} req/s per GPU) by {cap / alt_cap - 1:.0%}, within what the model is known to miss for an "
            f"FP8 cache: in vLLM 0.26.0 on an H200 an 8B's steps beyond the CUDA graphs ran 6-8 ms longer over it, "
            f"TPOT +9-12% and TTFT P50 +15-34% against a bf16 cache at 10-16 req/s (docs/accuracy.md, session 31). "
            f"Where memory does not bind, the bf16 cache may serve as much or more.")


def why(req: PlanRequest, ranked: list[Estimate], alternatives: list[Estimate] | None = None) -> str:
    """Why the winner: for the goodput objective, one clause per decision (precision, layout, batching)
    against the best alternative that decided differently; for cost and latency, the runner-up's number.
    Sentences on KV-cache pressure, on a rate near capacity and on an FP8 cache's unproven lead follow where they
    apply to the winner."""
    text = _why(req, ranked, alternatives)
    if not ranked:
        return text
    others = [e for e in (alternatives if alternatives is not None else ranked) if e is not ranked[0]]
    notes = [n for n in (kv_pressure(req, ranked[0]), load_pressure(req, ranked[0]),
                         fp8_cache_note(req, ranked[0], others)) if n]
    return " ".join([text, *notes]) if notes else text


def _why(req: PlanRequest, ranked: list[Estimate], alternatives: list[Estimate] | None = None) -> str:
    if not ranked:
        return ""
    w = ranked[0]
    wp = w.predictions
    assert wp is not None
    pct = req.slo.headline_percentile
    if not w.meets_slo:
        if wp.saturated and (wp.max_rps is None or wp.max_rps < (req.traffic.rate_rps or 0)):
            return (f"No candidate carries the offered load: the closest ({w.config.label()}) serves at most "
                    f"{wp.max_rps or 0:.2f} of the {req.traffic.rate_rps or 0:g} req/s offered.")
        if wp.saturated:  # below its ceiling on average, but the simulated queue kept growing
            return (f"No candidate carries the offered load within the SLO: the closest ({w.config.label()}) "
                    f"queues up at {req.traffic.rate_rps or 0:g} req/s (its simulated queue keeps growing, "
                    f"{wp.max_rps:.2f} req/s at best with no latency limit) and misses {'; '.join(w.violations)}.")
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
    if not has_headroom(req, w):
        head += (f", short of the {req.search.headroom:.0%} headroom asked (search.headroom): no candidate on "
                 f"these GPUs keeps it; the Sizing line says what does")
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
                if has_headroom(req, w) and not has_headroom(req, alt):
                    num += (f", more per GPU, but without {req.search.headroom:.0%} headroom "
                            f"({ap.capacity_rps or 0:.2f} req/s within the SLO, "
                            f"{asked_rate(req):.2f} asked)")
                else:
                    num += (f", more, but at +{alt.quality_cost:g}% stated perplexity cost" if alt.quality_cost >
                            w.quality_cost else ", more, but less goodput per GPU at the offered load")
        clauses.append(f"{name} {show(w.config)} vs {show(alt.config)}: {num}")
    if not clauses:
        return head + "."
    return head + ". Against the best alternative of each decision: " + "; ".join(clauses) + "."
