"""The step-level simulation of continuous batching (see serving.py for the two models and when each is used):
vLLM's scheduler on one replica, one engine step at a time, under the traffic's arrivals; the replica's
capacity (a closed loop that keeps the batch full); the summary into Predictions.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from serveplan.errors import ConfigError
from serveplan.planner.perf import StepModel
from serveplan.planner.result import MemoryBreakdown, Predictions
from serveplan.planner.serving import NEAR_SATURATION, Load, finish_predictions, percentiles, replica_load
from serveplan.planner.spec import SLO, Candidate, Inventory, Traffic

OPEN_LOOP_HORIZON_S = 30.0  # seconds of arrivals an open loop is simulated for, at least (the search's leaders)
# ... and what a prediction the user reads takes (the plan's finalists and their capacity at the SLO, `plan
# estimate`): its P99 comes from 8x as many requests. A percentile of a small sample of a long-tailed latency is low
# on average as well as noisy: over eight seeds the README's winner read 1.70-3.25 req/s within the SLO at 30 s (mean
# 2.67), 1.77-2.53 at 120 s (2.09), 1.39-2.36 at 240 s (2.00), 1.62-2.25 at 480 s (2.02). On the 29 long unsaturated
# open loops measured, 30 s was within 30% on 17 and optimistic on 24; 120 s 22 and 18; 240 s 21 and 16
# (`python benchmarks/p99_horizon.py --horizon H`; docs/accuracy.md, session 24).
REPORTED_HORIZON_S = 240.0
OPEN_LOOP_MAX_REQUESTS = 1500  # ... up to this many requests (simulation time grows with it)


@dataclass(eq=False)  # by identity: _retire's list.remove compared every field of each request before it
class _Req:
    arrival: float
    prompt: int
    prefill_left: int
    output: int
    generated: int = 0
    first_token: float = -1.0
    finish: float = -1.0
    admitted: float = -1.0  # the start of the step that first scheduled it (replay reports it)
    ready: float = -1.0  # when the engine core has it: its arrival, or just after one sent with it (_hand_over)
    measured: bool = True  # False: an open loop's tail, arriving only to keep the load on (see simulate)


def _sample_lengths(traffic: Traffic, n: int, rng: random.Random) -> list[tuple[int, int]]:
    qi = [(k + rng.random()) / n for k in range(n)]
    qo = [(k + rng.random()) / n for k in range(n)]
    rng.shuffle(qi)
    rng.shuffle(qo)
    return [(max(1, round(traffic.input_len.quantile(a))), max(1, round(traffic.output_len.quantile(b))))
            for a, b in zip(qi, qo)]


def _servable(lengths: list[tuple[int, int]], cand: Candidate, *, needed: bool = True) -> list[tuple[int, int]]:
    """The sampled requests the engine takes: vLLM refuses one whose prompt + output exceed max_model_len (HTTP
    400), so it never queues (report.context_sentence says how many). Without this a prompt longer than the KV cache
    waited at the head of the queue forever: gemma-2-9b on an L4 under summarize finished no request, and the plan
    crashed. needed: none left is a config error (an open loop's unmeasured tail may be empty)."""
    kept = [(i, o) for i, o in lengths if i + o <= cand.max_model_len]
    if needed and not kept:
        raise ConfigError(f"Every request of this traffic is longer (prompt + output) than max_model_len "
                          f"{cand.max_model_len:,}, so the engine would refuse them all; lower traffic.input_len / "
                          f"output_len or raise max_model_len.")
    return kept


def simulate(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, traffic: Traffic, slo: SLO,
             inventory: Inventory, *, n_requests: int | None = None, seed: int = 0,
             max_decode_tokens: int = 25_000, kv_block: int = 16, with_capacity: bool = True,
             analytic_capacity: float | None = None, closed_loop: str = "steady",
             replica_capacity_rps: float | None = None, horizon_s: float = OPEN_LOOP_HORIZON_S) -> Predictions:
    """Step-level simulation of one replica under its share of the traffic: arrivals, then vLLM's scheduler
    step by step, then the summary. with_capacity: an open loop near or past saturation also simulates the
    replica's capacity (replica_capacity), where its served rate levels off; further below it, the capacity
    shown is the mean-field one (analytic_capacity, per replica). Without it (calibration fits) the capacity
    is what was served. closed_loop: "steady" predicts a long run with every client busy (the first wave,
    all clients arriving at once, is reported apart as burst_ttft_ms; the final drain is left out); "run" predicts
    the finite run as a `vllm bench serve --max-concurrency C --num-prompts N` measures it, wave and drain
    included (what calibration is fitted on). replica_capacity_rps: one replica's capacity where the caller already
    has it (capacity.capacity_at_slo simulates many rates of one candidate): an open loop is then saturated when its
    waits keep growing or its rate reaches it, as with_capacity decides, without simulating it again. horizon_s:
    the seconds of arrivals an open loop is simulated for at least (a longer one gives its tail percentiles more
    requests: REPORTED_HORIZON_S)."""
    rng = random.Random(seed)
    load = replica_load(traffic, cand.replicas)
    e_out = traffic.output_len.mean
    tail = 0
    if n_requests is None:
        n_requests = int(min(300, max(60, max_decode_tokens / max(e_out, 1))))
        if load.clients:
            n_requests = max(n_requests, int(4 * load.clients))
        if load.rate is not None:
            # Sustained traffic: at least horizon_s of arrivals (a few hundred requests ran out in
            # seconds at tens of req/s, before the batch had grown to its steady size), and arrivals that keep
            # coming until the last measured request is done (without them its last tokens ran in an emptying
            # batch). Both made heavy loads look faster than a sustained run: 8B fp8 at 26 req/s on an H200
            # predicted TPOT 7 ms against 14-21 ms measured (benchmarks/gpu/results/session4).
            n_requests = max(n_requests, min(OPEN_LOOP_MAX_REQUESTS, round(load.rate * horizon_s)))
            tail = max(8, n_requests // 4)
    # stratified apart, so the measured requests alone follow the length distribution
    measured = _sample_lengths(traffic, n_requests, rng)
    served = _servable(measured, cand)
    if len(served) < len(measured):  # the rest are refused: the engine sees that share of the rate
        if load.rate is not None:
            load = Load(load.rate * len(served) / len(measured), None, load.ca2)
        n_requests = len(served)
    # the tail's arrivals are thinned by the same filter, so it keeps its length in time at the thinned rate
    tail_lengths = _sample_lengths(traffic, tail, rng) if tail else []
    lengths = served + _servable(tail_lengths, cand, needed=False)
    share = 1.0 - traffic.prefix_share
    arrivals, pending = _arrivals(traffic, load, lengths, share, rng)
    for r in list(arrivals)[n_requests:]:
        r.measured = False
    sim = _ReplicaSim(sm, cand, kv_cap=max(mem.kv_tokens, 1), share=share, arrivals=arrivals, pending=pending,
                      kv_block=kv_block)
    sim.run()
    capacity: Callable[[], float] | None = None
    if replica_capacity_rps is not None:
        capacity = lambda: replica_capacity_rps  # noqa: E731
    elif with_capacity:  # simulated only if _summary needs it (an open loop near or past saturation)
        capacity = lambda: replica_capacity(sm, cand, mem, traffic, seed=seed, kv_block=kv_block)  # noqa: E731
    return _summary(sm, cand, inventory, slo, load, sim.done, sim.decode_steps, capacity, analytic_capacity,
                    steady_after=sim.last_issue if closed_loop == "steady" else None)


@dataclass(frozen=True)
class Replayed:
    """One request of a replayed trace, ms: TTFT (with the time outside the engine steps), TPOT, and TTFT's engine
    parts: from arrival to the start of the step that first scheduled it, and from there to its first token."""
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    wait_ms: float
    prefill_ms: float


def replay(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, trace: list[tuple[float, int, int]], *,
           kv_block: int = 16) -> list[Replayed]:
    """One replica fed an exact trace instead of a sample of the traffic: (arrival s, prompt tokens, output tokens)
    per request, as a `bench` file records them. Returns each request's figures in the trace's order, TTFT with the
    time outside the engine steps at the trace's own tokens/s (as `simulate` adds it). It tells the step model's error
    from the one a sampled run of the same traffic adds (`benchmarks/open_loop_accuracy.py --replay`)."""
    if not trace:
        return []
    t0 = min(a for a, _, _ in trace)
    reqs = [_Req(a - t0, p, p, o) for a, p, o in trace]
    sim = _ReplicaSim(sm, cand, kv_cap=max(mem.kv_tokens, 1), share=1.0,
                      arrivals=deque(sorted(reqs, key=lambda r: r.arrival)), pending=deque(), kv_block=kv_block)
    sim.run()
    arrivals_span = max(r.arrival for r in reqs)  # the offered tokens/s, as simulate takes the offered rate's
    front_tok_s = sum(r.prompt + r.output for r in reqs) / arrivals_span if arrivals_span > 0 else 0.0
    out = []
    for r in reqs:
        outside = sm.request_ms(r.prompt, front_tok_s)
        out.append(Replayed((r.first_token - r.arrival) * 1000 + outside,
                            (r.finish - r.first_token) / (r.output - 1) * 1000 if r.output > 1 else 0.0,
                            (r.finish - r.arrival) * 1000 + outside,
                            (r.admitted - r.arrival) * 1000, (r.first_token - r.admitted) * 1000))
    return out


def replay_replicas(sm: StepModel, cand: Candidate, mem: MemoryBreakdown, trace: list[tuple[str, float, int, int]],
                    *, kv_block: int = 16) -> list[Replayed]:
    """replay of a trace sent to several replicas: (replica, arrival s, prompt tokens, output tokens) per request,
    each replica's requests replayed on their own (a bench records the URL each request went to)."""
    by_replica: dict[str, list[tuple[float, int, int]]] = {}
    for replica, arrival, prompt, output in trace:
        by_replica.setdefault(replica, []).append((arrival, prompt, output))
    return [x for part in by_replica.values() for x in replay(sm, cand, mem, part, kv_block=kv_block)]


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
    lengths = _servable(_sample_lengths(traffic, n, rng), cand)
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

    # Requests sent together reach the engine core one after another (the API server hands each over in turn), and
    # an idle engine starts its step on the first: a burst's first prompt runs alone, and the ones sent with it make
    # the step after next (async scheduling has planned the next one already). Every committed burst shows that
    # lone first prompt (benchmarks/first_waves.py). HANDOVER_S only orders them: any gap much shorter than a step
    # gives the same steps. The measured hand-over, ~2.8 ms a request, splits bursts of more than ~10 prompts
    # further (their second step takes only those that had arrived); that is not modelled.
    HANDOVER_S = 1e-6

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
        self.measured_left = sum(r.measured for r in arrivals) + len(pending)
        self.decode_steps: list[tuple[float, int]] = []
        # Asynchronous scheduling: the step that starts now was scheduled when the previous one started, so a
        # request arriving after that waits one more step. An idle engine schedules at once.
        self.async_scheduling = sm.engine.async_scheduling
        self.last_step_start = 0.0
        # The engine's loop blocks while nothing runs; the step it starts on waking takes sm.idle_floor_ms at least.
        self.idle = False
        # engine.first_token_after_launch: prompts finished in the last step, their first token not yet handed out
        self.hold = bool(sm.engine.first_token_after_launch and self.async_scheduling and sm.eager_floor_ms)
        self.held: list[_Req] = []
        self.last_ready = -math.inf
        for r in self.arrivals:
            self._hand_over(r)

    def _hand_over(self, r: _Req) -> None:
        """When the engine core has r: on arrival, or just after the request that reached it before."""
        r.ready = max(r.arrival, self.last_ready + self.HANDOVER_S)
        self.last_ready = r.ready

    def chunk(self, r: _Req, tokens_left: int) -> int:
        """The prefill tokens of r this step: a chunk with chunked prefill, else the whole rest or nothing."""
        if self.cand.chunked_prefill:
            return min(r.prefill_left, tokens_left)
        return r.prefill_left if r.prefill_left <= tokens_left else 0

    def run(self) -> None:
        guard = 0
        while (self.arrivals or self.waiting or self.running) and self.measured_left > 0 and guard < 2_000_000:
            guard += 1
            busy = self.running or self.waiting
            scheduled_at = self.last_step_start if self.async_scheduling and busy else self.now
            while self.arrivals and self.arrivals[0].ready <= scheduled_at + 1e-12:
                self.waiting.append(self.arrivals.popleft())
            if not self.waiting and not self.running:
                self.held = []  # nothing left to launch: the last step's first tokens went out as it ended
                if self.async_scheduling and self.arrivals and self.arrivals[0].ready <= self.now + 1e-12:
                    self.last_step_start = self.now  # arrived during the last step of a batch that has emptied
                    continue
                self.now = self.last_step_start = self.arrivals[0].ready
                continue
            self.idle = not self.running  # nothing in flight: the engine had blocked waiting for work
            preempted = self._preempt()
            dec, chunked = self._schedule(admit=not preempted)
            if not dec and not chunked:
                if self.arrivals:
                    self.now = self.last_step_start = max(self.now, self.arrivals[0].ready)
                    continue
                break  # nothing schedulable (should not happen when memory fits)
            k = self._decode_run(dec) if dec and not chunked and not self.waiting else 1
            if k > 1:
                self._decode_steps(dec, k)
            else:
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
            if r.admitted < 0:
                r.admitted = self.now
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
        longest = max((r.prompt + r.generated for r in dec), default=0)
        dt = self.sm.step_ms(len(dec), dec_ctx, pf_tokens, pf_work, pf_seqs, longest) / 1000.0
        if self.idle:
            dt = max(dt, self.sm.idle_floor_ms / 1000.0)
            self.idle = False
        eager = bool(self.sm.graph_tokens) and len(dec) + pf_tokens > self.sm.graph_tokens
        self._release(min(self.sm.eager_floor_ms / 1000.0, dt) if eager else 0.0)
        self.last_step_start = self.now
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
                    if self.hold and r.output > 1:
                        self.held.append(r)
                r.generated = max(r.generated, 1)
                if r.generated >= r.output:
                    finished.append(r)
        self._retire(finished)

    def _decode_run(self, dec: list[_Req]) -> int:
        """How many decode-only steps can run before anything else could happen: the first finish, the next
        arrival, or the KV cache filling (a preemption). Steps only lengthen as the context grows, so counting
        them at the first step's time never runs past the arrival by more than a fraction of a step."""
        n = len(dec)
        k = min(r.output - r.generated for r in dec)
        k = min(k, (self.kv_cap - self.used) // n)
        if self.arrivals and k > 1:
            dt = self.sm.step_ms(n, sum(r.prompt + r.generated for r in dec),
                                 longest_ctx=max(r.prompt + r.generated for r in dec)) / 1000.0
            k = min(k, int((self.arrivals[0].ready - self.now) / max(dt, 1e-9)))
        return k

    def _decode_steps(self, dec: list[_Req], k: int) -> None:
        """k decode-only steps at once (same result as k calls of _step, up to the step time being taken at
        the run's mean context: step time is linear in the context the attention reads)."""
        n = len(dec)
        ctx = sum(r.prompt + r.generated for r in dec) + n * (k - 1) / 2
        longest = max(r.prompt + r.generated for r in dec) + (k - 1) / 2
        dt = self.sm.step_ms(n, ctx, longest_ctx=longest) / 1000.0
        self._release(0.0)  # decode steps stay inside the graphs: the next launch holds nothing back
        self.last_step_start = self.now + (k - 1) * dt
        self.now += k * dt
        self.decode_steps.extend([(dt, n)] * k)
        self.used += n * k
        for r in dec:
            r.generated += k
        self._retire([r for r in dec if r.generated >= r.output])

    def _release(self, launch_s: float) -> None:
        """The step starting now launches in launch_s (the host floor of an eager step, else 0): the first tokens of
        the prompts the last step finished are handed out then (engine.first_token_after_launch)."""
        for r in self.held:
            r.first_token = self.now + launch_s
        self.held = []

    def _retire(self, finished: list[_Req]) -> None:
        for r in finished:
            r.finish = self.now
            self.used -= r.prompt + r.generated
            self.running.remove(r)
            if r.measured:
                self.done.append(r)
                self.measured_left -= 1
            if self.pending:
                i, o = self.pending.popleft()
                issued = _Req(self.now, i, max(1, round(i * self.share)), o)
                self._hand_over(issued)
                self.arrivals.append(issued)
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
    # Outside the engine steps: HTTP, tokenization, streaming, and the wait behind the front end's other work
    # at the tokens/s it handles (open loop: the offered rate; closed loop: what the run completed).
    span = max(r.finish for r in done) - min(r.arrival for r in done)
    rate = load.rate if load.rate is not None else len(done) / max(span, 1e-9)
    front_tok_s = rate * sum(r.prompt + r.output for r in sample) / len(sample)

    def extra(r: _Req) -> float:
        return sm.request_ms(r.prompt, front_tok_s)

    burst = None
    if load.clients is not None and steady_after is not None:
        steady = [r for r in done if 0.0 < r.arrival <= steady_after]
        if len(steady) >= 10:  # enough issued after the first wave for a steady state
            burst = percentiles([(r.first_token - r.arrival) * 1000 + extra(r) for r in done if r.arrival == 0.0])
            sample = steady
    ttft = [(r.first_token - r.arrival) * 1000 + extra(r) for r in sample]
    tpot = [((r.finish - r.first_token) / (r.output - 1) * 1000) if r.output > 1 else 0.0 for r in sample]
    e2e = [(r.finish - r.arrival) * 1000 + extra(r) for r in sample]
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
        growing_wait = late > 3 * early + 1000.0
        saturated = growing_wait or n_end > 1.5 * n_mid + 8
        near = analytic_capacity is None or load.rate >= NEAR_SATURATION * analytic_capacity
        if capacity_sim is not None and (saturated or near):
            capacity = capacity_sim()
            # The simulated capacity decides. Requests in the system at two instants is a noisy sign under
            # Poisson arrivals and long-tailed outputs (8B chat at 20 req/s, 72% of capacity: 19 then 62); it only
            # asks for the capacity to be simulated. Waits that keep growing are the queue itself.
            saturated = growing_wait or load.rate >= capacity
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
    preds = finish_predictions(sm, cand, inventory, slo, ttft, tpot, e2e, rps, mean_out, mean_in, avg_b, saturated,
                    dec_step, "simulated", capacity)
    # how many requests the percentiles come from: at light load a P99 is a sample's one or two slowest, below what a
    # long run sees (docs/accuracy.md, "The plan's own P99 at light load")
    n = len(sample)
    sources = {**preds.sources, "percentiles": f"{n:,} simulated requests per replica (P99: about the slowest "
                                               f"{max(1, round(n / 100))})"}
    update: dict = {"sources": sources}
    if burst is not None:
        update["burst_ttft_ms"] = burst
    return preds.model_copy(update=update)
