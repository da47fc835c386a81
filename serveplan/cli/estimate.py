"""`plan estimate --model M --gpus G --weights fp8 --tp 2 ...`: predict one fixed configuration under a fixed
workload."""

from __future__ import annotations

import argparse
import json

from serveplan.cli.args import (REQUEST_VALUE_FLAGS, _Parser, add_request_flags, checkpoint_overrides, positive_float,
                                 positive_int, split_overrides)
from serveplan.cli.boundary import _console

# The Candidate fields `plan estimate` sets from flags, and the flag names users know them by.
ESTIMATE_KNOBS = {"weight_dtype": "--weights", "kv_cache_dtype": "--kv-cache-dtype", "tp": "--tp", "pp": "--pp",
                  "replicas": "--replicas", "max_num_seqs": "--max-num-seqs",
                  "max_num_batched_tokens": "--max-num-batched-tokens", "chunked_prefill": "--no-chunked-prefill",
                  "max_cudagraph_capture_size": "--max-cudagraph-capture-size"}


def _candidate_flags(p: argparse.ArgumentParser) -> list[str]:
    """Flags for the Candidate's knobs, generated from its fields: their defaults, descriptions and types
    (Literal -> choices, positive int -> positive_int, bool -> a --no- switch)."""
    import typing

    from serveplan.planner.spec import Candidate

    for name, flag in ESTIMATE_KNOBS.items():
        info = Candidate.model_fields[name]
        choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else None
        if info.annotation is bool:
            p.add_argument(flag, dest=name, action="store_false", help=f"off: {info.description}")
        elif choices:
            p.add_argument(flag, dest=name, default=info.default, choices=choices, help=info.description)
        else:
            p.add_argument(flag, dest=name, type=positive_int, default=info.default,
                           help=f"{info.description} (default {info.default})")
    return list(ESTIMATE_KNOBS)


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """The flags that fix the workload (`plan estimate`, `plan compare`): lengths, load, context."""
    p.add_argument("--max-model-len", type=positive_int, help="context to provision (default: from the traffic)")
    p.add_argument("--input-len", type=positive_int, help="fixed prompt length (else the traffic's distribution)")
    p.add_argument("--output-len", type=positive_int, help="fixed output length (else the traffic's distribution)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--concurrency", type=positive_int, help="closed loop: this many concurrent clients")
    g.add_argument("--rate", type=positive_float, help="open loop: Poisson arrivals at this many requests/s")


def workload_request(a: argparse.Namespace, overrides: list[str]):  # noqa: ANN201 (PlanRequest, lazy import)
    """The PlanRequest of the request and workload flags (add_request_flags + add_workload_flags)."""
    from serveplan.planner.config import build_request

    ovs = list(overrides)
    if a.input_len:
        ovs += ["traffic.input_len.kind=fixed", f"traffic.input_len.mean={a.input_len}",
                f"traffic.input_len.max={max(a.input_len, 1)}", "traffic.input_len.min=1"]
    if a.output_len:
        ovs += ["traffic.output_len.kind=fixed", f"traffic.output_len.mean={a.output_len}",
                f"traffic.output_len.max={max(a.output_len, 1)}", "traffic.output_len.min=1"]
    if a.concurrency:
        ovs += ["traffic.arrival=closed", f"traffic.concurrency={a.concurrency}", "traffic.rate_rps=null"]
    elif a.rate:
        ovs += ["traffic.arrival=poisson", f"traffic.rate_rps={a.rate}", "traffic.concurrency=null"]
    if a.max_model_len:
        ovs.append(f"search.max_model_len={a.max_model_len}")
    ovs += checkpoint_overrides(a.checkpoint)
    return build_request(model=a.model, gpus=a.gpus, traffic=a.traffic, engine=a.engine, overrides=ovs)


def build_candidate(req, knobs: dict, what: str = "this configuration"):  # noqa: ANN001, ANN201
    """The Candidate of the knob values (Candidate field -> value) on req's engine and context, refused in
    one sentence (naming `what`) when invalid, when the engine would refuse it, or when it needs more GPUs
    than the inventory has."""
    from pydantic import ValidationError

    from serveplan.errors import ConfigError
    from serveplan.planner.memory import start_problems
    from serveplan.planner.spec import Candidate

    try:
        cand = Candidate(engine=req.engine.name, max_model_len=req.max_model_len,
                         gpu_memory_utilization=req.engine.gpu_memory_utilization,
                         api_server_count=req.engine.api_server_count or 1, **knobs)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"Invalid configuration{'' if what == 'this configuration' else ' ' + what}: "
                          f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r}).") from None
    problems = start_problems(req.model, cand, req.engine.name, req.inventory.gpu)
    if problems:
        raise ConfigError(f"The engine would refuse {what}: {'; '.join(problems)}.")
    if cand.total_gpus > req.inventory.total_gpus:
        raise ConfigError(f"{what[0].upper() + what[1:]} (TP{cand.tp} x PP{cand.pp} x {cand.replicas} replicas) "
                          f"needs {cand.total_gpus} GPUs; the inventory has {req.inventory.total_gpus} "
                          f"({req.inventory.describe()}).")
    return cand


def main(argv: list[str]) -> int:
    flags, overrides = split_overrides(argv, REQUEST_VALUE_FLAGS)
    p = _Parser(prog="plan estimate", description="Predict one fixed configuration under a fixed workload.")
    add_request_flags(p)
    knobs = _candidate_flags(p)
    add_workload_flags(p)
    a = p.parse_args(flags)

    from serveplan.planner.estimate import Scorer
    from serveplan.planner.report import candidate_doc, render_estimate

    req = workload_request(a, overrides)
    cand = build_candidate(req, {f: getattr(a, f) for f in knobs})
    scorer = Scorer(req)  # estimate()'s body, the scorer kept: its calibration's held-out error is reported below
    est = scorer.reported(cand)  # the sample a plan's finalists take
    if a.json:
        print(json.dumps(candidate_doc(est), indent=1))
        return 0 if est.memory.fits else 2
    cal = scorer.calibration
    render_estimate(est, req, _console(), held_out=cal.held_out if cal else None)
    return 0 if est.memory.fits else 2
