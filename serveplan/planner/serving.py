"""From step times to what users see: TTFT, TPOT, E2E percentiles, throughput, goodput, cost.

Two models of continuous batching, both over the traffic's length distributions and arrival process:

* `analytic`: a mean-field fixed point for the step time at the operating batch (Little's law for the
  running batch, chunked-prefill token budget, KV capacity), an M/G/1 wait for the prefill budget with
  Kingman's correction for bursty arrivals, and per-request spread from prefill interference. Sub-
  millisecond; the search scores every candidate with it.
* `simulate` (simulation.py): a discrete-event simulation at engine-step granularity with vLLM's scheduler rules (running
  decodes first, then prompt chunks FCFS within max_num_batched_tokens, max_num_seqs, KV blocks with
  recompute preemption). It captures what the mean field cannot (synchronised waves of a closed loop,
  long-prompt head-of-line blocking); the top candidates and `estimate` use it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from serveplan.planner.perf import StepModel
from serveplan.planner.result import MemoryBreakdown, Percentiles, Predictions
from serveplan.planner.spec import SLO, Candidate, Inventory, Traffic

NEAR_SATURATION = 0.8  # an open loop at this share of the mean-field capacity gets its capacity simulated
SATURATION_HORIZON_S = 60.0  # an overloaded open loop is reported as seen after a minute of offered load
K_LENGTHS = 12
Z_GRID = [NormalDist().inv_cdf((i + 0.5) / 10) for i in range(10)]
Q_GRID = [(i + 0.5) / 10 for i in range(10)]


@lru_cache(maxsize=256)
def _grids(traffic: Traffic) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Equal-weight length samples (input, output), output rotated to decorrelate the pairing."""
    ins = traffic.input_len.grid(K_LENGTHS)
    outs = traffic.output_len.grid(K_LENGTHS)
    return tuple(ins), tuple(outs[4:] + outs[:4])


def _longest_context(ins: tuple[float, ...], outs: tuple[float, ...], points: int = 8):  # noqa: ANN202
    """The expected longest context among b running sequences, as a function of b: the 1 - 1/(b + 1) quantile of a
    running sequence's context (its prompt plus what it has generated so far, each request weighted by the steps it
    decodes, its output length). The simulation knows each step's longest context; the mean field takes the order
    statistic (StepModel.step_ms's longest_ctx)."""
    weighted = sorted((i + o * (j + 0.5) / points, o) for i, o in zip(ins, outs) for j in range(points))
    total = sum(w for _, w in weighted)
    cum, acc = [], 0.0
    for _, w in weighted:
        acc += w
        cum.append(acc / total)

    def longest(b: float) -> float:
        q = 1 - 1 / (max(b, 0.0) + 1)
        return weighted[min(bisect.bisect_left(cum, q), len(weighted) - 1)][0]

    return longest


def _pct(values: list[float], q: float) -> float:
    """Percentile (linear interpolation) of an unweighted sample."""
    if not values:
        return 0.0
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def percentiles(values: list[float]) -> Percentiles:
    return Percentiles(p50=_pct(values, 0.5), p90=_pct(values, 0.9), p99=_pct(values, 0.99),
                       mean=sum(values) / len(values) if values else 0.0)


def _limits(slo: SLO) -> dict[str, float]:
    """Per-request limits for attainment: for each metric, the limit at its highest percentile set."""
    out: dict[str, float] = {}
    for metric, _, limit in slo.latency_targets():
        out[metric] = limit  # latency_targets lists p50, p90, p99 in order: the last one wins
    return out


def _attainment(ttft: list[float], tpot: list[float], e2e: list[float], slo: SLO) -> float:
    lim = _limits(slo)
    if not lim or not ttft:
        return 1.0
    ok = 0
    for a, b, c in zip(ttft, tpot, e2e):
        if a <= lim.get("ttft", math.inf) and b <= lim.get("tpot", math.inf) and c <= lim.get("e2e", math.inf):
            ok += 1
    return ok / len(ttft)


@dataclass(frozen=True)
class Load:
    """Per-replica offered load."""

    rate: float | None  # requests/s, open loop
    clients: float | None  # closed loop
    ca2: float  # squared coefficient of variation of inter-arrival times


def replica_load(traffic: Traffic, replicas: int) -> Load:
    ca2 = {"poisson": 1.0, "constant": 0.0, "bursty": 1.0 / traffic.burstiness, "closed": 1.0}[traffic.arrival]
    if traffic.is_closed_loop:
        return Load(None, (traffic.concurrency or 1) / replicas, ca2)
    return Load((traffic.rate_rps or 0.0) / replicas, None, ca2)


def finish_predictions(sm: StepModel, cand: Candidate, inventory: Inventory, slo: SLO, ttft: list[float],
            tpot: list[float], e2e: list[float], rps_replica: float, mean_out: float, mean_in: float,
            concurrency: float, saturated: bool, decode_step_ms: float, model_name: str,
            capacity_replica: float) -> Predictions:
    att = _attainment(ttft, tpot, e2e, slo)
    rps = rps_replica * cand.replicas
    out_tok = rps * mean_out
    gpus = cand.total_gpus
    cost = (gpus * inventory.gpu.price_per_hour_usd) / max(out_tok * 3600, 1e-9) * 1e6
    sources = {k: v for k, v in sm.sources.items()}
    sources["serving"] = model_name
    sources["price"] = inventory.gpu.price_source or "catalog"
    return Predictions(
        ttft_ms=percentiles(ttft), tpot_ms=percentiles(tpot), e2e_ms=percentiles(e2e),
        throughput_tok_s=out_tok, input_tok_s=rps * mean_in, requests_per_s=rps,
        goodput_rps=rps * att, slo_attainment=att, tok_s_per_gpu=out_tok / gpus,
        cost_per_1m_tokens=cost, concurrency=concurrency, saturated=saturated,
        decode_step_ms=decode_step_ms, max_rps=capacity_replica * cand.replicas, sources=sources,
    )


# ------------------------------------------------------------------------------------------------ analytic
def analytic(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, traffic: Traffic, slo: SLO,
             inventory: Inventory) -> tuple[Predictions, float]:
    """Mean-field predictions and the per-replica saturation rate (requests/s)."""
    ins, outs = _grids(traffic)
    share = 1.0 - traffic.prefix_share
    e_in = sum(ins) / K_LENGTHS
    e_pf = e_in * share
    e_out = sum(outs) / K_LENGTHS
    ctx = sum(o * (i + o / 2) for i, o in zip(ins, outs)) / max(sum(outs), 1e-9)
    b_cap = max(1.0, min(cand.max_num_seqs, mem.kv_tokens / max(ctx, 1.0)))
    budget = cand.max_num_batched_tokens if cand.chunked_prefill else max(
        cand.max_num_batched_tokens, cand.max_model_len)
    load = replica_load(traffic, cand.replicas)

    longest = _longest_context(ins, outs)

    def step(b: float, p: float, n_pf: float = 0.0, work: float | None = None) -> float:
        return sm.step_ms(b, b * ctx, p, work if work is not None else p * (e_in * (1 - share) + p / 2),
                          n_pf, longest(b)) / 1000.0

    # Saturation: the running batch at its cap with prompts streaming in at the same request rate.
    s_cap = step(b_cap, 0.0)
    for _ in range(12):
        x = b_cap / (e_out * s_cap)
        p = min(x * e_pf * s_cap, max(budget - b_cap, 1.0))
        s_cap = step(b_cap, p, x * s_cap)
    lam_sat = b_cap / (e_out * s_cap)
    pf_cap = max(budget - b_cap, 1.0) / (e_pf * step(b_cap, max(budget - b_cap, 1.0), 1.0))
    lam_sat = min(lam_sat, pf_cap)

    saturated = False
    if load.rate is not None:
        lam = load.rate
        if lam >= lam_sat * 0.98:
            saturated, lam_eff = True, lam_sat * 0.98
        else:
            lam_eff = lam
        s = step(1.0, 0.0)
        for _ in range(40):
            b = min(lam_eff * e_out * s, b_cap)
            p = lam_eff * e_pf * s
            s_new = step(max(b, 1e-3), p, lam_eff * s)
            if abs(s_new - s) < 1e-4 * s:
                s = s_new
                break
            s = 0.5 * s + 0.5 * s_new
        b = min(lam_eff * e_out * s, b_cap)
        x = lam_eff
        queue_extra = 0.0
        if saturated:  # backlog after the horizon, drained at the saturation rate
            queue_extra = (lam - lam_eff) * SATURATION_HORIZON_S / max(lam_eff, 1e-9) / 2
    else:
        n = load.clients or 1.0
        b_run = min(n, b_cap)
        s = step(b_run, 0.0)
        for _ in range(40):
            n_pf_steps = max(1.0, e_pf / max(budget - b_run, 1.0))
            x = b_run / ((e_out + n_pf_steps) * s)
            p = min(x * e_pf * s, max(budget - b_run, 1.0))
            s_new = step(b_run * e_out / (e_out + n_pf_steps), p, x * s)
            if abs(s_new - s) < 1e-4 * s:
                s = s_new
                break
            s = 0.5 * s + 0.5 * s_new
        b = b_run
        lam_eff = x
        queue_extra = max(0.0, n - b_run) / max(x, 1e-9)
        saturated = n > b_cap

    avail = max(budget - b, 1.0)
    s_dec = step(b, 0.0)
    p_step = lam_eff * e_pf * s
    rho = min(p_step / avail, 0.98)
    # M/G/1 wait for the prefill budget: service time = prompt tokens / prefill token rate.
    r_tok = avail / s
    es = e_pf / r_tok
    es2 = sum((i * share) ** 2 for i in ins) / K_LENGTHS / r_tok**2
    ew = rho / (1 - rho) * es2 / (2 * max(es, 1e-12)) * (load.ca2 + 1) / 2
    chunk_steps_frac = min(1.0, lam_eff * s * sum(math.ceil(i * share / avail) for i in ins) / K_LENGTHS)
    chunk_avg = p_step / max(chunk_steps_frac, 1e-9)
    s_mix = step(b, min(chunk_avg, avail) if cand.chunked_prefill else max(ins) * share, 1.0)

    ttft, tpot, e2e = [], [], []
    front_tok_s = lam_eff * (e_in + e_out)
    # A prompt waits for the step in flight (half a step on average) and, with asynchronous scheduling, for
    # the step already scheduled behind it.
    wait_steps = 1.5 if sm.engine.async_scheduling else 0.5
    # A prompt that finds the engine idle waits at least sm.idle_floor_ms in its first step: always with one client,
    # never with several; an open loop finds the engine empty with the Poisson chance of no request in flight.
    p_idle = (math.exp(-b) if load.rate is not None else 1.0 if (load.clients or 1.0) <= 1.0 else 0.0)
    for i, o in zip(ins, outs):
        pf = i * share
        if cand.chunked_prefill:
            n_steps = max(1, math.ceil(pf / avail))
            s_k = step(b, min(pf, avail), 1.0, min(pf, avail) * (i - pf + min(pf, avail) / 2))
        else:
            n_steps, s_k = 1, step(b, pf, 1.0, pf * (i - pf + pf / 2))
        base = wait_steps * s + n_steps * s_k
        var = chunk_steps_frac * (1 - chunk_steps_frac) / max(o - 1, 1)
        idle = p_idle * max(0.0, sm.idle_floor_ms - s_k * 1000)  # what the floor adds to this prompt's own step
        for q, z in zip(Q_GRID, Z_GRID):
            w = 0.0 if q <= 1 - rho else -math.log((1 - q) / max(rho, 1e-12)) * ew / max(rho, 1e-12)
            t_first = (w + base + queue_extra) * 1000 + idle + sm.request_ms(i, front_tok_s)
            frac = min(1.0, max(0.0, chunk_steps_frac + z * math.sqrt(var)))
            t_tok = (s_dec + (s_mix - s_dec) * frac) * 1000
            ttft.append(t_first)
            tpot.append(t_tok)
            e2e.append(t_first + max(o - 1, 0) * t_tok)
    conc = b + lam_eff * (ew + s / 2)
    preds = finish_predictions(sm, cand, inventory, slo, ttft, tpot, e2e, lam_eff, e_out, e_in, conc, saturated,
                    s_dec * 1000, "analytic", lam_sat * 0.98)
    return preds, lam_sat
