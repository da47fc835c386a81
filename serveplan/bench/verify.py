"""`verify DIR`: launch a plan, benchmark it at its planned load, and compare what was measured with what was predicted.

verify_plan() loads DIR/plan.yaml, starts the winner with the launcher's `launched()` context manager (the
engines are always stopped on leaving it, also on Ctrl-C / SIGTERM), runs the load generator against every
replica endpoint with the plan's own traffic at the planned operating point, prints a predicted-vs-measured
table and writes DIR/verify.json (atomically; the full bench result, every token gap included, goes to
DIR/verify-bench.json). `--rate` / `--concurrency` run at another load; the prediction is then re-estimated
for that load (estimate() on the plan's request with the new traffic and the winner's configuration) so that
predicted and measured always refer to the same load. A `--force` run on other GPUs than the plan's (all of one
catalog type) is re-estimated the same way for the GPU it runs on (ran_on_gpu), its configuration and pinned KV cache
the plan's.

verify.json (schema_version 1), the input calibration reads:

    schema_version      1
    kind                "serveplan-verify"
    created_at          ISO time the file was written
    plan_dir, plan_file where the plan came from
    engine, engine_version, gpu (catalog name), gpu_display, model (catalog name), model_hf_id,
    ran_on_gpu          the catalog GPU a --force run ran on where it is not the plan's (else null)
    served_model       what was served (checkpoint path or HF id) and the name requests used
    candidate          the winner's label; config: the winner's Candidate (tp, pp, replicas, dtypes, limits)
    num_gpus           GPUs of the whole deployment
    request            the plan's PlanRequest (model, inventory, traffic, slo, search, engine), as planned
    traffic            the Traffic actually benchmarked (the plan's, or with the overridden load)
    load               {mode: open|closed, rate_rps, concurrency, source: plan|override}
    prediction_source  "plan" (the plan's own winner), "re-estimated" (another load or GPU) or "estimated" (the plan
                       carried no predictions), or null when no prediction could be made (prediction_error)
    predicted          the planner's Predictions for that load (ttft_ms/tpot_ms/e2e_ms: {p50, p90, p99, mean},
                       throughput_tok_s, requests_per_s, …; the whole deployment), or null
    measured           the bench's BenchSummary over all replicas (ttft_ms/tpot_ms/itl_ms/e2e_ms:
                       {count, mean, p50, p90, p99, max}, requests_per_s, output_tok_s, input_tok_s, …)
    replayed           the step simulation replayed on the requests actually sent (each replica's own arrival
                       times and lengths, simulation.replay): ttft_ms/tpot_ms/e2e_ms {p50, p90, p99, mean}, or null.
                       Against `predicted` (a sample of the plan's traffic) it tells what the traffic changed from
                       what the model misses
    measured_per_url   one BenchSummary per replica endpoint (only with several replicas)
    classes            latencies by prompt-length tercile
    comparison         [{metric, predicted, measured, rel_error, replayed, sample_range}] for ttft_ms.{p50,p90,p99,mean},
                       tpot_ms.{p50,p90,p99,mean}, e2e_ms.{p50,p99}, output_tok_s, requests_per_s;
                       rel_error = (measured - predicted) / predicted, null where either is missing; an open
                       loop's measured output_tok_s / requests_per_s are what the server delivered while the
                       load was on (measured.served_output_tok_s / served_rps), not the run's whole span;
                       sample_range: a latency's [min, max] over five simulated runs of as many requests as this
                       one completed (the table shows it beside P90 and P99)
    completed, failed, errors ({kind: count})
    interrupted        the bench was stopped early (Ctrl-C / SIGTERM): the figures cover what finished
    requests           one compact row per request: url, input_len, output_len (targets), prompt_tokens,
                       output_tokens, ttft_ms, tpot_ms, e2e_ms, ok, error_kind, size_class
    bench_file         the full bench result's file name (next to verify.json)
    bench_args         the bench's arguments (urls, endpoint, mode, rate, concurrency, num_requests, seed, …)
    run                the launcher's RunRecord (commands, ports, pids, pgids, exit codes, status)
    notes              anything worth knowing (approximate prompt lengths, a failed re-estimate, …)

Exit codes of `verify`: 0 done; 2 bad arguments or plan; 4 the launch failed, or every request failed;
130 interrupted (verify.json is still written when the bench had started).
"""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from serveplan.errors import EXIT_LAUNCH_FAILED, ConfigError, ServeplanError

VERIFY_FILE = "verify.json"
BENCH_FILE = "verify-bench.json"
SCHEMA_VERSION = 1
EXIT_INTERRUPTED = 130
EXIT_ALL_FAILED = EXIT_LAUNCH_FAILED
# Seconds of the planned load sent before the measured run and in no figure. vLLM compiles its Triton fused MoE
# kernel for each new batch shape the first time it meets one: a fresh Mixtral FP8 server's first ~25 s at 8 req/s
# read TTFT P50 1-2.4 s against ~0.15 s after (docs/accuracy.md, session 26). The prediction is a warm deployment's.
DEFAULT_WARMUP_S = 30.0

# (key in comparison, label, predicted getter, measured getter)
_PCTS = ("p50", "p90", "p99", "mean")
COMPARED: list[tuple[str, str]] = (
    [(f"ttft_ms.{p}", f"TTFT {p.upper() if p != 'mean' else 'mean'} (ms)") for p in _PCTS]
    + [(f"tpot_ms.{p}", f"TPOT {p.upper() if p != 'mean' else 'mean'} (ms)") for p in _PCTS]
    + [("e2e_ms.p50", "E2E P50 (ms)"), ("e2e_ms.p99", "E2E P99 (ms)"),
       ("output_tok_s", "output tok/s"), ("requests_per_s", "requests/s")]
)


class Comparison(BaseModel):
    metric: str
    predicted: float | None = None
    measured: float | None = None
    rel_error: float | None = Field(default=None, description="(measured - predicted) / predicted.")
    replayed: float | None = Field(default=None, description="The model replayed on the requests actually sent.")
    sample_range: tuple[float, float] | None = Field(
        default=None, description="The latency's range over SAMPLE_SEEDS simulations of a run of this many requests "
        "(its lengths and arrivals drawn again from the traffic): how far a finite run's own sample moves it.")


class Load(BaseModel):
    mode: Literal["open", "closed"]
    rate_rps: float | None = None
    concurrency: int | None = None
    source: Literal["plan", "override"] = "plan"


class VerifyResult(BaseModel):
    """The verify.json document (see the module docstring for each key)."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "serveplan-verify"
    created_at: str
    plan_dir: str
    plan_file: str
    engine: str
    engine_version: str
    gpu: str
    gpu_display: str
    ran_on_gpu: str | None = Field(default=None, description="The catalog GPU a --force run ran on, where it is not "
                                   "the plan's: the prediction is then re-estimated for it.")
    model: str
    model_hf_id: str | None = None
    served_model: str | None = None
    candidate: str
    config: dict[str, Any]
    num_gpus: int
    request: dict[str, Any]
    traffic: dict[str, Any]
    load: Load
    prediction_source: Literal["plan", "re-estimated", "estimated"] | None = None
    prediction_error: str | None = None
    predicted: dict[str, Any] | None = None
    replayed: dict[str, Any] | None = None
    measured: dict[str, Any]
    measured_per_url: dict[str, dict[str, Any]] = Field(default_factory=dict)
    classes: list[dict[str, Any]] = Field(default_factory=list)
    comparison: list[Comparison] = Field(default_factory=list)
    completed: int = 0
    failed: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    interrupted: bool = False
    requests: list[dict[str, Any]] = Field(default_factory=list)
    bench_file: str = BENCH_FILE
    bench_args: dict[str, Any] = Field(default_factory=dict)
    run: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    path: str | None = Field(default=None, exclude=True, description="Where the document was written.")

    @property
    def all_failed(self) -> bool:
        return self.completed == 0 and self.failed > 0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_ALL_FAILED if self.all_failed else 0

    def compared(self, metric: str) -> Comparison:
        return next(c for c in self.comparison if c.metric == metric)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _lookup(doc: dict | None, key: str) -> float | None:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return float(node) if isinstance(node, (int, float)) else None


# An open loop's throughput as served while the load was on: the predictions are the steady state's, and the run's
# own figures divide by its whole span, drain included (a 70B on one H100 at 2 req/s: 1.10 req/s over the run, 1.60
# served while the load was on)
SERVED = {"output_tok_s": "served_output_tok_s", "requests_per_s": "served_rps"}


def compare(predicted: dict | None, measured: dict, replayed: dict | None = None,
            ranges: dict[str, tuple[float, float]] | None = None) -> list[Comparison]:
    """Predicted vs measured for every metric in COMPARED (predicted throughput_tok_s is output tok/s; an open
    loop's measured throughput is the served one, SERVED), with the replayed latencies and the latencies' sample
    ranges (sample_ranges) beside them."""
    out = []
    for key, _label in COMPARED:
        pkey = "throughput_tok_s" if key == "output_tok_s" else key
        p = _lookup(predicted, pkey)
        m = _lookup(measured, SERVED[key]) if key in SERVED else None  # None without served figures
        if m is None:
            m = _lookup(measured, key)
        err = (m - p) / p if p is not None and m is not None and p != 0 else None
        out.append(Comparison(metric=key, predicted=p, measured=m, rel_error=err, replayed=_lookup(replayed, key),
                              sample_range=(ranges or {}).get(key)))
    return out


# Simulations of a run of the measured size behind each latency's sample range. A P99 over a few hundred requests is
# its few slowest: session 21's 124-request run of the 70B AWQ plan read its TTFT P99 89% below the prediction and 3%
# from the model replayed on the same requests; five draws of that run's size spanned 1,121-1,830 ms.
SAMPLE_SEEDS = 5
SAMPLE_MAX_REQUESTS = 20_000  # past this a run's percentiles barely move with its sample: no ranges, no simulations
P99_FEW_REQUESTS = 1000  # below this a P99 is the run's one to nine slowest requests: verify says so in a note
_RANGED = [k for k, _ in COMPARED if k.startswith(("ttft_ms.", "tpot_ms.", "e2e_ms."))]


def outside_sample_range(comparison: list[Comparison]) -> list[str]:
    """A note for each TTFT / TPOT P99 measured outside its sample range: no run of this size the model drew came out
    that way, so the gap is the model's (or the traffic's: see the replayed column), not the sample's."""
    out = []
    for c in comparison:
        if c.metric in ("ttft_ms.p99", "tpot_ms.p99") and c.sample_range and c.measured is not None:
            lo, hi = c.sample_range
            if not lo <= c.measured <= hi:
                name = "TTFT" if c.metric.startswith("ttft") else "TPOT"
                out.append(f"{name} P99 measured {c.measured:,.1f} ms lies outside the {_fmt_range(lo, hi)} ms "
                           f"that {SAMPLE_SEEDS} simulated runs of this size gave: not the sample's spread")
    return out


def _fmt_range(lo: float, hi: float) -> str:
    """A latency range in whole ms from 100 ms on, in tenths below."""
    d = 0 if lo >= 100 else 1
    return f"{lo:,.{d}f}-{hi:,.{d}f}"


def _winner_model(plan, traffic):  # noqa: ANN001, ANN202
    """(request with this traffic, the winner's configuration, its step model, its memory), or None where the model
    cannot run it (an unknown GPU or engine term, a configuration that does not fit)."""
    from serveplan.planner.estimate import Scorer

    req = plan.request.model_copy(update={"traffic": traffic})
    cand = plan.winner.config
    try:
        scorer = Scorer(req)
        sm, mem = scorer.step_model(cand), scorer.memory(cand)
    except ServeplanError:
        return None
    return (req, cand, sm, mem) if mem.fits else None


def sample_ranges(plan, traffic, n_requests: int, seeds: int = SAMPLE_SEEDS) -> dict[str, tuple[float, float]] | None:  # noqa: ANN001
    """Each latency percentile's (min, max) over `seeds` simulations of a run of n_requests requests (the whole
    deployment's, split over the replicas), lengths and arrivals drawn again each time; None where the plan cannot
    be simulated."""
    from serveplan.planner.simulation import simulate

    if n_requests <= 0 or n_requests > SAMPLE_MAX_REQUESTS or seeds < 2:
        return None
    model = _winner_model(plan, traffic)
    if model is None:
        return None
    req, cand, sm, mem = model
    runs = [simulate(sm, cand, mem, traffic, req.slo, req.inventory,
                     n_requests=max(1, round(n_requests / cand.replicas)), seed=s, kv_block=req.engine.kv_block_size,
                     with_capacity=False, closed_loop="run").model_dump(mode="json") for s in range(seeds)]
    out = {}
    for key in _RANGED:
        vals = [v for v in (_lookup(r, key) for r in runs) if v is not None]
        if vals:
            out[key] = (min(vals), max(vals))
    return out


def replayed_latencies(plan, traffic, requests) -> dict | None:  # noqa: ANN001
    """The plan's winner replayed on the requests a bench sent (simulation.replay, each replica's own arrival times
    and lengths): {ttft_ms, tpot_ms, e2e_ms: {p50, p90, p99, mean}}, or None without any request or prediction."""
    from serveplan.planner.serving import percentiles
    from serveplan.planner.simulation import replay_replicas

    trace = [(r.url, r.start_s, r.input_len, r.output_len) for r in requests if r.ok and not r.cancelled]
    model = _winner_model(plan, traffic) if trace else None
    if model is None:
        return None
    req, cand, sm, mem = model
    out = replay_replicas(sm, cand, mem, trace, kv_block=req.engine.kv_block_size)
    return {"ttft_ms": percentiles([x.ttft_ms for x in out]).model_dump(),
            "tpot_ms": percentiles([x.tpot_ms for x in out if x.tpot_ms > 0]).model_dump(),
            "e2e_ms": percentiles([x.e2e_ms for x in out]).model_dump()}


# An open loop fell behind when it served below this share of its offered rate while its queue grew (the median TTFT
# of the last third of arrivals above QUEUE_GREW times the first third's). Either alone misleads: a minute of
# lognormal lengths reads 0.82-1.15 of the offered rate on servers that kept up (sessions 5-9), and a server at the
# edge of its KV cache queues in bursts and recovers (session 9's L1: 0.80, its late TTFT 1.4 times the early). Those
# that fell behind read 0.53-0.80 with their late TTFT 8-25 times the early one.
FELL_BEHIND = 0.85
QUEUE_GREW = 3.0


def fell_behind(s, requests) -> str | None:  # noqa: ANN001 (BenchSummary, RequestRecords)
    """A note when an open loop's server did not keep up with the offered rate: its latencies are then those of a
    queue that grew through the run, and say little about the configuration at a rate it can serve."""
    if s.offered_rps is None or s.served_rps is None or s.served_rps >= FELL_BEHIND * s.offered_rps:
        return None
    ok = sorted((r for r in requests if r.ok and r.ttft_ms is not None), key=lambda r: r.start_s)
    third = len(ok) // 3
    if third < 5:
        return None
    early = statistics.median(r.ttft_ms for r in ok[:third])
    late = statistics.median(r.ttft_ms for r in ok[-third:])
    if late < QUEUE_GREW * early:
        return None
    return (f"the server fell behind: it served {s.served_rps:.2f} req/s of the {s.offered_rps:g} offered while the "
            f"load was on, and the median TTFT grew from {early:,.0f} ms (first third of arrivals) to {late:,.0f} ms "
            f"(last third), so the latencies above are those of a growing queue; verify again at a rate below "
            f"{s.served_rps:.2f} (--rate) to measure the configuration itself")


def log_offsets(rec) -> dict[str, int]:  # noqa: ANN001 (RunRecord)
    """Each replica log's size now: where the measured part of a run starts in it."""
    from serveplan.launcher.logwatch import log_size

    return {r.log: log_size(r.log) for r in rec.replicas if r.log}


def compile_stalls(rec, offsets: dict[str, int]) -> str | None:  # noqa: ANN001 (RunRecord)
    """A note when an engine logged a kernel compiled while serving (its adapter's compile_stall_patterns) after
    `offsets` (log_offsets at the start of the measured part): those latencies include a stall a warm deployment
    does not have."""
    from serveplan.launcher.logwatch import lines_after
    from serveplan.render.engines.base import get_adapter

    try:
        patterns = get_adapter(rec.engine, rec.engine_version).compile_stall_patterns
    except Exception:  # noqa: BLE001 (an engine this version cannot render: nothing to look for)
        return None
    for r in rec.replicas:
        if r.log and r.log in offsets:
            found = lines_after(r.log, offsets[r.log], patterns, limit=1)
            if found:
                return (f"{r.name} compiled a kernel during the measured load ({found[0][:160]}): its latencies "
                        f"include that stall, which a warm deployment does not have; run again with a longer "
                        f"--warmup to leave it out")
    return None


def _plan_file(plan_dir: str | Path) -> Path:
    p = Path(plan_dir)
    if not p.exists():  # not "No plan.yaml in /" for a mistyped folder
        raise ConfigError(f"Plan folder '{p}' does not exist; give the folder `plan -o` wrote.")
    f = p / "plan.yaml" if p.is_dir() else p
    if not f.is_file():
        where = p if p.is_dir() else p.parent
        raise ConfigError(f"No plan.yaml in {where}: make one with `plan ... -o {where}` first.")
    return f


def _load(plan_dir: str | Path):  # noqa: ANN202
    import yaml
    from pydantic import ValidationError

    from serveplan.planner.result import load_plan

    f = _plan_file(plan_dir)
    try:
        plan = load_plan(f)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{f} is not a valid plan: {'.'.join(map(str, err['loc']))}: {err['msg']}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{f} is not valid YAML ({str(e).splitlines()[0]}).") from None
    if not plan.ranked:
        raise ConfigError(f"{f} has no candidates to launch.")
    return f, plan


def _operating_point(traffic, rate_rps: float | None, concurrency: int | None):  # noqa: ANN001, ANN202
    """The traffic to benchmark: the plan's, or with the load overridden (validated again)."""
    from pydantic import ValidationError

    from serveplan.planner.spec import Traffic

    if rate_rps is None and concurrency is None:
        return traffic, False
    doc = traffic.model_dump()
    if rate_rps is not None:  # open loop; a concurrency given too caps requests in flight
        doc.update(rate_rps=rate_rps, concurrency=concurrency,
                   arrival=traffic.arrival if traffic.arrival != "closed" else "poisson")
    else:
        doc.update(arrival="closed", concurrency=concurrency, rate_rps=None)
    try:
        return Traffic.model_validate(doc), True
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"Invalid load: {'.'.join(map(str, err['loc'])) or 'traffic'}: {err['msg']} "
                          f"(got {err.get('input')!r}).") from None


def _forced_onto(plan, force: bool) -> str | None:  # noqa: ANN001
    """The catalog GPU a forced launch will run on, where it is not the plan's (all visible GPUs alike), else None."""
    if not force:
        return None
    from serveplan.launcher.gpus import visible_gpus
    from serveplan.planner.catalog import gpu_for_device, gpu_matches

    names = set(visible_gpus())
    if len(names) != 1:
        return None
    (name,) = names
    return None if gpu_matches(plan.request.inventory.gpu, name) else gpu_for_device(name)


def _on_gpu(plan, gpu_option: str):  # noqa: ANN001, ANN202
    """The plan as if its request had named gpu_option: the same configuration, predicted on that GPU's profile and
    calibration (the launch still pins the plan's KV cache)."""
    from serveplan.planner.catalog import gpu_spec

    inv = plan.request.inventory.model_copy(update={"gpu": gpu_spec(gpu_option)})
    return plan.model_copy(update={"request": plan.request.model_copy(update={"inventory": inv})})


def _predict(plan, traffic, overridden: bool, notes: list[str]):  # noqa: ANN001, ANN202
    """(Predictions or None, source, error) for the load that will be benchmarked (overridden: another load or
    another GPU than the plan's winner was predicted for)."""
    from serveplan.planner.estimate import estimate

    winner = plan.winner
    if not overridden and winner.predictions is not None:
        return winner.predictions, "plan", None
    source = "re-estimated" if overridden else "estimated"
    try:
        est = estimate(plan.request.model_copy(update={"traffic": traffic}), winner.config)
    except ServeplanError as e:
        notes.append(f"no prediction for this load: {e}")
        return None, None, str(e)
    if est.predictions is None:
        msg = f"no prediction for this load: the winner does not fit ({est.memory.reason})"
        notes.append(msg)
        return None, None, msg
    return est.predictions, source, None


def _load_of(traffic, overridden: bool) -> Load:  # noqa: ANN001
    src = "override" if overridden else "plan"
    if traffic.is_closed_loop:
        return Load(mode="closed", concurrency=traffic.concurrency, source=src)
    return Load(mode="open", rate_rps=traffic.rate_rps, concurrency=traffic.concurrency, source=src)


def _local_tokenizer(model: str | None) -> str | None:
    """The served checkpoint's own tokenizer, when it is a local folder: prompts are then built from real
    token ids (an approximation of repeated unknown words would share prefixes and hit the prefix cache)."""
    if model and (Path(model) / "tokenizer.json").is_file():
        return model
    return None


def verify_plan(plan_dir: str | Path, *, model: str | None = None, num_requests: int | None = None,
                duration_s: float | None = None, force: bool = False, base_port: int = 8000,
                health_timeout_s: float = 900, output: str | Path | None = None,
                rate_rps: float | None = None, concurrency: int | None = None, seed: int = 0,
                timeout_s: float = 600, endpoint: str = "completions", progress: bool = True,
                grace_s: float = 10.0, console=None, tokenizer: str | None = None,  # noqa: ANN001
                warmup_s: float = DEFAULT_WARMUP_S) -> VerifyResult:
    """Launch the plan in plan_dir, bench it at its planned load (or rate_rps / concurrency) after `warmup_s`
    seconds of the same load that no figure includes, stop it, and write verify.json (to `output`, default next to
    plan.yaml). Raises LaunchError when the launch fails; the engines are stopped in every case. Returns the
    document (result.path says where it went)."""
    from rich.console import Console

    from serveplan.fileio import write_atomic
    from serveplan.bench.loadgen import run_bench
    from serveplan.launcher.launch import launched

    console = console or Console(highlight=False)
    from serveplan.bench.loadgen import _resolve_args

    plan_file, plan = _load(plan_dir)
    # Bad bench arguments are reported before anything is started.
    _resolve_args(["http://check"], plan.request.traffic, model, num_requests, duration_s, rate_rps, concurrency,
                  seed, timeout_s, None, endpoint, warmup_s)
    pdir = plan_file.parent
    out = Path(output) if output is not None else pdir / VERIFY_FILE
    bench_out = out.parent / BENCH_FILE if out.name == VERIFY_FILE else out.with_name(out.stem + "-bench.json")
    req, winner = plan.request, plan.winner
    notes: list[str] = []
    traffic, overridden = _operating_point(req.traffic, rate_rps, concurrency)
    ran_on = _forced_onto(plan, force)
    predicted_plan = plan if ran_on is None else _on_gpu(plan, ran_on)
    if ran_on is not None:  # a --force run on another GPU: predict what that GPU does with the plan's configuration
        notes.append(f"predicted for the {predicted_plan.request.inventory.gpu.display_name} this ran on (--force); "
                     f"the plan is for {req.inventory.gpu.display_name}, and its KV cache is the plan's")
    predictions, source, pred_err = _predict(predicted_plan, traffic, overridden or ran_on is not None, notes)
    load = _load_of(traffic, overridden)
    on = req.inventory.gpu.display_name if ran_on is None else \
        f"{predicted_plan.request.inventory.gpu.display_name}, planned for {req.inventory.gpu.display_name}"
    console.print(f"verify {winner.config.label()} ({req.engine.name} {req.engine.version}, {on}) at "
                  + (f"{load.rate_rps:g} req/s" if load.mode == "open" else f"concurrency {load.concurrency}")
                  + f" ({'override' if overridden else 'the planned load'})", highlight=False, markup=False)

    with launched(pdir, model=model, force=force, base_port=base_port, health_timeout_s=health_timeout_s,
                  console=console, grace_s=grace_s) as rec:
        console.print(f"serving {rec.served_model_name} on {', '.join(rec.endpoints)}; benchmarking",
                      highlight=False, markup=False)
        for n in rec.notes:  # what `plan launch` says before it starts (weights, multicast, GPU check); verify.json
            # keeps them in run.notes
            console.print(f"note: {n}", style="yellow", highlight=False, markup=False, soft_wrap=True)
        offsets: dict[str, int] = {}
        bench = run_bench(list(rec.endpoints), traffic, model=rec.served_model_name, num_requests=num_requests,
                          duration_s=duration_s, seed=seed, slo=req.slo, timeout_s=timeout_s,
                          endpoint=endpoint, progress=progress,  # type: ignore[arg-type]
                          tokenizer=tokenizer or _local_tokenizer(model), warmup_s=warmup_s,
                          on_measure=lambda: offsets.update(log_offsets(rec)))
        stalls = compile_stalls(rec, offsets)
    # launched() has stopped the engines and updated rec (exit codes, status, stopped_at).
    notes.extend(bench.notes)
    if stalls:
        notes.append(stalls)
    if 0 < bench.summary.completed < P99_FEW_REQUESTS:
        n = bench.summary.completed
        notes.append(f"{n} requests: each P99 is about the slowest {max(1, round(n / 100))} of them and moves with the "
                     f"few longest prompts drawn. In brackets: the prediction over {SAMPLE_SEEDS} simulated runs of "
                     f"this size; the replayed column runs the model on these same requests (more requests: "
                     f"--num-requests or --duration)")
    behind = fell_behind(bench.summary, bench.requests)
    if behind:
        notes.append(behind)
    if bench.interrupted:
        notes.append("the bench was interrupted: the figures cover the requests that finished before the stop")
    s = bench.summary
    measured = s.model_dump(mode="json")
    predicted = predictions.model_dump(mode="json") if predictions is not None else None
    replayed = replayed_latencies(predicted_plan, traffic, bench.requests) if predictions is not None else None
    ranges = sample_ranges(predicted_plan, traffic, s.completed) if predictions is not None else None
    comparison = compare(predicted, measured, replayed, ranges)
    notes.extend(outside_sample_range(comparison))
    rows = [{"url": r.url, "input_len": r.input_len, "output_len": r.output_len, "prompt_tokens": r.prompt_tokens,
             "output_tokens": r.output_tokens, "ttft_ms": r.ttft_ms, "tpot_ms": r.tpot_ms, "e2e_ms": r.e2e_ms,
             "ok": r.ok, "error_kind": r.error_kind, "size_class": r.size_class}
            for r in bench.requests if not r.cancelled]
    result = VerifyResult(
        created_at=_now(), plan_dir=str(pdir), plan_file=str(plan_file), engine=req.engine.name,
        engine_version=req.engine.version, gpu=req.inventory.gpu.name, gpu_display=req.inventory.gpu.display_name,
        ran_on_gpu=ran_on, model=req.model.name, model_hf_id=req.model.hf_id, served_model=rec.served_model_name,
        candidate=winner.config.label(), config=winner.config.model_dump(mode="json"),
        num_gpus=winner.config.total_gpus, request=req.model_dump(mode="json"),
        traffic=traffic.model_dump(mode="json"), load=load, prediction_source=source, prediction_error=pred_err,
        predicted=predicted, replayed=replayed, measured=measured,
        measured_per_url={u: x.model_dump(mode="json") for u, x in bench.per_url.items()},
        classes=[c.model_dump(mode="json") for c in bench.classes],
        comparison=comparison,
        completed=s.completed, failed=s.failed, errors=dict(s.errors), interrupted=bench.interrupted,
        requests=rows, bench_file=bench_out.name, bench_args=bench.args.model_dump(mode="json"),
        run=rec.model_dump(mode="json"), notes=notes)
    bench.write_json(bench_out)
    write_atomic(out, result.model_dump_json(indent=1) + "\n")
    result.path = str(out)
    return result


# ---------------------------------------------------------------------------------------------- printing
def _display_name(gpu_option: str) -> str:
    """A catalog GPU's name as the vendor writes it (the option name where the catalog no longer has it)."""
    from serveplan.planner.catalog import gpu_spec

    try:
        return gpu_spec(gpu_option).display_name
    except KeyError:  # a verify.json from another serveplan may name a GPU this catalog lacks
        return gpu_option


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def render_verify(result: VerifyResult, console=None) -> None:  # noqa: ANN001
    """Predicted vs measured, with the relative error (green within 20%, yellow within 50%, red beyond)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    ld = result.load
    load = f"{ld.rate_rps:g} req/s" if ld.mode == "open" else f"concurrency {ld.concurrency}"
    on = result.gpu_display if result.ran_on_gpu is None else \
        f"{_display_name(result.ran_on_gpu)} (planned for {result.gpu_display})"
    t = Table(title=f"verify {result.candidate} on {on} ({result.engine} {result.engine_version}), "
                    f"{load}{'  [bold red]INTERRUPTED[/]' if result.interrupted else ''}", title_justify="left")
    t.add_column("metric")
    t.add_column(f"predicted ({result.prediction_source or 'none'})", justify="right")
    t.add_column("measured", justify="right")
    t.add_column("error", justify="right")
    replayed = any(c.replayed is not None for c in result.comparison)
    if replayed:
        t.add_column("replayed on the requests sent", justify="right")
    labels = dict(COMPARED)
    for c in result.comparison:
        digits = 2 if c.metric == "requests_per_s" else 1
        if c.rel_error is None:
            err = "-"
        else:
            style = "green" if abs(c.rel_error) <= 0.2 else "yellow" if abs(c.rel_error) <= 0.5 else "red"
            err = f"[{style}]{c.rel_error * 100:+.0f}%[/]"
        pred = _fmt(c.predicted, digits)
        if c.sample_range is not None and c.metric.endswith(("p90", "p99")):  # where a finite sample moves it
            pred += f" [{_fmt_range(*c.sample_range)}]"
        t.add_row(labels.get(c.metric, c.metric), pred, _fmt(c.measured, digits), err,
                  *([_fmt(c.replayed, digits)] if replayed else []))
    console.print(t)
    if replayed:
        console.print("replayed: the model run on the requests this bench sent (their arrival times and lengths): "
                      "where it is close to measured and the prediction is not, the traffic differed from the "
                      "plan's; where both miss, the model does", highlight=False, markup=False)
    if result.measured.get("served_rps") is not None:
        console.print(f"throughput measured while the load was on (from a third of the arrivals to the last); over "
                      f"the whole run, drain included: {_fmt(result.measured.get('requests_per_s'), 2)} req/s, "
                      f"{_fmt(result.measured.get('output_tok_s'))} output tok/s", highlight=False, markup=False)
    console.print(f"requests ok / failed: {result.completed} / {result.failed}"
                  + (f"  ({', '.join(f'{k} {v}' for k, v in result.errors.items())})" if result.errors else ""),
                  highlight=False, markup=False)
    if result.measured_per_url:
        pt = Table(title="per replica", title_justify="left")
        for c in ("url", "ok", "failed", "req/s", "out tok/s", "TTFT P99", "TPOT P99"):
            pt.add_column(c, justify="left" if c == "url" else "right")
        for u, m in result.measured_per_url.items():
            pt.add_row(u, str(m.get("completed")), str(m.get("failed")), _fmt(m.get("requests_per_s"), 2),
                       _fmt(m.get("output_tok_s")), _fmt(_lookup(m, "ttft_ms.p99")), _fmt(_lookup(m, "tpot_ms.p99")))
        console.print(pt)
    for n in result.notes:
        console.print(f"[yellow]note:[/] {escape(n)}", highlight=False)
    if result.path:
        console.print(f"wrote {result.path}", highlight=False, markup=False)


# ---------------------------------------------------------------------------------------------- CLI
