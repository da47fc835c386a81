"""Command line: `plan`, `plan estimate`, `plan launch`, `plan stop`, `bench`, `verify`, `profile`,
`quantize`.

CLI sugar (--model, --gpus, --traffic, --engine, -o) comes first; anything of the form key=value after it is
a Hydra override (`traffic=rag slo.ttft_p99_ms=800 search.n_trials=400`). User mistakes print one
sentence and exit 2; a failed launch exits 4; bugs keep their traceback (exit 3). SERVEPLAN_DEBUG=1
shows tracebacks for everything. A foreground `plan launch` stopped by SIGINT/SIGTERM exits 130/143; output to
a closed pipe (`plan --json | head -1`) stops quietly with 141.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from serveplan.errors import EXIT_INTERNAL_ERROR, ServeplanError

EXIT_SLO_NOT_MET = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool killed by a closed pipe


def _console(stderr: bool = False):  # noqa: ANN202
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's default exits 1, which `plan` uses for "SLO not met"
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(stderr=stderr, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _guard(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        rc = fn(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not as "Exception ignored" at interpreter exit
        return rc
    except BrokenPipeError:
        if not _stdout_closed():
            return _internal_error()
        # The reader went away (`plan --json | head -1`): stop quietly, as a SIGPIPE'd Unix tool would.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except ServeplanError as e:
        if os.environ.get("SERVEPLAN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        return _internal_error()


def _internal_error() -> int:
    import traceback

    traceback.print_exc()
    print("internal error: this is a serveplan bug; please report it with the traceback above.",
          file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports POLLERR on it); True where unknown."""
    try:
        import select

        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real fd (a test's StringIO)
        return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of what is still buffered cannot
    raise again (the recipe in Python's signal module documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("serveplan")
    except PackageNotFoundError:  # run from a source tree that was never installed
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _signal_exit(name: str | None) -> int | None:
    """The shell's exit status for death by that signal: 128 + its number (SIGINT 130, SIGTERM 143)."""
    import signal

    if not name:
        return None
    try:
        return 128 + int(signal.Signals[name])
    except KeyError:
        return None


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Flags for argparse vs Hydra overrides (key=value without a leading dash)."""
    flags, overrides = [], []
    for a in argv:
        (overrides if "=" in a and not a.startswith("-") else flags).append(a)
    return flags, overrides


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="catalog name or alias (llama-70b), or a path to a HF config.json / folder")
    p.add_argument("--gpus", help="COUNTxGPU or NODESxCOUNTxGPU, e.g. 2xA100, 8xH100, 2x8xH100, 1xRTX4090")
    p.add_argument("--traffic", help="preset (chat, rag, summarize, codegen, long-generation, offline-batch) "
                                     "or a YAML file")
    p.add_argument("--engine", help="vllm (default), trtllm or sglang")
    p.add_argument("--json", action="store_true", help="print a machine-readable document instead of tables")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[METHOD=]PATH_OR_ID",
                   help="serve your own checkpoint for a weight method (awq=./llama-awq); METHOD may be left out "
                        "for a local folder whose config.json declares its quantization")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return v


def port(text: str) -> int:
    """argparse type: a TCP port a server can listen on."""
    v = positive_int(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a port (1-65535)")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        from serveplan.errors import ConfigError

        raise ConfigError(f"{message} (see {self.prog} --help).")


# ------------------------------------------------------------------------------------------------ plan
SUBCOMMAND_HELP = {
    "estimate": "predict one fixed configuration (plan estimate --model M --gpus G --weights fp8 ...)",
    "launch": "start a plan's winner, wait for health, supervise (plan launch DIR [--dry-run|--detach])",
    "stop": "stop a detached launch (plan stop DIR)",
    "calibrate": "fit engine terms to benchmarks of a plan (plan calibrate DIR --bench a.json b.json)",
    "bench": "load-test an OpenAI-compatible endpoint with a traffic profile (also the `bench` command)",
    "verify": "launch a plan, bench it at the planned load, compare predicted vs measured",
    "profile": "measure this machine's GPU into a hardware profile (needs torch with CUDA)",
    "quantize": "make a quantized checkpoint vLLM loads (fp8, w8a8, gptq, awq) for awq/gptq/int8 plans",
    "models": "list the catalog's models (and their published quantized checkpoints)",
    "gpus": "list the catalog's GPUs (memory, bandwidth, price)",
    "traffic": "list the traffic presets",
}


def _subcommands_epilog(prog: str) -> str:
    lines = [f"subcommands ({prog} SUBCOMMAND --help for each):"]
    for name in SUBCOMMANDS:
        lines.append(f"  {name:<9} {SUBCOMMAND_HELP.get(name, '')}".rstrip())
    return "\n".join(lines)


def _plan(argv: list[str], prog: str = "plan") -> int:
    flags, overrides = _split(argv)
    names = ", ".join(SUBCOMMANDS)
    p = _Parser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                description=f"Plan how to serve a model on GPUs under a traffic profile and SLOs.\n"
                f"Extra key=value arguments are Hydra overrides, e.g. traffic=rag slo.ttft_p99_ms=800.\n"
                f"Subcommands: {names} ({prog} SUBCOMMAND --help).",
                epilog=_subcommands_epilog(prog))
    p.add_argument("--version", action="version", version=f"serveplan {_version()}")
    _common(p)
    p.add_argument("-o", "--out", default="plan-out", help="output folder for plan.yaml and launch files")
    p.add_argument("--no-write", action="store_true", help="print only; write nothing")
    if not argv:  # nothing asked: say what can be asked rather than plan a default model
        p.print_help()
        return 0
    a = p.parse_args(flags)

    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.planner.report import plan_json, render_plan, write_outdir

    if a.model is not None and not a.model.strip():
        from serveplan.errors import ConfigError

        raise ConfigError("--model is empty; give a catalog name (e.g. llama-70b) or a path to a config.json.")
    req = build_request(model=a.model, gpus=a.gpus, traffic=a.traffic, engine=a.engine,
                        overrides=overrides + _checkpoint_overrides(a.checkpoint))
    result = plan(req)
    written: list[Path] = []
    if not a.no_write:
        _refuse_running_folder(Path(a.out))
        written = write_outdir(result, Path(a.out), extra_files=_artifact_files)
    if a.json:
        doc = plan_json(result)
        doc["written"] = [str(w) for w in written]
        print(json.dumps(doc, indent=1))
    else:
        con = _console()
        render_plan(result, con)
        if written:
            con.print(f"Wrote {a.out}/plan.yaml and {len(written) - 2} launch files. "
                      f"Launch it: plan launch {a.out}")
    return 0 if result.winner.meets_slo else EXIT_SLO_NOT_MET


def _refuse_running_folder(out: Path) -> None:
    """Re-planning into a folder whose launch still runs would replace the run.json that `plan stop` needs."""
    from serveplan.errors import ConfigError
    from serveplan.launcher.launch import running_groups

    live = running_groups(out)
    if live:
        raise ConfigError(f"'{out}' holds a running launch (process groups {', '.join(map(str, live))}); stop it "
                          f"with `plan stop {out}` or write this plan elsewhere with -o.")


def _checkpoint_overrides(specs: list[str]) -> list[str]:
    """--checkpoint [METHOD=]PATH_OR_ID -> model.checkpoints.METHOD=PATH_OR_ID overrides."""
    from serveplan.errors import ConfigError
    from serveplan.planner.checkpoints import QUANTIZE_METHOD, detect_format

    out = []
    for spec in specs:
        method, eq, where = spec.partition("=")
        if not eq:
            where = spec
            method, _ = detect_format(where)
            if method is None:
                raise ConfigError(f"--checkpoint {spec}: cannot tell its weight method (no quantization_config "
                                  f"in a local config.json); write METHOD=PATH with METHOD one of "
                                  f"{', '.join(QUANTIZE_METHOD)}.")
        elif method not in QUANTIZE_METHOD:
            raise ConfigError(f"--checkpoint {spec}: '{method}' is not a weight method; use one of "
                              f"{', '.join(QUANTIZE_METHOD)}.")
        out.append(f"model.checkpoints.{method}={where}")
    return out


def _artifact_files(plan) -> dict[str, str]:  # noqa: ANN001
    from serveplan.render.targets import render_artifacts

    return render_artifacts(plan)


# ------------------------------------------------------------------------------------------------ estimate
# The Candidate fields `plan estimate` sets from flags, and the flag names users know them by.
ESTIMATE_KNOBS = {"weight_dtype": "--weights", "kv_cache_dtype": "--kv-cache-dtype", "tp": "--tp", "pp": "--pp",
                  "replicas": "--replicas", "max_num_seqs": "--max-num-seqs",
                  "max_num_batched_tokens": "--max-num-batched-tokens", "chunked_prefill": "--no-chunked-prefill"}


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
def _estimate(argv: list[str]) -> int:
    flags, overrides = _split(argv)
    p = _Parser(prog="plan estimate", description="Predict one fixed configuration under a fixed workload.")
    _common(p)
    knobs = _candidate_flags(p)
    p.add_argument("--max-model-len", type=positive_int, help="context to provision (default: from the traffic)")
    p.add_argument("--input-len", type=positive_int, help="fixed prompt length (else the traffic's distribution)")
    p.add_argument("--output-len", type=positive_int, help="fixed output length (else the traffic's distribution)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--concurrency", type=positive_int, help="closed loop: this many concurrent clients")
    g.add_argument("--rate", type=positive_float, help="open loop: Poisson arrivals at this many requests/s")
    a = p.parse_args(flags)

    from pydantic import ValidationError

    from serveplan.errors import ConfigError
    from serveplan.planner.config import build_request
    from serveplan.planner.estimate import estimate
    from serveplan.planner.report import candidate_doc, render_estimate
    from serveplan.planner.spec import Candidate

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
    req = build_request(model=a.model, gpus=a.gpus, traffic=a.traffic, engine=a.engine, overrides=ovs)
    try:
        cand = Candidate(engine=req.engine.name, max_model_len=req.max_model_len,
                         gpu_memory_utilization=req.engine.gpu_memory_utilization,
                         **{f: getattr(a, f) for f in knobs})
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"Invalid configuration: {'.'.join(map(str, err['loc']))}: {err['msg']} "
                          f"(got {err.get('input')!r}).") from None
    from serveplan.planner.memory import start_problems

    problems = start_problems(req.model, cand)
    if problems:
        raise ConfigError(f"The engine would refuse this configuration: {'; '.join(problems)}.")
    if cand.total_gpus > req.inventory.total_gpus:
        raise ConfigError(f"TP{cand.tp} x PP{cand.pp} x {cand.replicas} replicas needs {cand.total_gpus} GPUs; "
                          f"the inventory has {req.inventory.total_gpus} ({req.inventory.describe()}).")
    est = estimate(req, cand)
    if a.json:
        print(json.dumps(candidate_doc(est), indent=1))
        return 0 if est.memory.fits else 2
    render_estimate(est, req, _console())
    return 0 if est.memory.fits else 2


# ------------------------------------------------------------------------------------------------ launch
def _launch(argv: list[str]) -> int:
    p = _Parser(prog="plan launch", description="Start the planned engine(s), wait for health, smoke-test, "
                "supervise until Ctrl-C.")
    p.add_argument("plan_dir", help="folder holding plan.yaml (plan -o)")
    p.add_argument("--model", help="checkpoint path or HF id to serve instead of the plan's; it must hold the "
                   "planned precision")
    p.add_argument("--dry-run", action="store_true", help="print what would run; start and write nothing")
    p.add_argument("--force", action="store_true", help="launch even if the visible GPUs do not match the plan")
    p.add_argument("--port", type=port, default=8000, help="first replica's port")
    p.add_argument("--health-timeout", type=positive_float, default=900.0, help="seconds to wait for /health")
    p.add_argument("--detach", action="store_true", help="return once healthy; stop later with plan stop DIR")
    p.add_argument("--engine-args", default="", help="extra engine flags, checked against the engine's flag "
                   "schema (e.g. --engine-args='--load-format dummy')")
    a = p.parse_args(argv)
    import shlex
    from serveplan.launcher.launch import launch_plan

    try:
        rec = launch_plan(Path(a.plan_dir), model=a.model, dry_run=a.dry_run, force=a.force, base_port=a.port,
                          health_timeout_s=a.health_timeout, detach=a.detach,
                          extra_args=tuple(shlex.split(a.engine_args)))
    except KeyboardInterrupt:
        # Stopped by a signal while starting: the engines are stopped and run.json says which signal.
        print("interrupted", file=sys.stderr)
        return _signal_exit(_own_stop_signal(Path(a.plan_dir))) or 130
    if a.dry_run or a.detach:
        return 0
    # Foreground: launch_plan returned because SIGINT/SIGTERM asked it to stop; exit as the shell would
    # report a process ended by that signal (130 for Ctrl-C, 143 for SIGTERM).
    return _signal_exit(rec.stop_signal) or 0


def _own_stop_signal(plan_dir: Path) -> str | None:
    """The stop signal this process recorded in plan_dir's run.json (None if run.json is another's)."""
    try:
        from serveplan.launcher.launch import read_run

        rec = read_run(plan_dir if plan_dir.is_dir() else plan_dir.parent)
    except Exception:  # noqa: BLE001 - best effort: no run.json, or unreadable
        return None
    return rec.stop_signal if rec.supervisor_pid == os.getpid() else None


def _stop(argv: list[str]) -> int:
    p = _Parser(prog="plan stop", description="Stop a detached launch.")
    p.add_argument("plan_dir")
    a = p.parse_args(argv)
    from serveplan.launcher.launch import stop_run

    stop_run(Path(a.plan_dir), console=_console())
    return 0


def _calibrate(argv: list[str]) -> int:
    p = _Parser(prog="plan calibrate", description="Fit the engine-level terms (per-step and per-request "
                "overheads, achieved bandwidth and compute) to benchmarks of a plan's configuration and store "
                "them as an engine calibration the planner applies.")
    p.add_argument("plan_dir", help="folder holding the plan.yaml whose winner was benchmarked")
    p.add_argument("--bench", nargs="+", required=True, type=Path,
                   help="closed-loop results: serveplan `bench -o` JSON or `vllm bench serve --save-result` JSON")
    p.add_argument("--out", type=Path, help="profiles folder to write into (default ~/.serveplan/profiles)")
    p.add_argument("--trials", type=int, default=120)
    a = p.parse_args(argv)
    from serveplan.bench.results import read_bench_summary
    from serveplan.planner.calibrate import (BenchPoint, fit_calibration, observations, predict_observation,
                                             write_calibration)
    from serveplan.planner.profiles import USER_PROFILES
    from serveplan.planner.result import load_plan

    plan = load_plan(a.plan_dir)
    points = []
    for f in a.bench:
        s, model = read_bench_summary(f)
        points.append(BenchPoint(label=str(f), model=model, completed=s.completed,
                                 total_input_tokens=s.total_input_tokens, total_output_tokens=s.total_output_tokens,
                                 concurrency=s.concurrency_limit, ttft_ms=s.ttft_ms.mean, tpot_ms=s.tpot_ms.mean,
                                 throughput_tok_s=s.output_tok_s))
    obs = observations(plan, points)
    cal = fit_calibration(obs, source=", ".join(str(b) for b in a.bench), n_trials=a.trials)
    path = write_calibration(cal, a.out or USER_PROFILES)
    con = _console()
    for o in obs:
        pr = predict_observation(o, cal)
        con.print(f"{o.input_len}/{o.output_len} tokens x {o.concurrency}: TTFT {o.ttft_ms:.1f} -> "
                  f"{pr['ttft_ms']:.1f} ms, TPOT {o.tpot_ms:.2f} -> {pr['tpot_ms']:.2f} ms (measured -> fitted)")
    con.print(f"Wrote {path} (loss {cal.fit.get('loss', 0):.3f} over {len(obs)} points); plans for "
              f"{cal.gpu} on {cal.engine} {cal.engine_version} now use it.")
    return 0


def _catalog_list(what: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        p = _Parser(prog=f"plan {what}", description=f"List the built-in {what} (serveplan/conf).")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        a = p.parse_args(argv)
        from serveplan.planner.report import catalog_rows

        header, rows = catalog_rows(what)
        if a.json:
            print(json.dumps([dict(zip(header, r)) for r in rows], indent=1))
            return 0
        from rich.table import Table

        t = Table(header_style="bold")
        for h in header:
            t.add_column(h)
        for r in rows:
            t.add_row(*map(str, r))
        _console().print(t)
        return 0

    return run


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "estimate": _estimate, "launch": _launch, "stop": _stop, "calibrate": _calibrate,
    "models": _catalog_list("models"), "gpus": _catalog_list("gpus"), "traffic": _catalog_list("traffic"),
}


def _lazy(module: str, func: str = "main") -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(argv) or 0)

    return run


SUBCOMMANDS.update({
    "bench": _lazy("serveplan.cli.bench"),
    "verify": _lazy("serveplan.cli.verify"),
    "profile": _lazy("serveplan.cli.profile"),
    "quantize": _lazy("serveplan.cli.quantize"),
})


def plan_main(argv: list[str] | None = None, prog: str = "plan") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plan":  # `serveplan plan ...` (and `serveplan plan launch ...`)
        argv = argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        return _guard(SUBCOMMANDS[argv[0]], argv[1:])
    return _guard(lambda args: _plan(args, prog=prog), argv)


def main(argv: list[str] | None = None) -> int:
    """`serveplan plan|estimate|launch|stop|bench|verify|profile|quantize ...`"""
    return plan_main(argv, prog="serveplan")


def bench_main() -> int:
    return _guard(SUBCOMMANDS["bench"], sys.argv[1:])


def verify_main() -> int:
    return _guard(SUBCOMMANDS["verify"], sys.argv[1:])


def profile_main() -> int:
    return _guard(SUBCOMMANDS["profile"], sys.argv[1:])


def quantize_main() -> int:
    return _guard(SUBCOMMANDS["quantize"], sys.argv[1:])


if __name__ == "__main__":
    sys.exit(plan_main())
