"""From step times to what users see: TTFT, TPOT, E2E percentiles, throughput, goodput, cost.

Two models of continuous batching, both over the traffic's length distributions and arrival process:

* `analytic`: a mean-field fixed point for the step time at the operating batch (Little's law for the
  running batch, chunked-prefill token budget, KV capacity), an M/G/1 wait for the prefill budget with
  Kingman's correction for bursty arrivals, and per-request spread from prefill interference. Sub-
  millisecond; the search scores every candidate with it.
* `simulate`: a discrete-event simulation at engine-step granularity with vLLM's scheduler rules (running
  decodes first, then prompt chunks FCFS within max_num_batched_tokens, max_num_seqs, KV blocks with
  recompute preemption). It captures what the mean field cannot (synchronised waves of a closed loop,
  long-prompt head-of-line blocking); the top candidates and `estimate` use it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Callable
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


def _finish(sm: StepModel, cand: Candidate, inventory: Inventory, slo: SLO, ttft: list[float],
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

    def step(b: float, p: float, n_pf: float = 0.0, work: float | None = None) -> float:
        return sm.step_ms(b, b * ctx, p, work if work is not None else p * (e_in * (1 - share) + p / 2),
                          n_pf) / 1000.0

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
    for i, o in zip(ins, outs):
        pf = i * share
        if cand.chunked_prefill:
            n_steps = max(1, math.ceil(pf / avail))
            s_k = step(b, min(pf, avail), 1.0, min(pf, avail) * (i - pf + min(pf, avail) / 2))
        else:
            n_steps, s_k = 1, step(b, pf, 1.0, pf * (i - pf + pf / 2))
        base = s / 2 + n_steps * s_k
        var = chunk_steps_frac * (1 - chunk_steps_frac) / max(o - 1, 1)
        for q, z in zip(Q_GRID, Z_GRID):
            w = 0.0 if q <= 1 - rho else -math.log((1 - q) / max(rho, 1e-12)) * ew / max(rho, 1e-12)
            t_first = (w + base + queue_extra) * 1000 + sm.request_overhead_ms
            frac = min(1.0, max(0.0, chunk_steps_frac + z * math.sqrt(var)))
            t_tok = (s_dec + (s_mix - s_dec) * frac) * 1000
            ttft.append(t_first)
            tpot.append(t_tok)
            e2e.append(t_first + max(o - 1, 0) * t_tok)
    conc = b + lam_eff * (ew + s / 2)
    preds = _finish(sm, cand, inventory, slo, ttft, tpot, e2e, lam_eff, e_out, e_in, conc, saturated,
                    s_dec * 1000, "analytic", lam_sat * 0.98)
    return preds, lam_sat


# ------------------------------------------------------------------------------------------------ simulation
@dataclass
class _Req:
    arrival: float
    prompt: int
    prefill_left: int
    output: int
    generated: int = 0
    first_token: float = -1.0
    finish: float = -1.0


def _sample_lengths(traffic: Traffic, n: int, rng: random.Random) -> list[tuple[int, int]]:
    qi = [(k + rng.random()) / n for k in range(n)]
    qo = [(k + rng.random()) / n for k in range(n)]
    rng.shuffle(qi)
    rng.shuffle(qo)
    return [(max(1, round(traffic.input_len.quantile(a))), max(1, round(traffic.output_len.quantile(b))))
            for a, b in zip(qi, qo)]


def simulate(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, traffic: Traffic, slo: SLO,
             inventory: Inventory, *, n_requests: int | None = None, seed: int = 0,
             max_decode_tokens: int = 25_000, kv_block: int = 16, with_capacity: bool = True,
             analytic_capacity: float | None = None, closed_loop: str = "steady") -> Predictions:
    """Step-level simulation of one replica under its share of the traffic: arrivals, then vLLM's scheduler
    step by step, then the summary. with_capacity: an open loop near or past saturation also simulates the
    replica's capacity (replica_capacity), where its served rate levels off; further below it, the capacity
    shown is the mean-field one (analytic_capacity, per replica). Without it (calibration fits) the capacity
    is what was served. closed_loop: "steady" predicts a long run with every client busy (the first wave,
    all clients arriving at once, is reported apart as burst_ttft_ms; the final drain is left out); "run" predicts
    the finite run as a `vllm bench serve --max-concurrency C --num-prompts N` measures it, wave and drain
    included (what calibration is fitted on)."""
    rng = random.Random(seed)
    load = replica_load(traffic, cand.replicas)
    e_out = traffic.output_len.mean
    if n_requests is None:
        n_requests = int(min(300, max(60, max_decode_tokens / max(e_out, 1))))
        if load.clients:
            n_requests = max(n_requests, int(4 * load.clients))
    lengths = _sample_lengths(traffic, n_requests, rng)
    share = 1.0 - traffic.prefix_share
    arrivals, pending = _arrivals(traffic, load, lengths, share, rng)
    sim = _ReplicaSim(sm, cand, kv_cap=max(mem.kv_tokens, 1), share=share, arrivals=arrivals, pending=pending,
                      kv_block=kv_block)
    sim.run()
    capacity = None
    if with_capacity:
        def capacity() -> float:
            return replica_capacity(sm, cand, mem, traffic, seed=seed, kv_block=kv_block)
    return _summary(sm, cand, inventory, slo, load, sim.done, sim.decode_steps, capacity, analytic_capacity,
                    steady_after=sim.last_issue if closed_loop == "steady" else None)


def replica_capacity(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, traffic: Traffic, *, seed: int = 0,
                     kv_block: int = 16) -> float:
    """The most requests/s one replica serves, whatever the latency: a closed loop that keeps the batch full
    (more clients than max_num_seqs, or as many as the KV cache holds), measured over its steady window: from the end of the first
    wave to the moment the last client request is issued (before that every client is busy; after it the
    run drains). This is where the served rate of an overloaded open loop levels off."""
    rng = random.Random(seed + 1)
    e_out = max(traffic.output_len.mean, 1.0)
    # No more clients than the KV cache holds whole sequences for: beyond that vLLM preempts and recomputes,
    # and an overload that deep is a metastable state a rate limit in front avoids; the capacity is the peak.
    kv_seqs = int(mem.kv_tokens / max(traffic.input_len.mean * (1.0 - traffic.prefix_share) + e_out, 1.0))
    clients = max(2, min(math.ceil(cand.max_num_seqs * 1.25), kv_seqs))
    n = max(2 * clients, int(min(600, 30_000 / e_out)))
    lengths = _sample_lengths(traffic, n, rng)
    share = 1.0 - traffic.prefix_share
    arrivals, pending = _arrivals(traffic, Load(None, clients, 1.0), lengths, share, rng)
    sim = _ReplicaSim(sm, cand, kv_cap=max(mem.kv_tokens, 1), share=share, arrivals=arrivals, pending=pending,
                      kv_block=kv_block)
    sim.run()
    return _steady_rate(sim.done, clients, sim.last_issue)


def _steady_rate(done: list[_Req], clients: int, last_issue: float) -> float:
    """Completions per second of a closed loop while every client is busy: from the middle of the first wave's
    completions to the moment the last request was issued (after it the run drains)."""
    fin = sorted(r.finish for r in done)
    t_start = fin[min(clients, len(fin) - 1) // 2]
    inside = bisect.bisect_right(fin, last_issue) - bisect.bisect_right(fin, t_start)
    if last_issue - t_start <= 0 or inside < 8:  # too short a window: the whole run
        return len(fin) / max(fin[-1], 1e-9)
    return inside / (last_issue - t_start)


def _arrivals(traffic: Traffic, load: Load, lengths: list[tuple[int, int]], share: float,
              rng: random.Random) -> tuple[deque[_Req], deque[tuple[int, int]]]:
    """Open loop: every request with its arrival time (Poisson, constant or gamma-bursty gaps). Closed loop:
    one request per client at t=0; the rest (pending) arrive as earlier ones finish."""
    arrivals: deque[_Req] = deque()
    if load.rate is not None:
        t = 0.0
        for (i, o) in lengths:
            if traffic.arrival == "constant":
                gap = 1.0 / load.rate
            elif traffic.arrival == "bursty":
                k = traffic.burstiness
                gap = rng.gammavariate(k, 1.0 / (k * load.rate))
            else:
                gap = rng.expovariate(load.rate)
            t += gap
            arrivals.append(_Req(t, i, max(1, round(i * share)), o))
        return arrivals, deque()
    clients = max(1, round(load.clients or 1))
    for (i, o) in lengths[:clients]:
        arrivals.append(_Req(0.0, i, max(1, round(i * share)), o))
    return arrivals, deque(lengths[clients:])


class _ReplicaSim:
    """vLLM's V1 scheduler on one replica, one engine step at a time: running decodes first, then the running
    prefills' chunks, then new admissions within the token budget, max_num_seqs and the KV cache; the newest
    running request is preempted (and recomputed) when the KV cache overflows."""

    def __init__(self, sm: StepModel, cand: Candidate, *, kv_cap: int, share: float, arrivals: deque[_Req],
                 pending: deque[tuple[int, int]], kv_block: int):
        self.sm, self.cand, self.kv_cap, self.share = sm, cand, kv_cap, share
        self.kv_block = kv_block  # the engine admits a request only with a block to spare
        self.budget = cand.max_num_batched_tokens if cand.chunked_prefill else max(
            cand.max_num_batched_tokens, cand.max_model_len)
        self.arrivals, self.pending = arrivals, pending
        self.waiting: deque[_Req] = deque()
        self.running: list[_Req] = []  # admitted: prefilling or decoding, in admission order
        self.done: list[_Req] = []
        self.used = 0  # KV tokens held by running requests
        self.now = 0.0
        self.last_issue = 0.0  # closed loop: when the last pending request was issued
        self.decode_steps: list[tuple[float, int]] = []

    def chunk(self, r: _Req, tokens_left: int) -> int:
        """The prefill tokens of r this step: a chunk with chunked prefill, else the whole rest or nothing."""
        if self.cand.chunked_prefill:
            return min(r.prefill_left, tokens_left)
        return r.prefill_left if r.prefill_left <= tokens_left else 0

    def run(self) -> None:
        guard = 0
        while (self.arrivals or self.waiting or self.running) and guard < 2_000_000:
            guard += 1
            while self.arrivals and self.arrivals[0].arrival <= self.now + 1e-12:
                self.waiting.append(self.arrivals.popleft())
            if not self.waiting and not self.running:
                self.now = self.arrivals[0].arrival
                continue
            preempted = self._preempt()
            dec, chunked = self._schedule(admit=not preempted)
            if not dec and not chunked:
                if self.arrivals:
                    self.now = max(self.now, self.arrivals[0].arrival)
                    continue
                break  # nothing schedulable (should not happen when memory fits)
            self._step(dec, chunked)

    def _preempt(self) -> bool:
        preempted = False
        while self.running and self.used > self.kv_cap:
            victim = self.running.pop()
            self.used -= victim.prompt - victim.prefill_left + victim.generated
            victim.prefill_left = victim.prompt + victim.generated  # recompute what it had
            self.waiting.appendleft(victim)
            preempted = True
        return preempted

    def _schedule(self, admit: bool = True) -> tuple[list[_Req], list[tuple[_Req, int]]]:
        """admit=False: a step that preempted admits no waiting request (vLLM V1's scheduler skips the waiting
        queue while it has preempted requests this step)."""
        tokens_left = self.budget
        dec = [r for r in self.running if r.prefill_left == 0]
        tokens_left -= len(dec)
        chunked: list[tuple[_Req, int]] = []
        for r in self.running:
            if r.prefill_left > 0 and tokens_left > 0:
                c = self.chunk(r, tokens_left)
                if c:
                    chunked.append((r, c))
                    tokens_left -= c
        while admit and self.waiting and tokens_left > 0 and len(self.running) < self.cand.max_num_seqs:
            r = self.waiting[0]
            if self.used + r.prefill_left + self.kv_block > self.kv_cap:
                break
            c = self.chunk(r, tokens_left)
            if not c:
                break
            self.waiting.popleft()
            self.running.append(r)
            chunked.append((r, c))
            tokens_left -= c
        return dec, chunked

    def _step(self, dec: list[_Req], chunked: list[tuple[_Req, int]]) -> None:
        dec_ctx = sum(r.prompt + r.generated for r in dec)
        pf_tokens, pf_work, pf_seqs = 0, 0.0, 0
        for r, c in chunked:
            prefix = r.prompt - r.prefill_left
            pf_tokens += c
            pf_work += c * (prefix + c / 2)
            pf_seqs += 1
        dt = self.sm.step_ms(len(dec), dec_ctx, pf_tokens, pf_work, pf_seqs) / 1000.0
        self.now += dt
        if dec:
            self.decode_steps.append((dt, len(dec)))
        self.used += len(dec) + pf_tokens
        finished: list[_Req] = []
        for r in dec:
            r.generated += 1
            if r.generated >= r.output:
                finished.append(r)
        for r, c in chunked:
            r.prefill_left -= c
            if r.prefill_left == 0:
                if r.first_token < 0:
                    r.first_token = self.now
                r.generated = max(r.generated, 1)
                if r.generated >= r.output:
                    finished.append(r)
        for r in finished:
            r.finish = self.now
            self.used -= r.prompt + r.generated
            self.running.remove(r)
            self.done.append(r)
            if self.pending:
                i, o = self.pending.popleft()
                self.arrivals.append(_Req(self.now, i, max(1, round(i * self.share)), o))
                self.last_issue = self.now


def _summary(sm: StepModel, cand: Candidate, inventory: Inventory, slo: SLO, load: Load, done: list[_Req],
             decode_steps: list[tuple[float, int]], capacity_sim: Callable[[], float] | None,
             analytic_capacity: float | None, steady_after: float | None = None) -> Predictions:
    """Percentiles, throughput and saturation from the finished requests (open loops skip a 10% warm-up). An
    open loop serves its offered rate up to the replica's capacity and the capacity beyond it: a finite run's
    own completion span would count the drain of its last long outputs as lost throughput."""
    done.sort(key=lambda r: r.arrival)
    skip = len(done) // 10 if load.rate is not None else 0
    sample = done[skip:] or done
    extra = sm.request_overhead_ms  # HTTP, tokenization, streaming: outside the engine steps
    burst = None
    if load.clients is not None and steady_after is not None:
        steady = [r for r in done if 0.0 < r.arrival <= steady_after]
        if len(steady) >= 10:  # enough issued after the first wave for a steady state
            burst = percentiles([(r.first_token - r.arrival) * 1000 + extra for r in done if r.arrival == 0.0])
            sample = steady
    ttft = [(r.first_token - r.arrival) * 1000 + extra for r in sample]
    tpot = [((r.finish - r.first_token) / (r.output - 1) * 1000) if r.output > 1 else 0.0 for r in sample]
    e2e = [(r.finish - r.arrival) * 1000 + extra for r in sample]
    mean_out = sum(r.output for r in sample) / len(sample)
    mean_in = sum(r.prompt for r in sample) / len(sample)
    busy = sum(dt for dt, _ in decode_steps)
    avg_b = sum(dt * b for dt, b in decode_steps) / busy if busy else 0.0
    finish_span = max(r.finish for r in sample) - min(r.arrival for r in sample)
    if load.rate is not None:
        # Overloaded when the number of requests in the system keeps growing (queued or in an ever larger
        # batch): compare it halfway through the arrivals and at the last arrival; or when late arrivals wait
        # far longer than early ones.
        arr = sorted(r.arrival for r in done)
        fin = sorted(r.finish for r in done)

        def in_system(t: float) -> int:
            return bisect.bisect_right(arr, t) - bisect.bisect_right(fin, t)

        n_mid, n_end = in_system(arr[len(arr) // 2]), in_system(arr[-1])
        q = max(1, len(sample) // 4)
        early = sum(ttft[:q]) / q
        late = sum(ttft[-q:]) / q
        saturated = late > 3 * early + 1000.0 or n_end > 1.5 * n_mid + 8
        near = analytic_capacity is None or load.rate >= NEAR_SATURATION * analytic_capacity
        if capacity_sim is not None and (saturated or near):
            capacity = capacity_sim()
            saturated = saturated or load.rate >= capacity
            rps = min(load.rate, capacity)
        else:
            rps = len(sample) / max(finish_span, 1e-9) if saturated else load.rate
            capacity = max(analytic_capacity or 0.0, rps)
    else:
        saturated = False
        if burst is not None:
            rps = _steady_rate(done, max(1, round(load.clients or 1)), steady_after or 0.0)
        else:
            rps = len(sample) / finish_span if finish_span > 0 else 0.0
        capacity = max(analytic_capacity or 0.0, rps)
    dec_step = (busy / len(decode_steps) * 1000) if decode_steps else 0.0
    preds = _finish(sm, cand, inventory, slo, ttft, tpot, e2e, rps, mean_out, mean_in, avg_b, saturated,
                    dec_step, "simulated", capacity)
    return preds.model_copy(update={"burst_ttft_ms": burst}) if burst is not None else preds
