"""Load generator for any OpenAI-compatible endpoint: measures TTFT, TPOT, ITL and E2E per request.

Why built in rather than GuideLLM or locust: serveplan has to replay the planner's own Traffic (its
length distributions, arrival process, closed or open loop) and compare what it measures with what the
planner predicted, so the generator takes a Traffic directly instead of a translation of it into another
tool's flags. It records the arrival time of every streamed token over SSE, which gives ITL and TPOT per
request and per prompt-length class (so starvation of long prompts shows), where locust only times whole
HTTP requests and knows nothing of tokens. It needs only httpx and rich, which serveplan already uses:
GuideLLM's own dependencies include torch, transformers and datasets, far heavier than a benchmark client
needs. Prompt lengths use the model's tokenizer when `transformers` and a local copy of it are present,
and otherwise a stated approximation; the server's reported usage.prompt_tokens is what gets reported.
Request bodies (serveplan.bench.requests) are built before the clock starts, in a worker thread so that
Ctrl-C still stops it: a slow tokenizer then costs time up front, reported in the notes, instead of delaying
arrivals mid-run.

Entry points: `run_bench` (one load point), `sweep` (several), `render_table` (rich), `BenchResult.write_json`;
`serveplan.bench.report` writes the HTML report and reads `vllm bench serve --save-result` JSON.
"""

from __future__ import annotations

import asyncio
import os
import contextlib
import math
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from serveplan.bench.requests import DEFAULT_NUM_REQUESTS, RequestSource
from serveplan.bench.results import (BenchArgs, BenchResult, ClassSummary, Endpoint, LatencyStats,
                                     RequestRecord, _pct, summarize, summary_notes)
from serveplan.bench.interactive import ProgressBar, on_interrupt, restore_signals
from serveplan.bench.sse import _base_url, stream_request
from serveplan.errors import ConfigError
from serveplan.planner.spec import SLO, Traffic

PREPARE_NOTE_S = 2.0  # preparation slower than this is reported in the notes
WARMUP_SEED = 1_000_003  # the warm-up's lengths and arrivals: another sample than the measured run's


# ----------------------------------------------------------------------------------------------- runner
class _Run:
    def __init__(self, urls: list[str], traffic: Traffic, args: BenchArgs, slo: SLO | None,
                 progress: bool, extra_body: dict | None):
        self.urls, self.traffic, self.args, self.slo = urls, traffic, args, slo
        self.source = RequestSource(urls, traffic, args, extra_body)
        self.arr_rng = random.Random(f"{args.seed}-arrivals")
        self.prompts = self.source.prompts
        self.records: list[RequestRecord] = []
        self.notes: list[str] = []
        if self.prompts.load_error:
            self.notes.append(self.prompts.load_error)
        self.stop = asyncio.Event()
        self.interrupted = False
        self.in_flight = 0
        self.max_in_flight = 0
        self._if_area = 0.0
        self._if_t = 0.0
        self.t0 = 0.0
        self.t_end = 0.0
        self.done = 0
        self.failed = 0
        self.tasks: set[asyncio.Task] = set()
        self.lags: list[float] = []
        self.bar = ProgressBar(progress)
        self.prepare_s = 0.0

    # ---- bookkeeping
    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _inflight(self, delta: int) -> None:
        t = self._now()
        self._if_area += self.in_flight * (t - self._if_t)
        self._if_t = t
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _limit_reached(self, issued: int) -> bool:
        if self.stop.is_set():
            return True
        if self.args.num_requests is not None and issued >= self.args.num_requests:
            return True
        return self.args.duration_s is not None and self._now() >= self.args.duration_s

    async def _prepare(self) -> None:
        """Prepare the run's request bodies before the clock starts (RequestSource.pool_size says how many)."""
        n = self.source.pool_size()
        t = time.perf_counter()
        job = asyncio.ensure_future(asyncio.to_thread(
            self.source.build, n, lambda i, n: self.bar.update(0, f"preparing prompts {i}/{n}")))
        await self._guarded(job, "preparing prompts failed: ")  # a failing tokenizer: no run, still a result
        self.prepare_s = time.perf_counter() - t
        self.bar.update(0, self._desc())
        if self.prepare_s > PREPARE_NOTE_S and not self.interrupted:
            self.notes.append(f"building the prompts took {self.prepare_s:.1f} s for {len(self.source.pool)} "
                              f"request(s) ({self.prompts.source} lengths); done before the clock started, "
                              "so it is not in the figures")

    def _next_gap(self, rate: float) -> float:
        arrival = self.args.arrival
        if arrival == "constant":
            return 1.0 / rate
        if arrival == "bursty":
            shape = self.traffic.burstiness
            return self.arr_rng.gammavariate(shape, 1.0 / (rate * shape))
        return self.arr_rng.expovariate(rate)

    # ---- one request
    async def _one(self, client: httpx.AsyncClient, rec: RequestRecord, body: dict,
                   sem: asyncio.Semaphore | None) -> None:
        t_arrive = time.perf_counter()
        if sem is not None:
            await sem.acquire()
        try:
            rec.queued_ms = (time.perf_counter() - t_arrive) * 1000
            self._inflight(+1)
            try:
                await stream_request(client, rec, body, endpoint=self.args.endpoint,
                                     timeout_s=self.args.timeout_s, t0=self.t0)
            finally:
                self._inflight(-1)
        except asyncio.CancelledError:
            rec.cancelled, rec.ok = True, False
            rec.error, rec.error_kind = rec.error or "cancelled: run interrupted", None
            raise
        finally:
            if sem is not None:
                sem.release()
            if not rec.cancelled:
                self.done += 1
                self.failed += 0 if rec.ok else 1
                self._update_progress()

    # ---- drivers
    def _spawn(self, client, rec, body, sem) -> None:
        self.records.append(rec)
        task = asyncio.create_task(self._one(client, rec, body, sem))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _closed(self, client: httpx.AsyncClient, concurrency: int) -> None:
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while not self._limit_reached(issued):
                i = issued
                issued += 1
                rec, body = self.source.take(i)
                self.records.append(rec)
                await self._one(client, rec, body, None)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        self.tasks.update(workers)
        try:
            await asyncio.gather(*workers)
        finally:
            self.tasks.difference_update(workers)

    async def _open(self, client: httpx.AsyncClient, rate: float, cap: int | None) -> None:
        sem = asyncio.Semaphore(cap) if cap else None
        issued = 0
        t_next = 0.0
        stop_wait = asyncio.create_task(self.stop.wait())
        try:
            while not self._limit_reached(issued):
                delay = t_next - self._now()
                if delay > 0:
                    await asyncio.wait([stop_wait], timeout=delay)
                    if self._limit_reached(issued):
                        break
                rec, body = self.source.take(issued)
                self._spawn(client, rec, body, sem)
                issued += 1
                t_next += self._next_gap(rate)
            pending = [t for t in self.tasks]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            stop_wait.cancel()

    def _desc(self) -> str:
        return (f"{self.args.mode} {self.load_str()}  ok {self.done - self.failed}  "
                f"err {self.failed}  in-flight {self.in_flight}")

    def load_str(self) -> str:
        return (f"{self.args.rate_rps:g} req/s" if self.args.mode == "open"
                else f"x{self.args.concurrency}")

    def _update_progress(self) -> None:
        self.bar.update(self.done, self._desc())

    # ---- main
    def _interrupt(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        self.source.stop()
        self.stop.set()
        for t in list(self.tasks):
            t.cancel()

    async def run(self) -> "BenchResult":
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(self.args.timeout_s, connect=min(self.args.timeout_s, 30.0))
        handlers = on_interrupt(self._interrupt)
        self.bar.start(self.args.num_requests, self._desc())
        try:
            async with httpx.AsyncClient(limits=limits, timeout=timeout, http2=False,
                                         headers=auth_headers()) as client:
                if not self.args.model:
                    self.args.model = await self._discover_model(client)
                await self._prepare()  # the bodies need the model name; before the warm-up, which may idle out
                if not self.interrupted:  # else stopped while preparing: nothing was sent, nothing measured
                    await self._warm_connections(client)
                    await self._measure(client)
        finally:
            self.bar.stop(self.done, self._desc())
            restore_signals(handlers)
        return self._result(started)

    async def _guarded(self, job: asyncio.Future, failed: str) -> None:
        """Await `job`, shielded. If our caller cancels us, or SIGINT/SIGTERM cancels the work: stop, let it wind
        down (in-flight requests end as cancelled) and still return what there is. An exception in it becomes a
        note ("load generator stopped early: " + `failed` + the error) and stops the run."""
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            ct = asyncio.current_task()
            if ct is not None and ct.cancelling():
                ct.uncancel()
            self._interrupt()
            await asyncio.gather(job, return_exceptions=True)
        except Exception as e:
            self.notes.append(f"load generator stopped early: {failed}{type(e).__name__}: {e}")
            self._interrupt()

    async def _measure(self, client: httpx.AsyncClient) -> None:
        self.t0 = time.perf_counter()
        self._if_t = 0.0
        lag_task = asyncio.create_task(self._watch_lag())
        main = asyncio.ensure_future(
            self._open(client, self.args.rate_rps, self.args.concurrency)
            if self.args.mode == "open" else self._closed(client, self.args.concurrency or 1))
        await self._guarded(main, "")  # a bug in a driver must not lose the measurements
        if self.interrupted:
            leftover = [t for t in self.tasks]
            for t in leftover:
                t.cancel()
            if leftover:
                await asyncio.gather(*leftover, return_exceptions=True)
        self.t_end = self._now()
        self._inflight(0)
        lag_task.cancel()
        if self.source.built_lazily and self.prepare_s > PREPARE_NOTE_S:
            self.notes.append(f"{self.source.built_lazily} prompt(s) were built during the run, after the "
                              f"{len(self.source.pool)} prepared ones ran out: each held up the load generator")

    async def _watch_lag(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(max(0.0, (time.perf_counter() - t - 0.005) * 1000))

    async def _warm_connections(self, client: httpx.AsyncClient) -> None:
        """Open the connections the run will use before the clock starts, so that the first wave of
        requests does not pay for TCP setup in a burst (GET /v1/models, concurrently, per url)."""
        a = self.args
        n = a.concurrency if a.concurrency else math.ceil((a.rate_rps or 1) * 2)
        n = max(1, min(n, 64))
        urls = [_base_url(u) + "/v1/models" for u in dict.fromkeys(self.urls)]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*[client.get(u) for u in urls for _ in range(n)],
                                                  return_exceptions=True), timeout=10)

    async def _discover_model(self, client: httpx.AsyncClient) -> str | None:
        url = _base_url(self.urls[0]) + "/v1/models"
        try:
            r = await client.get(url, timeout=min(self.args.timeout_s, 10.0))
            r.raise_for_status()
            return str(r.json()["data"][0]["id"])
        except Exception as e:  # noqa: BLE001
            self.notes.append(f"could not read the model name from {url} ({type(e).__name__}); "
                              "requests were sent without one")
            return None

    # ---- results
    def _result(self, started: str) -> "BenchResult":
        recs = self.records
        bounds = None
        lens = sorted(r.input_len for r in recs)
        if lens and lens[0] < lens[-1]:  # one prompt length has no terciles: no by-length table then
            bounds = (_pct(lens, 100 / 3), _pct(lens, 200 / 3))
            for r in recs:
                r.size_class = ("short" if r.input_len <= bounds[0]
                                else "medium" if r.input_len <= bounds[1] else "long")
        duration = max(self.t_end, 1e-9)
        mean_if = self._if_area / duration if duration > 0 else 0.0
        summary = summarize(recs, duration, self.slo, offered_rps=self.args.rate_rps
                            if self.args.mode == "open" else None,
                            concurrency_limit=self.args.concurrency)
        summary.max_in_flight, summary.mean_in_flight = self.max_in_flight, mean_if
        summary.client_lag_ms = LatencyStats.of(self.lags)
        self.notes.extend(summary_notes(summary, recs))
        if summary.client_lag_ms.p99 is not None and summary.client_lag_ms.p99 > 5:
            self.notes.append(f"the load generator itself was busy (event-loop lag P99 "
                              f"{summary.client_lag_ms.p99:.1f} ms): measured latencies include up to "
                              "that much client-side delay; use fewer clients per process or a faster host")
        per_url = {}
        if len(self.urls) > 1:
            for u in self.urls:
                per_url[u] = summarize([r for r in recs if r.url == u], duration, self.slo)
        classes = []
        for name in ("short", "medium", "long") if bounds else ():
            rs = [r for r in recs if r.size_class == name and not r.cancelled]
            ok = [r for r in rs if r.ok]
            classes.append(ClassSummary(
                name=name, count=len(rs), failed=len(rs) - len(ok),
                input_len_min=min((r.input_len for r in rs), default=None),
                input_len_max=max((r.input_len for r in rs), default=None),
                ttft_ms=LatencyStats.of([r.ttft_ms for r in ok]),
                tpot_ms=LatencyStats.of([r.tpot_ms for r in ok if r.tpot_ms is not None]),
                e2e_ms=LatencyStats.of([r.e2e_ms for r in ok])))
        reported = sum(r.prompt_tokens_reported for r in recs if r.ok)
        if recs and any(r.ok for r in recs) and not reported:
            self.notes.append("the server reported no usage.prompt_tokens: prompt token figures are "
                              f"local counts ({self.prompts.source})")
        return BenchResult(started_at=started, args=self.args, traffic=self.traffic, slo=self.slo,
                           prompt_tokens_source=self.prompts.source, prompt_note=self.prompts.note,
                           interrupted=self.interrupted, notes=self.notes, tercile_bounds=bounds,
                           summary=summary, per_url=per_url, classes=classes, requests=recs)


# ----------------------------------------------------------------------------------------------- API
def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer $OPENAI_API_KEY` when that is set: what OpenAI clients send, and what vLLM's
    --api-key, SGLang's --api-key and a LiteLLM proxy's keys check. Read from the environment, never stored in
    the bench JSON."""
    key = os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _resolve_args(urls, traffic, model, num_requests, duration_s, rate_rps, concurrency, seed, timeout_s,
                  tokenizer, endpoint, warmup_s: float = 0.0) -> BenchArgs:
    if isinstance(urls, str):
        urls = [urls]
    if not urls:
        raise ConfigError("bench needs at least one url, e.g. --url http://localhost:8000.")
    if endpoint not in ("completions", "chat"):
        raise ConfigError(f"Unknown endpoint '{endpoint}'; use completions or chat.")
    if rate_rps is not None and rate_rps <= 0:
        raise ConfigError(f"rate_rps must be positive, got {rate_rps}.")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}.")
    if num_requests is not None and num_requests < 1:
        raise ConfigError(f"num_requests must be at least 1, got {num_requests}.")
    if duration_s is not None and duration_s <= 0:
        raise ConfigError(f"duration_s must be positive, got {duration_s}.")
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s}.")
    if warmup_s < 0:
        raise ConfigError(f"warmup_s must be 0 (no warm-up) or more seconds, got {warmup_s:g}.")
    if rate_rps is not None:  # explicit rate: open loop (a concurrency given too caps requests in flight)
        mode, rate, conc = "open", rate_rps, concurrency
    elif concurrency is not None:  # explicit concurrency only: closed loop
        mode, rate, conc = "closed", None, concurrency
    elif traffic.is_closed_loop:
        mode, rate, conc = "closed", None, traffic.concurrency
    else:
        mode, rate, conc = "open", traffic.rate_rps, traffic.concurrency
    arrival = "closed" if mode == "closed" else (traffic.arrival if traffic.arrival != "closed" else "poisson")
    if num_requests is None and duration_s is None:
        num_requests = DEFAULT_NUM_REQUESTS
    return BenchArgs(urls=list(urls), endpoint=endpoint, model=model, mode=mode, arrival=arrival,
                     rate_rps=rate, concurrency=conc, num_requests=num_requests, duration_s=duration_s,
                     seed=seed, timeout_s=timeout_s, tokenizer=tokenizer, warmup_s=warmup_s)


def _warmup_args(args: BenchArgs) -> BenchArgs:
    """The warm-up's load: the measured run's, for warmup_s seconds, on other lengths and arrivals (its own seed), so
    that the measured requests are the same sample with or without a warm-up."""
    return args.model_copy(update={"duration_s": args.warmup_s, "num_requests": None, "seed": args.seed + WARMUP_SEED,
                                   "warmup_s": 0.0})


def _warmup_note(warm: "BenchResult") -> str:
    s = warm.summary
    failed = f", {s.failed} failed" if s.failed else ""
    return (f"a {warm.args.duration_s:g}-s warm-up at the same load ({s.completed + s.failed} requests{failed}) ran "
            "first and is in no figure: engines compile kernels for batch shapes the first time they meet them "
            "(vLLM's fused MoE kernel stalled a fresh server's first ~25 s of load, docs/accuracy.md session 26)")


async def run_bench_async(urls: list[str], traffic: Traffic, *, model: str | None = None,
                          num_requests: int | None = None, duration_s: float | None = None,
                          rate_rps: float | None = None, concurrency: int | None = None, seed: int = 0,
                          slo: SLO | None = None, timeout_s: float = 600, tokenizer: str | None = None,
                          endpoint: Endpoint = "completions", progress: bool = True,
                          extra_body: dict | None = None, output: str | Path | None = None,
                          warmup_s: float = 0.0, on_measure: Callable[[], None] | None = None) -> BenchResult:
    """`run_bench` inside a running event loop. Cancelling it stops the run and still returns the result."""
    args = _resolve_args(urls, traffic, model, num_requests, duration_s, rate_rps, concurrency, seed,
                         timeout_s, tokenizer, endpoint, warmup_s)
    warm = None
    if args.warmup_s > 0:
        warm = await _Run(args.urls, traffic, _warmup_args(args), slo, progress, extra_body).run()
        args.model = args.model or warm.args.model  # discovered once
    run = _Run(args.urls, traffic, args, slo, progress, extra_body)
    if warm is not None and warm.interrupted:  # stopped while warming up: nothing was measured
        run.interrupted = True
        run.notes.append("interrupted during the warm-up: nothing was measured")
        result = run._result(datetime.now(timezone.utc).isoformat(timespec="seconds"))
    else:
        if on_measure is not None:  # the caller marks where the measured part starts (verify: the engines' logs)
            on_measure()
        result = await run.run()
        if warm is not None:
            result.notes.insert(0, _warmup_note(warm))
    if output is not None:
        result.write_json(output)
    return result


def run_bench(urls: list[str], traffic: Traffic, *, model: str | None = None, num_requests: int | None = None,
              duration_s: float | None = None, rate_rps: float | None = None, concurrency: int | None = None,
              seed: int = 0, slo: SLO | None = None, timeout_s: float = 600, tokenizer: str | None = None,
              endpoint: Endpoint = "completions", progress: bool = True, extra_body: dict | None = None,
              output: str | Path | None = None, warmup_s: float = 0.0,
              on_measure: Callable[[], None] | None = None) -> BenchResult:
    """Benchmark one load point against one or more replicas (round-robin) of an OpenAI-compatible server.

    Load: `rate_rps` = open loop at that rate (the traffic's arrival process: poisson, constant or bursty;
    a `concurrency` given too caps requests in flight); `concurrency` alone = closed loop with that many
    clients; neither = the traffic's own load. Stops after `num_requests` and/or `duration_s` (default
    200 requests). Lengths come from the traffic's distributions, seeded by `seed`. Requests ask for
    exactly the sampled output length (max_tokens = min_tokens, ignore_eos: vLLM and SGLang accept
    them); `extra_body` adds or overrides request fields, and a None value removes one (e.g.
    {"min_tokens": None, "ignore_eos": None} for a server that rejects them). Errors are counted, never raised. SIGINT/SIGTERM (or cancellation of the async form)
    stops the run: in-flight requests are cancelled and left out, and the result comes back with
    interrupted=True. With `output`, the JSON is written there (also when interrupted). `warmup_s` > 0 first sends
    the same load for that many seconds, lets it finish, and leaves it out of every figure (a note says so): an
    engine compiles kernels for batch shapes the first time it meets them, which a fresh server's first seconds of
    load pay and a running deployment does not. `on_measure` is called once, just before the measured part starts.
    """
    coro = run_bench_async(urls, traffic, model=model, num_requests=num_requests, duration_s=duration_s,
                           rate_rps=rate_rps, concurrency=concurrency, seed=seed, slo=slo,
                           timeout_s=timeout_s, tokenizer=tokenizer, endpoint=endpoint, progress=progress,
                           extra_body=extra_body, output=output, warmup_s=warmup_s, on_measure=on_measure)
    return asyncio.run(coro)


def sweep(urls: list[str], traffic: Traffic, *, rates: list[float] | None = None,
          concurrencies: list[int] | None = None, output_dir: str | Path | None = None,
          **kwargs: Any) -> list[BenchResult]:
    """Run `run_bench` at each rate (open loop) or each concurrency (closed loop), in the order given.

    Other keyword arguments go to `run_bench`. An interrupted point ends the sweep (its partial result is
    the last one returned). With `output_dir`, each point is written as bench-NN-rate<R>.json or bench-NN-c<C>.json.
    """
    if (rates is None) == (concurrencies is None):
        raise ConfigError("sweep needs either rates or concurrencies (not both).")
    points: list[dict] = ([{"rate_rps": r} for r in rates] if rates is not None
                          else [{"concurrency": c} for c in concurrencies])  # type: ignore[union-attr]
    if not points:
        raise ConfigError("sweep needs at least one rate or concurrency.")
    results = []
    for i, point in enumerate(points):
        drop = {"output", "rate_rps"} | ({"concurrency"} if "concurrency" in point else set())
        kw = {k: v for k, v in kwargs.items() if k not in drop}  # a concurrency with rates caps in-flight
        out = None
        if output_dir is not None:
            tag = f"rate{point['rate_rps']:g}" if "rate_rps" in point else f"c{point['concurrency']}"
            out = Path(output_dir) / f"bench-{i:02d}-{tag}.json"
        res = run_bench(urls, traffic, **point, **kw, output=out)
        results.append(res)
        if res.interrupted:
            break
    return results
