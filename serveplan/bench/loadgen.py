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

Entry points: `run_bench` (one load point), `sweep` (several), `render_table` (rich), `BenchResult.write_json`;
`serveplan.bench.report` writes the HTML report and reads `vllm bench serve --save-result` JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from serveplan.errors import ConfigError
from serveplan.fileio import write_atomic
from serveplan.planner.spec import SLO, Traffic

Endpoint = Literal["completions", "chat"]
ErrorKind = Literal["connection", "http_4xx", "http_5xx", "timeout", "malformed", "disconnected",
                    "stream_error", "other"]
SizeClass = Literal["short", "medium", "long"]

DEFAULT_NUM_REQUESTS = 200
APPROX_NOTE = ("prompts are random common English words from a fixed vocabulary, one word per target "
               "token (about 1 token per word for Llama-3 / GPT-style BPE and the fake engine); the "
               "server's usage.prompt_tokens, where reported, is what the figures use")
TOKENIZER_NOTE = "prompts are random words cut to the exact target length with the model's tokenizer"

# Common English words that are each one token (with their leading space) in Llama-3 and GPT-4 style BPE.
_VOCAB = tuple("""
the of and to in is was for on that with as by at from his her they this which have are not be had
one all their were been has but more when who will out there about would into only some other time
than them these two may its first new also after over such most made where many before through back
much good well year work world life even down just part state each under long right great never being
still same last three high place own again every small both house found since off water old under
light line form city open point game book case group room side night hand head home music school order
road power money story fact month lot study word line week night body news eye face river plan table
land party level voice field door film paper space ground wind fire sea king town early rate south north
""".split())


# ----------------------------------------------------------------------------------------------- models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyStats(_Model):
    """Percentiles of one latency metric, in ms; None where there were no samples (or the source lacks it)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    def at(self, p: str) -> float | None:
        return getattr(self, p)

    @classmethod
    def of(cls, values: list[float]) -> "LatencyStats":
        if not values:
            return cls()
        xs = sorted(values)
        return cls(count=len(xs), mean=sum(xs) / len(xs), p50=_pct(xs, 50), p90=_pct(xs, 90),
                   p99=_pct(xs, 99), max=xs[-1])


class RequestRecord(_Model):
    """One request as the client saw it. Times in ms; start_s from the start of the run."""

    index: int
    url: str
    start_s: float
    queued_ms: float = Field(default=0.0, description="Open loop with a concurrency cap: time waiting "
                             "for a free slot before sending (not in TTFT/E2E).")
    input_len: int = Field(description="Target prompt length, sampled from traffic.input_len.")
    output_len: int = Field(description="Target output length (max_tokens), from traffic.output_len.")
    size_class: SizeClass = "short"
    prompt_tokens: int | None = Field(default=None, description="usage.prompt_tokens where the server "
                                      "reported it, else the local count (tokenizer or approximation).")
    prompt_tokens_reported: bool = False
    output_tokens: int = 0
    output_tokens_reported: bool = False
    chunks: int = Field(default=0, description="Streamed chunks that carried content.")
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list, description="Gaps between content chunks.")
    ok: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    cancelled: bool = Field(default=False, description="In flight when the run was interrupted; left "
                            "out of every figure.")


class ClassSummary(_Model):
    """Latencies of one prompt-length class (terciles of the sampled input lengths)."""

    name: SizeClass
    input_len_min: int | None = None
    input_len_max: int | None = None
    count: int = 0
    failed: int = 0
    ttft_ms: LatencyStats = LatencyStats()
    tpot_ms: LatencyStats = LatencyStats()
    e2e_ms: LatencyStats = LatencyStats()


class BenchSummary(_Model):
    """The figures of one run (or of one url of it), or of a `vllm bench serve` result file."""

    source: Literal["serveplan", "vllm-bench"] = "serveplan"
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_s: float = 0.0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    ttft_ms: LatencyStats = LatencyStats()
    tpot_ms: LatencyStats = LatencyStats()
    itl_ms: LatencyStats = LatencyStats()
    e2e_ms: LatencyStats = LatencyStats()
    requests_per_s: float = 0.0
    input_tok_s: float = 0.0
    output_tok_s: float = 0.0
    total_tok_s: float = 0.0
    goodput_rps: float | None = Field(default=None, description="Requests/s that met every SLO latency "
                                      "target (each a per-request limit); None without an SLO.")
    slo_attainment: float | None = Field(default=None, description="Share of requests (failed included) "
                                         "that met every SLO target.")
    slo_met: dict[str, bool] = Field(default_factory=dict, description="Each SLO target, judged on the "
                                     "aggregate percentile (and min_throughput_tok_s on output tok/s).")
    errors: dict[str, int] = Field(default_factory=dict, description="Failed requests by kind.")
    offered_rps: float | None = Field(default=None, description="Open loop: the configured rate.")
    achieved_send_rps: float | None = Field(default=None, description="Requests sent per second.")
    concurrency_limit: int | None = None
    max_in_flight: int = 0
    mean_in_flight: float = 0.0
    client_lag_ms: LatencyStats | None = Field(default=None, description="How late the load generator's "
                                               "event loop woke up (sampled every 5 ms): a busy client "
                                               "adds this much to the latencies it measures.")


class BenchArgs(_Model):
    urls: list[str]
    endpoint: Endpoint = "completions"
    model: str | None = None
    mode: Literal["closed", "open"]
    arrival: Literal["poisson", "constant", "bursty", "closed"]
    rate_rps: float | None = None
    concurrency: int | None = None
    num_requests: int | None = None
    duration_s: float | None = None
    seed: int = 0
    timeout_s: float = 600
    tokenizer: str | None = None


class BenchResult(_Model):
    """One load point: arguments, traffic, every request's timings and the summary."""

    tool: str = "serveplan-bench"
    started_at: str
    args: BenchArgs
    traffic: Traffic
    slo: SLO | None = None
    prompt_tokens_source: Literal["tokenizer", "approx"]
    prompt_note: str = ""
    interrupted: bool = False
    notes: list[str] = Field(default_factory=list)
    tercile_bounds: tuple[float, float] | None = Field(default=None, description="Input lengths that "
                                                       "split short|medium and medium|long.")
    summary: BenchSummary
    per_url: dict[str, BenchSummary] = Field(default_factory=dict)
    classes: list[ClassSummary] = Field(default_factory=list)
    requests: list[RequestRecord] = Field(default_factory=list)

    @property
    def load(self) -> float:
        """The load this point ran at: requests/s (open loop) or concurrent clients (closed loop)."""
        return float(self.args.rate_rps if self.args.mode == "open" else self.args.concurrency or 0)

    @property
    def load_label(self) -> str:
        if self.args.mode == "open":
            return f"{self.args.rate_rps:g} req/s ({self.args.arrival})"
        return f"concurrency {self.args.concurrency}"

    def write_json(self, path: str | Path) -> Path:
        """Write the whole result as JSON, atomically (temp file + rename)."""
        return write_atomic(Path(path), self.model_dump_json(indent=1))

    @classmethod
    def read_json(cls, path: str | Path) -> "BenchResult":
        return cls.model_validate_json(Path(path).read_text())


# ----------------------------------------------------------------------------------------------- helpers
def _pct(sorted_xs: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    k = (len(sorted_xs) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def _endpoint_url(url: str, endpoint: Endpoint) -> str:
    u = url.rstrip("/")
    if u.endswith("/completions"):
        return u
    if u.endswith("/v1"):
        u = u[:-3]
    return u + ("/v1/chat/completions" if endpoint == "chat" else "/v1/completions")


def _base_url(url: str) -> str:
    u = url.rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions", "/v1"):
        if u.endswith(suffix):
            return u[: -len(suffix)]
    return u


class _PromptBuilder:
    """Builds a prompt of a target token length: exact with a local tokenizer, else approximate."""

    def __init__(self, tokenizer: str | None, seed: int, prefix_share: float):
        self.rng = random.Random(f"{seed}-prompts")
        self.tok = None
        self.note = APPROX_NOTE
        self.source: Literal["tokenizer", "approx"] = "approx"
        self.load_error: str | None = None
        if tokenizer:
            try:
                from transformers import AutoTokenizer  # optional, heavy: imported only when asked

                self.tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
                self.source, self.note = "tokenizer", f"{TOKENIZER_NOTE} ({tokenizer})"
            except Exception as e:  # missing package, no local copy, bad path
                self.load_error = (f"tokenizer {tokenizer!r} not usable ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}); {APPROX_NOTE}")
        self.prefix_share = prefix_share
        self._prefix_words = [self.rng.choice(_VOCAB) for _ in range(4096)] if prefix_share > 0 else []

    def _words(self, n: int, rng: random.Random) -> list[str]:
        return [rng.choice(_VOCAB) for _ in range(n)]

    def build(self, n_tokens: int) -> tuple[str, int]:
        """(prompt, local token count). A prefix_share of it is a prefix common to every request."""
        n_prefix = min(int(n_tokens * self.prefix_share), len(self._prefix_words))
        words = self._prefix_words[:n_prefix] + self._words(n_tokens - n_prefix, self.rng)
        if self.tok is None:
            return " ".join(words), len(words)
        # With a tokenizer: random token ids (special tokens excluded), decoded, re-encoded to the exact
        # length. Random words would map to one unknown token with small or synthetic vocabularies, making
        # every prompt alike and turning the test into a prefix-cache benchmark.
        prefix_ids = self.tok.encode(" ".join(words[:n_prefix]), add_special_tokens=False) if n_prefix else []
        ids = prefix_ids[:n_prefix] + self._random_ids(n_tokens - min(len(prefix_ids), n_prefix))
        text = self.tok.decode(ids)
        ids = self.tok.encode(text, add_special_tokens=False)
        while len(ids) < n_tokens:  # decoding merged some ids: top up
            text += " " + self.tok.decode(self._random_ids(n_tokens - len(ids) + 8))
            ids = self.tok.encode(text, add_special_tokens=False)
        ids = ids[:n_tokens]
        return self.tok.decode(ids), len(ids)

    def _random_ids(self, n: int) -> list[int]:
        special = set(getattr(self.tok, "all_special_ids", []) or [])
        vocab = len(self.tok)
        out: list[int] = []
        while len(out) < n:
            i = self.rng.randrange(vocab)
            if i not in special:
                out.append(i)
        return out


def _classify_exception(e: BaseException) -> tuple[ErrorKind, str]:
    msg = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return "timeout", msg if str(e) else "timeout"
    if isinstance(e, httpx.ConnectError):
        return "connection", msg
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "disconnected", msg
    if isinstance(e, httpx.TransportError):
        return "connection", msg
    if isinstance(e, _Malformed):
        return "malformed", str(e)
    if isinstance(e, _StreamError):
        return "stream_error", str(e)
    return "other", msg


class _Malformed(Exception):
    pass


class _StreamError(Exception):
    pass


_SSE_FIELDS = ("data", "event", "id", "retry")


def _parse_sse_line(bline: bytes, chat: bool) -> tuple[str | None, dict | None]:
    """One SSE line -> (event, usage): event is "content" (a chunk carrying text), "done", or None."""
    line = bline.rstrip(b"\r")
    if not line or line.startswith(b":"):
        return None, None
    field, sep, value = line.partition(b":")
    if not sep or field.decode(errors="replace") not in _SSE_FIELDS:
        raise _Malformed(f"malformed stream: not an SSE line: {line[:80]!r}")
    if field != b"data":
        return None, None
    data = value.strip()
    if data == b"[DONE]":
        return "done", None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise _Malformed(f"malformed stream: data is not JSON: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise _Malformed(f"malformed stream: data is not a JSON object: {data[:80]!r}")
    if chunk.get("error") and not chunk.get("choices"):
        err = chunk["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise _StreamError(f"error in stream: {str(msg)[:200]}")
    usage = chunk.get("usage") or None
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            raise _Malformed(f"malformed stream: a choice is not an object: {data[:80]!r}")
        if chat or "delta" in choice:
            d = choice.get("delta") or {}
            text = d.get("content") or d.get("reasoning_content") or d.get("reasoning")
        else:
            text = choice.get("text")
        if text:
            return "content", usage
    return None, usage


def _sample_len(dist, rng: random.Random) -> int:
    q = min(max(rng.random(), 1e-9), 1 - 1e-9)
    return max(1, int(round(dist.quantile(q))))


# ----------------------------------------------------------------------------------------------- runner
class _Run:
    def __init__(self, urls: list[str], traffic: Traffic, args: BenchArgs, slo: SLO | None,
                 progress: bool, extra_body: dict | None):
        self.urls, self.traffic, self.args, self.slo = urls, traffic, args, slo
        self.extra_body = extra_body or {}
        self.progress_on = progress
        self.len_rng = random.Random(args.seed)
        self.arr_rng = random.Random(f"{args.seed}-arrivals")
        self.prompts = _PromptBuilder(args.tokenizer, args.seed, traffic.prefix_share)
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
        self._progress = None
        self._ptask = None

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

    def _new_record(self, index: int) -> tuple[RequestRecord, dict]:
        in_len = _sample_len(self.traffic.input_len, self.len_rng)
        out_len = _sample_len(self.traffic.output_len, self.len_rng)
        prompt, local_tokens = self.prompts.build(in_len)
        url = self.urls[index % len(self.urls)]
        rec = RequestRecord(index=index, url=url, start_s=0.0, input_len=in_len, output_len=out_len,
                            prompt_tokens=local_tokens)
        body: dict[str, Any] = {"max_tokens": out_len, "min_tokens": out_len, "ignore_eos": True,
                                "stream": True, "stream_options": {"include_usage": True},
                                "temperature": 0.0}
        if self.args.model:
            body["model"] = self.args.model
        if self.args.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update(self.extra_body)
        return rec, {k: v for k, v in body.items() if v is not None}

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
                await self._send(client, rec, body)
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

    async def _send(self, client: httpx.AsyncClient, rec: RequestRecord, body: dict) -> None:
        # Build the request (JSON encoding of a long prompt included) before the clock starts.
        request = client.build_request("POST", _endpoint_url(rec.url, self.args.endpoint),
                                       content=json.dumps(body).encode(),
                                       headers={"content-type": "application/json"})
        t_start = time.perf_counter()
        rec.start_s = t_start - self.t0
        arrivals: list[float] = []
        usage: dict | None = None
        got_done = False
        t_done = 0.0
        chat = self.args.endpoint == "chat"
        try:
            async with asyncio.timeout(self.args.timeout_s):
                resp = await client.send(request, stream=True)
                try:
                    if resp.status_code >= 400:
                        text = (await resp.aread())[:300].decode(errors="replace").strip()
                        kind: ErrorKind = "http_5xx" if resp.status_code >= 500 else "http_4xx"
                        rec.error, rec.error_kind = f"HTTP {resp.status_code}: {text}", kind
                        return
                    buf = b""
                    async for raw in resp.aiter_bytes():
                        t_read = time.perf_counter()  # every event in this read arrived now
                        buf += raw
                        *lines, buf = buf.split(b"\n")
                        for bline in lines:
                            if got_done:
                                continue  # after [DONE]: drain the body, so the connection is reused
                            event, u = _parse_sse_line(bline, chat)
                            if u is not None:
                                usage = u
                            if event == "done":
                                got_done, t_done = True, t_read
                            elif event == "content":
                                arrivals.append(t_read)
                    if buf.strip() and not got_done:
                        _parse_sse_line(buf, chat)  # a last line without a newline: still checked
                finally:
                    await resp.aclose()
            if not got_done:
                raise _Malformed(f"malformed stream: ended without [DONE] after {len(arrivals)} chunks")
            if not arrivals:
                raise _Malformed("malformed stream: no content tokens")
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - every failure is a measurement, never a crash
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            rec.error_kind, rec.error = _classify_exception(e)
            rec.error = rec.error[:300]
            if arrivals:
                rec.ttft_ms = (arrivals[0] - t_start) * 1000
                rec.chunks = len(arrivals)
            return
        rec.ok = True
        rec.chunks = len(arrivals)
        rec.ttft_ms = (arrivals[0] - t_start) * 1000
        rec.e2e_ms = (t_done - t_start) * 1000
        rec.itl_ms = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
        if usage and usage.get("prompt_tokens") is not None:
            rec.prompt_tokens, rec.prompt_tokens_reported = int(usage["prompt_tokens"]), True
        if usage and usage.get("completion_tokens") is not None:
            rec.output_tokens, rec.output_tokens_reported = int(usage["completion_tokens"]), True
        else:
            rec.output_tokens = len(arrivals)
        if rec.output_tokens > 1:
            rec.tpot_ms = (rec.e2e_ms - rec.ttft_ms) / (rec.output_tokens - 1)

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
                rec, body = self._new_record(i)
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
                rec, body = self._new_record(issued)
                self._spawn(client, rec, body, sem)
                issued += 1
                t_next += self._next_gap(rate)
            pending = [t for t in self.tasks]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            stop_wait.cancel()

    # ---- progress
    def _start_progress(self) -> None:
        if not self.progress_on:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        total = self.args.num_requests if self.args.num_requests is not None else None
        self._progress = Progress(TextColumn("[bold]bench[/] {task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
        self._progress.start()
        self._ptask = self._progress.add_task(self._desc(), total=total)

    def _desc(self) -> str:
        return (f"{self.args.mode} {self.load_str()}  ok {self.done - self.failed}  "
                f"err {self.failed}  in-flight {self.in_flight}")

    def load_str(self) -> str:
        return (f"{self.args.rate_rps:g} req/s" if self.args.mode == "open"
                else f"x{self.args.concurrency}")

    def _update_progress(self) -> None:
        if self._progress is not None:
            self._progress.update(self._ptask, completed=self.done, description=self._desc())

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.update(self._ptask, completed=self.done, description=self._desc())
            self._progress.stop()
            self._progress = None

    # ---- main
    def _interrupt(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        self.stop.set()
        for t in list(self.tasks):
            t.cancel()

    async def run(self) -> "BenchResult":
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(self.args.timeout_s, connect=min(self.args.timeout_s, 30.0))
        handlers = self._install_signal_handlers()
        self._start_progress()
        try:
            async with httpx.AsyncClient(limits=limits, timeout=timeout, http2=False) as client:
                if not self.args.model:
                    self.args.model = await self._discover_model(client)
                await self._warm_connections(client)
                self.t0 = time.perf_counter()
                self._if_t = 0.0
                lag_task = asyncio.create_task(self._watch_lag())
                main = asyncio.ensure_future(
                    self._open(client, self.args.rate_rps, self.args.concurrency)
                    if self.args.mode == "open" else self._closed(client, self.args.concurrency or 1))
                try:
                    await asyncio.shield(main)
                except asyncio.CancelledError:
                    # Either our caller cancelled us, or SIGINT/SIGTERM cancelled the workers: stop, let
                    # the in-flight requests end as cancelled, and still return what was measured.
                    ct = asyncio.current_task()
                    if ct is not None and ct.cancelling():
                        ct.uncancel()
                    self._interrupt()
                    await asyncio.gather(main, return_exceptions=True)
                except Exception as e:  # a bug in a driver must not lose the measurements
                    self.notes.append(f"load generator stopped early: {type(e).__name__}: {e}")
                    self._interrupt()
                if self.interrupted:
                    leftover = [t for t in self.tasks]
                    for t in leftover:
                        t.cancel()
                    if leftover:
                        await asyncio.gather(*leftover, return_exceptions=True)
                self.t_end = self._now()
                self._inflight(0)
                lag_task.cancel()
        finally:
            self._stop_progress()
            self._restore_signal_handlers(handlers)
        return self._result(started)

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

    def _install_signal_handlers(self) -> list:
        installed: list = []
        if threading.current_thread() is not threading.main_thread():
            return installed
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                prev = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._interrupt)
                installed.append((sig, prev))
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return installed

    def _restore_signal_handlers(self, installed: list) -> None:
        loop = asyncio.get_running_loop()
        for sig, prev in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)

    # ---- results
    def _result(self, started: str) -> "BenchResult":
        recs = self.records
        bounds = None
        if recs:
            lens = sorted(r.input_len for r in recs)
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
        if summary.client_lag_ms.p99 is not None and summary.client_lag_ms.p99 > 5:
            self.notes.append(f"the load generator itself was busy (event-loop lag P99 "
                              f"{summary.client_lag_ms.p99:.1f} ms): measured latencies include up to "
                              "that much client-side delay; use fewer clients per process or a faster host")
        per_url = {}
        if len(self.urls) > 1:
            for u in self.urls:
                per_url[u] = summarize([r for r in recs if r.url == u], duration, self.slo)
        classes = []
        for name in ("short", "medium", "long"):
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


def _meets_slo(r: RequestRecord, slo: SLO) -> bool:
    if not r.ok:
        return False
    for metric, _p, limit in slo.latency_targets():
        v = getattr(r, f"{metric}_ms")
        if v is not None and v > limit:
            return False
    return True


def summarize(recs: list[RequestRecord], duration_s: float, slo: SLO | None = None, *,
              offered_rps: float | None = None, concurrency_limit: int | None = None) -> BenchSummary:
    """The summary of a set of request records over a run of duration_s seconds."""
    done = [r for r in recs if not r.cancelled]
    ok = [r for r in done if r.ok]
    failed = [r for r in done if not r.ok]
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.error_kind or "other"] = errors.get(r.error_kind or "other", 0) + 1
    d = max(duration_s, 1e-9)
    tin = sum(r.prompt_tokens or 0 for r in ok)
    tout = sum(r.output_tokens for r in ok)
    starts = sorted(r.start_s for r in recs)
    send_rps = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] \
        else None
    s = BenchSummary(
        completed=len(ok), failed=len(failed), cancelled=len(recs) - len(done), duration_s=duration_s,
        total_input_tokens=tin, total_output_tokens=tout,
        ttft_ms=LatencyStats.of([r.ttft_ms for r in ok]),
        tpot_ms=LatencyStats.of([r.tpot_ms for r in ok if r.tpot_ms is not None]),
        itl_ms=LatencyStats.of([x for r in ok for x in r.itl_ms]),
        e2e_ms=LatencyStats.of([r.e2e_ms for r in ok]),
        requests_per_s=len(ok) / d, input_tok_s=tin / d, output_tok_s=tout / d, total_tok_s=(tin + tout) / d,
        errors=dict(sorted(errors.items())), offered_rps=offered_rps, achieved_send_rps=send_rps,
        concurrency_limit=concurrency_limit)
    if slo is not None:
        good = sum(_meets_slo(r, slo) for r in ok)
        s.goodput_rps = good / d
        s.slo_attainment = good / len(done) if done else None
        s.slo_met = slo_checks(s, slo)
    return s


def slo_checks(s: BenchSummary, slo: SLO) -> dict[str, bool]:
    """Every SLO target judged on the aggregate percentiles of a summary (False where not measured)."""
    out = {}
    for metric, p, limit in slo.latency_targets():
        v = getattr(s, f"{metric}_ms").at(p)
        out[f"{metric}_{p}_ms"] = v is not None and v <= limit
    if slo.min_throughput_tok_s is not None:
        out["min_throughput_tok_s"] = s.output_tok_s >= slo.min_throughput_tok_s
    return out


# ----------------------------------------------------------------------------------------------- API
def _resolve_args(urls, traffic, model, num_requests, duration_s, rate_rps, concurrency, seed, timeout_s,
                  tokenizer, endpoint) -> BenchArgs:
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
                     seed=seed, timeout_s=timeout_s, tokenizer=tokenizer)


async def run_bench_async(urls: list[str], traffic: Traffic, *, model: str | None = None,
                          num_requests: int | None = None, duration_s: float | None = None,
                          rate_rps: float | None = None, concurrency: int | None = None, seed: int = 0,
                          slo: SLO | None = None, timeout_s: float = 600, tokenizer: str | None = None,
                          endpoint: Endpoint = "completions", progress: bool = True,
                          extra_body: dict | None = None, output: str | Path | None = None) -> BenchResult:
    """`run_bench` inside a running event loop. Cancelling it stops the run and still returns the result."""
    args = _resolve_args(urls, traffic, model, num_requests, duration_s, rate_rps, concurrency, seed,
                         timeout_s, tokenizer, endpoint)
    result = await _Run(args.urls, traffic, args, slo, progress, extra_body).run()
    if output is not None:
        result.write_json(output)
    return result


def run_bench(urls: list[str], traffic: Traffic, *, model: str | None = None, num_requests: int | None = None,
              duration_s: float | None = None, rate_rps: float | None = None, concurrency: int | None = None,
              seed: int = 0, slo: SLO | None = None, timeout_s: float = 600, tokenizer: str | None = None,
              endpoint: Endpoint = "completions", progress: bool = True, extra_body: dict | None = None,
              output: str | Path | None = None) -> BenchResult:
    """Benchmark one load point against one or more replicas (round-robin) of an OpenAI-compatible server.

    Load: `rate_rps` = open loop at that rate (the traffic's arrival process: poisson, constant or bursty;
    a `concurrency` given too caps requests in flight); `concurrency` alone = closed loop with that many
    clients; neither = the traffic's own load. Stops after `num_requests` and/or `duration_s` (default
    200 requests). Lengths come from the traffic's distributions, seeded by `seed`. Requests ask for
    exactly the sampled output length (max_tokens = min_tokens, ignore_eos: vLLM and SGLang accept
    them); `extra_body` adds or overrides request fields, and a None value removes one (e.g.
    {"min_tokens": None, "ignore_eos": None} for a server that rejects them). Errors are counted, never raised. SIGINT/SIGTERM (or cancellation of the async form)
    stops the run: in-flight requests are cancelled and left out, and the result comes back with
    interrupted=True. With `output`, the JSON is written there (also when interrupted).
    """
    coro = run_bench_async(urls, traffic, model=model, num_requests=num_requests, duration_s=duration_s,
                           rate_rps=rate_rps, concurrency=concurrency, seed=seed, slo=slo,
                           timeout_s=timeout_s, tokenizer=tokenizer, endpoint=endpoint, progress=progress,
                           extra_body=extra_body, output=output)
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


# ----------------------------------------------------------------------------------------------- table
def fmt_num(v: float | None, digits: int = 1) -> str:
    """A number for a table cell: thousands separators, "-" when missing."""
    return "-" if v is None else f"{v:,.{digits}f}"


def latency_table(s: BenchSummary, title: str):  # noqa: ANN201 (rich Table, imported lazily)
    """TTFT / TPOT / ITL / E2E percentiles of a summary, as a rich table."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("metric (ms)")
    for c in ("P50", "P90", "P99", "mean", "n"):
        t.add_column(c, justify="right")
    for name, st in (("TTFT", s.ttft_ms), ("TPOT", s.tpot_ms), ("ITL", s.itl_ms), ("E2E", s.e2e_ms)):
        t.add_row(name, fmt_num(st.p50), fmt_num(st.p90), fmt_num(st.p99), fmt_num(st.mean), str(st.count))
    return t


def render_table(result: BenchResult, console=None) -> None:
    """Print a result as rich tables: latencies, throughput, errors, per-class and per-url figures."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = result.summary
    title = (f"bench {result.load_label} on {len(result.args.urls)} url(s)"
             f"{'  [bold red]INTERRUPTED[/]' if result.interrupted else ''}")
    console.print(latency_table(s, title))

    t2 = Table(show_header=False, box=None)
    t2.add_column(style="bold")
    t2.add_column(justify="right")
    t2.add_row("requests ok / failed", f"{s.completed} / {s.failed}"
               + (f"  ({s.cancelled} cancelled)" if s.cancelled else ""))
    t2.add_row("duration", f"{s.duration_s:.1f} s")
    t2.add_row("requests/s", fmt_num(s.requests_per_s, 2))
    t2.add_row("output tok/s", fmt_num(s.output_tok_s))
    t2.add_row("input tok/s", fmt_num(s.input_tok_s))
    if s.goodput_rps is not None:
        t2.add_row("goodput req/s (SLO)", f"{s.goodput_rps:.2f}  ({(s.slo_attainment or 0) * 100:.0f}% met)")
    t2.add_row("in flight max / mean", f"{s.max_in_flight} / {s.mean_in_flight:.1f}")
    if s.achieved_send_rps is not None and result.args.mode == "open":
        t2.add_row("sent req/s (offered)", f"{s.achieved_send_rps:.2f} ({fmt_num(s.offered_rps, 2)})")
    if s.errors:
        t2.add_row("errors", ", ".join(f"{k} {v}" for k, v in s.errors.items()))
    if s.slo_met:
        t2.add_row("SLO", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in s.slo_met.items()))
    t2.add_row("prompt tokens", result.prompt_tokens_source)
    console.print(t2)

    if result.classes:
        t3 = Table(title="by prompt length (terciles of sampled input lengths)", title_justify="left")
        for c in ("class", "input len", "n", "failed", "TTFT P50", "TTFT P99", "TPOT P99", "E2E P99"):
            t3.add_column(c, justify="right" if c != "class" else "left")
        for c in result.classes:
            rng = "-" if c.input_len_min is None else f"{c.input_len_min}-{c.input_len_max}"
            t3.add_row(c.name, rng, str(c.count), str(c.failed), fmt_num(c.ttft_ms.p50), fmt_num(c.ttft_ms.p99),
                       fmt_num(c.tpot_ms.p99), fmt_num(c.e2e_ms.p99))
        console.print(t3)
    if result.per_url:
        t4 = Table(title="per url", title_justify="left")
        for c in ("url", "ok", "failed", "req/s", "out tok/s", "TTFT P99", "TPOT P99", "E2E P99"):
            t4.add_column(c, justify="right" if c != "url" else "left")
        for u, us in result.per_url.items():
            t4.add_row(u, str(us.completed), str(us.failed), fmt_num(us.requests_per_s, 2), fmt_num(us.output_tok_s),
                       fmt_num(us.ttft_ms.p99), fmt_num(us.tpot_ms.p99), fmt_num(us.e2e_ms.p99))
        console.print(t4)
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}")


def render_sweep_table(results: list[BenchResult], console=None) -> None:
    """One row per load point."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="sweep", title_justify="left")
    for c in ("load", "ok", "failed", "req/s", "out tok/s", "goodput", "TTFT P50", "TTFT P99", "TPOT P50",
              "TPOT P99", "E2E P99"):
        t.add_column(c, justify="right" if c != "load" else "left")
    for r in results:
        s = r.summary
        t.add_row(r.load_label + (" (interrupted)" if r.interrupted else ""), str(s.completed), str(s.failed),
                  fmt_num(s.requests_per_s, 2), fmt_num(s.output_tok_s), fmt_num(s.goodput_rps, 2), fmt_num(s.ttft_ms.p50),
                  fmt_num(s.ttft_ms.p99), fmt_num(s.tpot_ms.p50), fmt_num(s.tpot_ms.p99), fmt_num(s.e2e_ms.p99))
    console.print(t)
