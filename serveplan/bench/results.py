"""What a benchmark produces: per-request records, latency statistics, summaries (overall, per prompt-length
class, per endpoint) and the whole result with its JSON form; `summarize` and the SLO checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serveplan.fileio import write_atomic
from serveplan.planner.spec import SLO, Traffic

Endpoint = Literal["completions", "chat"]
ErrorKind = Literal["connection", "http_4xx", "http_5xx", "timeout", "malformed", "disconnected",
                    "stream_error", "other"]
SizeClass = Literal["short", "medium", "long"]


def _pct(sorted_xs: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    k = (len(sorted_xs) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


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
    # The engine's own view of the request, where the server reports it (vLLM with
    # --enable-per-request-metrics): it splits the client's TTFT into queueing, prefill and the rest.
    server_queue_ms: float | None = Field(default=None, description="Engine: queued to first scheduled.")
    server_prefill_ms: float | None = Field(default=None, description="Engine: first scheduled to first token.")
    server_decode_ms: float | None = Field(default=None, description="Engine: first token to last token.")
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
    served_output_tok_s: float | None = Field(default=None, description="Open loop: output tokens/s the server "
                                              "delivered while the load was on (served_tok_s); output_tok_s "
                                              "divides by the whole run, drain included.")
    served_rps: float | None = Field(default=None, description="Open loop: served_output_tok_s over the mean "
                                     "output length, the requests/s the server kept up with.")
    achieved_send_rps: float | None = Field(default=None, description="Requests sent per second.")
    concurrency_limit: int | None = None
    max_in_flight: int = 0
    mean_in_flight: float = 0.0
    server_queue_ms: LatencyStats | None = Field(default=None, description="The engine's queueing time per "
                                                 "request, where the server reported it.")
    server_prefill_ms: LatencyStats | None = Field(default=None, description="The engine's first-scheduled "
                                                   "to first-token time, where the server reported it.")
    frontend_ms: LatencyStats | None = Field(default=None, description="TTFT less the engine's queue and "
                                             "prefill: HTTP, tokenization, the hop to the engine and back, "
                                             "detokenization, the network, the client.")
    client_lag_ms: LatencyStats | None = Field(default=None, description="How late the load generator's "
                                               "event loop woke up (sampled every 5 ms): a busy client "
                                               "adds this much to the latencies it measures.")


    def latency_rows(self) -> list[tuple[str, LatencyStats]]:
        """The latency rows a table shows: TTFT, TPOT, ITL, E2E, and TTFT's parts where the server reported
        its per-request timings."""
        parts = [(name, st) for name, st in ((" TTFT: engine queue", self.server_queue_ms),
                                             (" TTFT: engine prefill", self.server_prefill_ms),
                                             (" TTFT: frontend + network", self.frontend_ms)) if st is not None]
        return [("TTFT", self.ttft_ms), *parts, ("TPOT", self.tpot_ms), ("ITL", self.itl_ms), ("E2E", self.e2e_ms)]


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
    # seconds of the same load sent before the measured run and left out of every figure (engines compile kernels
    # for batch shapes the first time they meet them; see loadgen.run_bench)
    warmup_s: float = 0.0


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


def _meets_slo(r: RequestRecord, slo: SLO) -> bool:
    if not r.ok:
        return False
    for metric, _p, limit in slo.latency_targets():
        v = getattr(r, f"{metric}_ms")
        if v is not None and v > limit:
            return False
    return True


def served_tok_s(spans: list[tuple[float, float, float, int]]) -> float | None:
    """Output tokens/s a server delivered while an open loop's load was on, from (start s, first token s, last
    token s, output tokens) per successful request: from a third of the arrival window to the last arrival, each
    request's tokens spread evenly between its first and its last token, only the share inside the window
    counted. A run's tokens over its whole span count the drain of its last long outputs, so a server that kept up
    reads low (8 req/s offered, 6.3 "served"); counting whole requests that finish inside the window reads low too
    when requests last a large part of it (a 70B at 4 req/s: 20 s requests in a 40 s window). This reads the
    offered rate back when the server keeps up, and what it served when it does not."""
    if not spans:
        return None
    t_end = max(start for start, _, _, _ in spans)
    t0 = t_end / 3
    if t_end <= t0:
        return None
    tokens = 0.0
    for _, first, last, n in spans:
        if last <= first:  # one token: it counts where it landed
            tokens += n if t0 <= last <= t_end else 0
            continue
        tokens += n * max(0.0, min(last, t_end) - max(first, t0)) / (last - first)
    return tokens / (t_end - t0)


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
    if offered_rps is not None and ok:
        served = served_tok_s([(r.start_s, r.start_s + (r.ttft_ms or 0.0) / 1000, r.start_s + (r.e2e_ms or 0.0) / 1000,
                                r.output_tokens) for r in ok])
        if served is not None and tout > 0:
            s.served_output_tok_s, s.served_rps = served, served / (tout / len(ok))
    timed = [r for r in ok if r.server_queue_ms is not None and r.server_prefill_ms is not None]
    if timed:
        s.server_queue_ms = LatencyStats.of([r.server_queue_ms for r in timed])
        s.server_prefill_ms = LatencyStats.of([r.server_prefill_ms for r in timed])
        s.frontend_ms = LatencyStats.of([r.ttft_ms - r.server_queue_ms - r.server_prefill_ms for r in timed])
    if slo is not None:
        good = sum(_meets_slo(r, slo) for r in ok)
        s.goodput_rps = good / d
        s.slo_attainment = good / len(done) if done else None
        s.slo_met = slo_checks(s, slo)
    return s


TEXTLESS_SHARE = 0.05  # text-less streams at or above this share of the finished requests get a note
TEXTLESS_ERROR = "no content tokens"  # in the error of a stream that ended without text (sse.stream_request)


def is_textless(error: str | None) -> bool:
    """Whether a request's error says its stream carried tokens but no text."""
    return TEXTLESS_ERROR in (error or "")

# The front end's part of TTFT (TTFT less the engine's own queue and prefill times) at P90 above this many ms and
# above FRONTEND_OVER_ENGINE x the engine's queue + prefill at P90: the requests waited before the engine saw them.
FRONTEND_NOTE_MS, FRONTEND_OVER_ENGINE = 250.0, 2.0


def summary_notes(s: BenchSummary, recs: list[RequestRecord]) -> list[str]:
    """What a run says beside its figures: streams that carried no text (the figures leave them out), and requests
    held before the engine's scheduler took them in. Session 29 (docs/accuracy.md):
    Gemma-2-27B from dummy weights streamed special tokens only on 42% of its requests, and at 6 req/s TTFT's
    front-end part reached 2,446 ms at P90 with vLLM's queue empty and its API server at a full core."""
    notes = []
    finished = [r for r in recs if not r.cancelled]
    textless = sum(1 for r in finished if not r.ok and is_textless(r.error))
    if finished and textless >= TEXTLESS_SHARE * len(finished):
        notes.append(f"{textless} of {len(finished)} streams ({textless / len(finished):.0%}) carried tokens but no "
                     "text (special tokens only: dummy weights, or a tokenizer or chat template that does not match "
                     "the model): the figures are of the other requests, though the server generated theirs too")
    front, queue, prefill = s.frontend_ms, s.server_queue_ms, s.server_prefill_ms
    if front is not None and front.p90 is not None:  # summarize sets the three together, from the same requests
        engine = queue.p90 + prefill.p90  # type: ignore[union-attr, operator]
        if front.p90 > FRONTEND_NOTE_MS and front.p90 > FRONTEND_OVER_ENGINE * engine:
            notes.append(f"the requests waited before the engine's scheduler took them in: TTFT less the engine's "
                         f"queue and prefill times reached {front.p90:,.0f} ms at P90, against {queue.p90:,.1f} ms "
                         f"queued and {prefill.p90:,.0f} ms of prefill; the API server (one process unless vLLM's "
                         "--api-server-count adds more), the network, or an engine loop held up by its own work (a "
                         "kernel compile) kept them")
    return notes


def slo_checks(s: BenchSummary, slo: SLO) -> dict[str, bool]:
    """Every SLO target judged on the aggregate percentiles of a summary (False where not measured)."""
    out = {}
    for metric, p, limit in slo.latency_targets():
        v = getattr(s, f"{metric}_ms").at(p)
        out[f"{metric}_{p}_ms"] = v is not None and v <= limit
    if slo.min_throughput_tok_s is not None:
        out["min_throughput_tok_s"] = s.output_tok_s >= slo.min_throughput_tok_s
    return out


def read_bench_summary(path: str | Path) -> tuple[BenchSummary, str | None]:
    """The one reader of bench JSON: `bench -o` (a BenchResult, or a --sweep file's last point), `verify`'s
    verify.json (its `measured` summary) or `vllm bench serve --save-result`; returns the summary and the model
    name the benchmark asked for."""
    from pydantic import ValidationError

    from serveplan.errors import ConfigError, validation_sentence
    from serveplan.fileio import read_document

    doc = read_document(path, "bench result")
    if doc.get("kind") == "serveplan-verify":
        try:
            return BenchSummary.model_validate(doc.get("measured")), (doc.get("bench_args") or {}).get("model")
        except ValidationError as e:
            raise ConfigError(f"verify result '{path}' has no measured summary this serveplan reads: "
                              f"{validation_sentence(e).removeprefix('Invalid configuration: ')}") from None
    if "points" in doc and isinstance(doc["points"], list) and doc["points"]:
        doc = doc["points"][-1]
    if "summary" in doc:
        try:
            res = BenchResult.model_validate(doc)
        except ValidationError as e:
            raise ConfigError(f"bench result '{path}' is not a `bench -o` result of this serveplan: "
                              f"{validation_sentence(e).removeprefix('Invalid configuration: ')}") from None
        return res.summary, res.args.model
    from serveplan.bench.report import load_vllm_bench_json

    return load_vllm_bench_json(path), doc.get("model_id")
