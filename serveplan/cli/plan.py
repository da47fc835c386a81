"""`plan --model M --gpus G [traffic=... slo....]`: search the configurations, show the ranked plan, write
plan.yaml and the launch files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from serveplan.cli.args import REQUEST_VALUE_FLAGS, _Parser, add_request_flags, checkpoint_overrides, split_overrides
from serveplan.cli.boundary import _console

EXIT_SLO_NOT_MET = 1


SIZING_NODE_GPUS = 8  # `--gpu H100` plans on one node of this many, the largest common one

def main(argv: list[str], prog: str = "plan", subcommands: dict[str, str] | None = None) -> int:
    """`subcommands`: name -> one line of help, in the order `prog --help` lists them."""
    subcommands = subcommands or {}
    flags, overrides = split_overrides(argv, REQUEST_VALUE_FLAGS)
    names = ", ".join(subcommands)
    p = _Parser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                description=f"Plan how to serve a model on GPUs under a traffic profile and SLOs.\n"
                f"Extra key=value arguments are Hydra overrides, e.g. traffic=rag slo.ttft_p99_ms=800.\n"
                f"Subcommands: {names} ({prog} SUBCOMMAND --help).",
                epilog=_subcommands_epilog(prog, subcommands))
    p.add_argument("--version", action="version", version=f"serveplan {_version()}")
    add_request_flags(p)
    p.add_argument("--gpu", help="a GPU type without a count (H100): ask how many the load needs; the plan is "
                   f"made on one {SIZING_NODE_GPUS}-GPU node of it and the Sizing line gives the count")
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
    gpus = a.gpus
    if a.gpu is not None:
        from serveplan.errors import ConfigError

        if a.gpus:
            raise ConfigError("give either --gpus COUNTxGPU (plan for that inventory) or --gpu GPU (how many do I "
                              "need), not both.")
        if "x" in a.gpu.lower().split("-")[0] and a.gpu.lower().split("x")[0].isdigit():
            raise ConfigError(f"--gpu takes a GPU type without a count (e.g. --gpu H100); for '{a.gpu}' use --gpus.")
        gpus = f"{SIZING_NODE_GPUS}x{a.gpu}"
    req = build_request(model=a.model, gpus=gpus, traffic=a.traffic, engine=a.engine,
                        overrides=overrides + checkpoint_overrides(a.checkpoint))
    from serveplan.render.engines.base import get_adapter

    get_adapter(req.engine.name, req.engine.version)  # an engine version nothing can render for: refused first
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
        if a.gpu is not None:
            con.print(f"How many {a.gpu}: planned on one {SIZING_NODE_GPUS}-GPU node; see Sizing for the count "
                      f"the offered load needs.")
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


def _artifact_files(plan) -> dict[str, str]:  # noqa: ANN001
    from serveplan.render.targets import render_artifacts

    return render_artifacts(plan)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("serveplan")
    except PackageNotFoundError:  # run from a source tree that was never installed
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # serveplan/cli/plan.py -> repo root
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _subcommands_epilog(prog: str, subcommands: dict[str, str]) -> str:
    lines = [f"subcommands ({prog} SUBCOMMAND --help for each):"]
    for name, help_ in subcommands.items():
        lines.append(f"  {name:<9} {help_}".rstrip())
    return "\n".join(lines)
