"""Command line: `plan`, `plan estimate`, `plan compare`, `plan fleet`, `plan launch`, `plan stop`, `bench`,
`verify`, `profile`, `quantize`.

CLI sugar (--model, --gpus, --traffic, --engine, -o) comes first; anything of the form key=value after it is
a Hydra override (`traffic=rag slo.ttft_p99_ms=800 search.n_trials=400`). User mistakes print one
sentence and exit 2; a failed launch exits 4; bugs keep their traceback (exit 3). SERVEPLAN_DEBUG=1
shows tracebacks for everything. A foreground `plan launch` stopped by SIGINT/SIGTERM exits 130/143; output to
a closed pipe (`plan --json | head -1`) stops quietly with 141.

This module holds the entry points and the subcommand table; boundary holds _guard (the exit statuses above)
and the console, args the parser and argument types, and each command has its module: plan, estimate, compare, launch
(launch and stop), calibrate, catalog (models, gpus, traffic), bench, verify, profile, quantize.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from serveplan.cli import calibrate, catalog, estimate, launch, plan
from serveplan.cli.boundary import _guard

# One line of help per subcommand for `plan --help`, listed in the order of SUBCOMMANDS.
SUBCOMMAND_HELP = {
    "estimate": "predict one fixed configuration (plan estimate --model M --gpus G --weights fp8 ...)",
    "compare": "two configurations side by side (plan compare ... --a \"weights=awq tp=2\" --b \"weights=fp8 tp=2\")",
    "fleet": "assign several models with their SLOs to a mixed GPU inventory (plan fleet fleet.yaml [-o DIR])",
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


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "estimate": estimate.main, "launch": launch.launch, "stop": launch.stop, "calibrate": calibrate.main,
    "models": catalog.catalog_list("models"), "gpus": catalog.catalog_list("gpus"),
    "traffic": catalog.catalog_list("traffic"),
}


def _lazy(module: str, func: str = "main") -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(argv) or 0)

    return run


SUBCOMMANDS.update({
    "compare": _lazy("serveplan.cli.compare"),
    "fleet": _lazy("serveplan.cli.fleet"),
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
    listed = {name: SUBCOMMAND_HELP.get(name, "") for name in SUBCOMMANDS}
    return _guard(lambda args: plan.main(args, prog=prog, subcommands=listed), argv)


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
