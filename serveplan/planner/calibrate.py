"""Engine calibration: fit engine-level terms to benchmarks of a real engine and store them in profiles/.

An Observation is one measured operating point of a known configuration: fixed prompt and output lengths in
a closed loop at a concurrency (what `vllm bench serve --max-concurrency` or serveplan's `bench` measures), or
an open loop (Poisson arrivals at a rate, the traffic's length distributions; what `verify` measures), where
TTFT is fitted on its median (an overloaded run's mean is its queue's growth).
The fit adjusts what the hardware profile cannot know: the engine's per-step CPU cost (scheduling,
sampling, launches), its per-sequence cost, and how much of the profiled bandwidth and GEMM/attention
rates the engine's kernels achieve. An Optuna study (TPE, seeded) minimises the mean absolute log error of
mean TPOT, mean TTFT and throughput over the observations, each predicted by the step-level simulation of
the same number of prompts. The result is written to
`profiles/calibration/<engine>-<version>/<gpu>.yaml` with its source, and the planner applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from serveplan.fileio import write_atomic
from serveplan.planner.profiles import SHIPPED_PROFILES, Calibration


class Observation(BaseModel):
    """One measured point of a known configuration."""

    model_config = ConfigDict(frozen=True)
    label: str = ""
    shape: str = ""
    model: str = "llama-3.1-8b"
    gpu: str = "h100-sxm"
    engine: str = "vllm"
    tp: int = 1
    weight_dtype: str = "bf16"
    kv_cache_dtype: str = "auto"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.92
    input_len: int
    output_len: int
    concurrency: int
    num_prompts: int
    ttft_ms: float
    tpot_ms: float
    throughput_tok_s: float
    repeats: int = 1
    ttft_spread: float = 0.0
    tpot_spread: float = 0.0
    # open loop (rate_rps set): the run's Traffic (length distributions, arrival) and layout; ttft_ms is the P50
    rate_rps: float | None = None
    traffic: dict | None = None
    pp: int = 1
    replicas: int = 1
    enable_prefix_caching: bool = False
    max_cudagraph_capture_size: int | None = None  # vLLM's default when None
    api_server_count: int = 1  # vLLM --api-server-count (session 30's C2: 2)
    ttft_p99_ms: float | None = None  # open loop: the measured TTFT P99, reported beside the fit (not fitted)


@lru_cache(maxsize=256)
def _request(model: str, gpu: str, engine: str, i: int, o: int, c: int, mml: int):  # noqa: ANN202
    from serveplan.planner.config import build_request

    return build_request(model=model, gpus=f"1x{gpu}", engine=engine, overrides=[
        "traffic.arrival=closed", f"traffic.concurrency={c}", "traffic.rate_rps=null",
        "traffic.input_len.kind=fixed", f"traffic.input_len.mean={i}", f"traffic.input_len.max={i}",
        "traffic.output_len.kind=fixed", f"traffic.output_len.mean={o}", f"traffic.output_len.max={o}",
        f"search.max_model_len={mml}", "slo=none"])


# The Candidate fields a measured configuration carries (an Observation, or a GPU run's meta.json)
CANDIDATE_KEYS = ("engine", "tp", "pp", "replicas", "weight_dtype", "kv_cache_dtype", "max_num_seqs",
                  "max_num_batched_tokens", "chunked_prefill", "max_model_len", "gpu_memory_utilization",
                  "enable_prefix_caching", "max_cudagraph_capture_size", "api_server_count")


def candidate_of(config: dict):  # noqa: ANN201 (Candidate, lazy import)
    """The Candidate a measured configuration ran: an Observation's fields (`o.model_dump()`) or a GPU run's
    meta.json; a key the configuration lacks keeps the Candidate's default."""
    from serveplan.planner.spec import Candidate

    return Candidate(**{k: config[k] for k in CANDIDATE_KEYS if k in config})


def step_model_of(config: dict, cal: Calibration | None, input_len: int, output_len: int):  # noqa: ANN201
    """The planner's step model (calibrated with `cal`, or the profile alone) of a measured configuration (as
    candidate_of reads it, plus its model, gpu and max_model_len), for single-request terms: one step's time."""
    from serveplan.planner.estimate import Scorer

    req = _request(config["model"], config["gpu"], config.get("engine", "vllm"), input_len, output_len, 1,
                   config["max_model_len"])
    if "num_layers" in config:  # a catalog model cut to fewer layers (a GPU run's meta.json says so)
        req = req.model_copy(update={"model": req.model.model_copy(update={"num_layers": config["num_layers"]})})
    return Scorer(req, calibration=cal, use_calibration=False).step_model(candidate_of(config))


def scorer_of(o: Observation, cal: Calibration | None, engine: dict | None = None):  # noqa: ANN201
    """(request, candidate, scorer) the planner predicts an observed point with: the run's traffic at its rate (an
    open loop) or its closed loop, the configuration it ran, and `cal` (or the profile alone); engine: terms of the
    engine configuration to use instead of conf/engine's."""
    from serveplan.planner.estimate import Scorer

    if o.rate_rps is not None:
        req = _open_request(o.model, o.gpu, o.engine, o.tp * o.pp * o.replicas, o.max_model_len)
        req = req.model_copy(update={"traffic": type(req.traffic)(**{**(o.traffic or {}), "rate_rps": o.rate_rps,
                                                                      "concurrency": None})})
    else:
        req = _request(o.model, o.gpu, o.engine, o.input_len, o.output_len, o.concurrency, o.max_model_len)
    if engine:
        req = req.model_copy(update={"engine": req.engine.model_copy(update=engine)})
    return req, candidate_of(o.model_dump()), Scorer(req, calibration=cal, use_calibration=False)


def predict_observation(o: Observation, cal: Calibration | None, engine: dict | None = None,
                        seed: int = 0) -> dict:
    """The planner's prediction for the observed point (mean TTFT, mean TPOT, output tok/s); engine: terms of
    the engine configuration to use instead of conf/engine's (benchmarks/accuracy.py solves some that way); seed:
    the simulation's (lengths and arrivals), for the spread a finite run's sample gives."""
    from serveplan.planner.simulation import simulate

    req, cand, scorer = scorer_of(o, cal, engine)
    mem = scorer.memory(cand)
    # the run as measured: as many requests (per replica) as it sent, its drain included. An open loop's served
    # rate is the planner's: the offered rate up to the simulated capacity, where it levels off (the measured
    # served tok/s is taken over the steady window too; a finite run's completions over its whole span count its
    # ramp and its drain, and read 15% below what a saturated server delivered)
    p = simulate(scorer.step_model(cand), cand, mem, req.traffic, req.slo, req.inventory,
                 n_requests=max(1, round(o.num_prompts / o.replicas)), kv_block=req.engine.kv_block_size,
                 with_capacity=o.rate_rps is not None, closed_loop="run", seed=seed)
    ttft = p.ttft_ms.p50 if o.rate_rps is not None else p.ttft_ms.mean
    return {"ttft_ms": ttft, "tpot_ms": p.tpot_ms.mean, "throughput_tok_s": p.throughput_tok_s,
            "ttft_p99_ms": p.ttft_ms.p99}


@lru_cache(maxsize=64)
def _open_request(model: str, gpu: str, engine: str, gpus: int, mml: int):  # noqa: ANN202
    from serveplan.planner.config import build_request

    return build_request(model=model, gpus=f"{gpus}x{gpu}", engine=engine,
                         overrides=[f"search.max_model_len={mml}", "slo=none"])


def loss(obs: list[Observation], cal: Calibration | None) -> float:
    total = 0.0
    for o in obs:
        p = predict_observation(o, cal)
        total += abs(math.log(p["tpot_ms"] / o.tpot_ms)) + abs(math.log(p["ttft_ms"] / o.ttft_ms))
        if o.rate_rps is None:  # an open loop serves its rate; a bench's tok/s there mostly counts its drain
            total += 0.5 * abs(math.log(p["throughput_tok_s"] / o.throughput_tok_s))
    return total / max(len(obs), 1)


def fit_calibration(obs: list[Observation], *, source: str, n_trials: int = 120, seed: int = 0,
                    version: str | None = None, start: Calibration | None = None,
                    kernel_tables: dict[str, Any] | None = None,
                    bounds: dict[str, tuple[float, float]] | None = None) -> Calibration:
    """Fit step overhead, per-sequence and per-request overheads, the cost of a step beyond the CUDA graphs, the
    front end's streaming ceiling and weight-bandwidth / attention-bandwidth / compute / prefill scales.
    start: a calibration to try first (the one a refit replaces), so that a refit after a change to the step model
    never ends worse on its own points than the old terms would. kernel_tables: the engine's measured GEMM and MoE
    kernel tables to keep (Calibration.kernel_tables; not fitted); by default start's. bounds: narrower (low, high) for
    named terms, to try a step model with a term held near a value (`benchmarks/accuracy.py --fit --bound`)."""
    import optuna

    if not obs:
        from serveplan.errors import ConfigError

        raise ConfigError("No benchmark observations to calibrate from.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    o0 = obs[0]
    if version is None:
        from serveplan.planner import catalog

        version = catalog.catalog_doc("engine", o0.engine)["version"]

    # name: (low, high, log scale)
    space = {"step_overhead_ms": (0.0, 8.0, False), "per_seq_overhead_us": (0.0, 40.0, False),
             "request_overhead_ms": (0.0, 40.0, False), "prefill_seq_overhead_ms": (0.0, 5.0, False),
             "max_stream_tok_s": (5e3, 1e5, True), "eager_step_ms": (0.0, 20.0, False),
             "seq_layer_us": (0.0, 3.0, False),
             "bandwidth_scale": (0.5, 1.3, False), "attention_scale": (0.5, 1.5, False),
             "compute_scale": (0.4, 1.3, False),
             "prefill_scale": (0.3, 1.5, False)}
    for name, (lo, hi) in (bounds or {}).items():
        if name not in space or not lo <= hi:
            from serveplan.errors import ConfigError

            raise ConfigError(f"Cannot bound {name!r} to {lo:g}..{hi:g}: the fitted terms are {', '.join(space)}, "
                              f"each with low <= high.")
        space[name] = (lo, hi, space[name][2] and lo > 0)

    measured = kernel_tables if kernel_tables is not None else (start.kernel_tables() if start is not None else {})

    def make(t) -> Calibration:  # noqa: ANN001
        return Calibration(engine=o0.engine, engine_version=version, gpu=o0.gpu, source=source, **measured,
                           **{k: t.suggest_float(k, lo, hi, log=log) for k, (lo, hi, log) in space.items()})

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    study.enqueue_trial({"step_overhead_ms": 2.0, "per_seq_overhead_us": 8.0, "request_overhead_ms": 8.0,
                         "prefill_seq_overhead_ms": 0.3, "max_stream_tok_s": 1e5, "eager_step_ms": 0.0,
                         "seq_layer_us": 0.0, "bandwidth_scale": 1.0, "attention_scale": 1.0, "compute_scale": 1.0,
                         "prefill_scale": 1.0})
    if start is not None:  # its terms, inside the search space (an unset term: what it stands for)
        unset = {"max_stream_tok_s": space["max_stream_tok_s"][1], "attention_scale": start.bandwidth_scale}
        study.enqueue_trial({k: min(max(v if (v := getattr(start, k)) is not None else unset.get(k, 0.0), lo), hi)
                             for k, (lo, hi, _) in space.items()})
    study.optimize(lambda t: loss(obs, make(t)), n_trials=n_trials)
    params, value, polished = _polish(study.best_params, study.best_value, space,
                                      lambda p: loss(obs, make(optuna.trial.FixedTrial(p))))
    best = make(optuna.trial.FixedTrial(params))
    return best.model_copy(update={"fit": {"loss": value, "points": len(obs), "trials": n_trials,
                                           "polish_evaluations": polished,
                                           "objective": "mean |log| error of TPOT + TTFT + 0.5 tok/s"}})


def _polish(params: dict[str, float], value: float, space: dict[str, tuple[float, float, bool]],
            f, rounds: int = 5) -> tuple[dict[str, float], float, int]:  # noqa: ANN001
    """A coordinate search from the study's best point: each term in turn moved up and down by a step that halves
    every round, a move kept when it lowers the loss. TPE finds the basin in nine dimensions; with a few hundred
    trials it can stop short of its floor, or in another basin where one term stands in for another (a streaming
    ceiling for a per-step overhead)."""
    best, evaluations = dict(params), 0
    for r in range(rounds):
        frac = 0.1 / 2 ** r
        for k, (lo, hi, log) in space.items():
            for sign in (1, -1):
                x = best[k]
                y = x * math.exp(sign * frac * math.log(hi / lo)) if log else x + sign * frac * (hi - lo)
                y = min(hi, max(lo, y))
                if y == x:
                    continue
                trial = {**best, k: y}
                v = f(trial)
                evaluations += 1
                if v < value:
                    best, value = trial, v
    return best, value, evaluations


def write_calibration(cal: Calibration, root: Path = SHIPPED_PROFILES) -> Path:
    out = root / "calibration" / f"{cal.engine}-{cal.engine_version}" / f"{cal.gpu}.yaml"
    doc = cal.model_dump(mode="json", exclude={"path", "applied_to"}, exclude_none=True)  # tuples as lists
    return write_atomic(out, yaml.safe_dump(doc, sort_keys=False))


@dataclass(frozen=True)
class BenchPoint:
    """One measured load point, as the bench readers (serveplan.bench.results.read_bench_summary) give it."""

    label: str                 # where it came from (a file name)
    model: str | None          # the model name the benchmark asked for, if it recorded one
    completed: int
    total_input_tokens: int
    total_output_tokens: int
    concurrency: int | None    # closed loop: the number of clients; None for open loop
    ttft_ms: float | None      # means
    tpot_ms: float | None
    throughput_tok_s: float
    rate_rps: float | None = None      # open loop: the offered rate
    ttft_p50_ms: float | None = None   # open loop: what TTFT is fitted on


def observations(plan, points: list[BenchPoint]) -> list[Observation]:  # noqa: ANN001 (a Plan)
    """Calibration observations of the plan's winner: closed-loop bench points (their mean lengths, fixed), and
    open-loop ones (verify, or bench at a rate) under the plan's traffic at the measured rate."""
    from serveplan.errors import ConfigError

    c, req = plan.winner.config, plan.request
    ck = c.checkpoint
    ours = {x for x in (req.model.name, req.model.hf_id, ck.id if ck else None, ck.base_id if ck else None) if x}
    config = dict(model=req.model.name, gpu=req.inventory.gpu.name, engine=c.engine, tp=c.tp,
                  weight_dtype=c.weight_dtype, kv_cache_dtype=c.kv_cache_dtype, max_num_seqs=c.max_num_seqs,
                  max_num_batched_tokens=c.max_num_batched_tokens, chunked_prefill=c.chunked_prefill,
                  max_model_len=c.max_model_len, gpu_memory_utilization=c.gpu_memory_utilization)
    out = []
    for pt in points:
        m = pt.model
        if m and m not in ours and not any(m.rstrip("/").endswith("/" + o.rsplit("/", 1)[-1]) for o in ours):
            raise ConfigError(f"{pt.label} measured the model '{m}', but the plan serves {req.model.name} "
                              f"({', '.join(sorted(ours))}); calibrate with benchmarks of this plan's model.")
        if not pt.concurrency and not pt.rate_rps:
            raise ConfigError(f"{pt.label}: calibration needs a closed loop (a fixed concurrency) or an open loop "
                              "at a known rate; this benchmark records neither.")
        if not pt.completed or pt.ttft_ms is None or pt.tpot_ms is None:
            raise ConfigError(f"{pt.label}: no request completed in that benchmark; nothing to calibrate on.")
        n = pt.completed
        if pt.concurrency:  # closed loop: one replica at that concurrency, the mean lengths fixed
            load = dict(concurrency=int(pt.concurrency), ttft_ms=pt.ttft_ms)
        else:  # open loop: the whole deployment under the plan's traffic at the measured rate, TTFT at the median
            load = dict(pp=c.pp, replicas=c.replicas,
                        enable_prefix_caching=c.enable_prefix_caching and req.traffic.prefix_share > 0,
                        concurrency=0, rate_rps=pt.rate_rps, traffic=req.traffic.model_dump(),
                        ttft_ms=pt.ttft_p50_ms if pt.ttft_p50_ms is not None else pt.ttft_ms)
        out.append(Observation(**config, **load, input_len=round(pt.total_input_tokens / n),
                               output_len=round(pt.total_output_tokens / n), num_prompts=n, tpot_ms=pt.tpot_ms,
                               throughput_tok_s=pt.throughput_tok_s, label=pt.label))
    return out
