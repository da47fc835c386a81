"""`plan compare --model M --gpus G --a "weights=awq tp=2" --b "weights=fp8 tp=2"`: two configurations on the
same hardware and traffic, side by side, with B's deltas against A; `--html FILE` writes the cost-attribution
dashboard (plots), `--measured A=verify_a.json,B=verify_b.json` adds what `verify` measured.

A configuration is `plan estimate`'s configuration flags written without their dashes, as key=value words in
one argument: weights, kv-cache-dtype, tp, pp, replicas, max-num-seqs, max-num-batched-tokens, and the bare word
no-chunked-prefill. What is not given takes estimate's default. The workload flags (--input-len, --output-len,
--rate, --concurrency, --max-model-len) and Hydra overrides apply to both.
"""

from __future__ import annotations

import json
import shlex

from serveplan.cli.args import REQUEST_VALUE_FLAGS, _Parser, add_request_flags, split_overrides
from serveplan.cli.boundary import _console
from serveplan.cli.estimate import ESTIMATE_KNOBS, _candidate_flags, add_workload_flags, build_candidate, workload_request

VALUE_FLAGS = ("--a", "--b", "--measured", "--html", *REQUEST_VALUE_FLAGS)


def parse_config(text: str, label: str) -> dict:
    """The Candidate knobs of one `--a`/`--b` value ("weights=awq tp=2 no-chunked-prefill"), parsed by the same
    flags `plan estimate` has; a wrong word is one sentence naming the configuration."""
    from serveplan.errors import ConfigError

    flag_names = {f.lstrip("-") for f in ESTIMATE_KNOBS.values()} | {"chunked-prefill"}
    argv: list[str] = []
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"Configuration {label} {text!r} does not parse ({e}).") from None
    for w in words:
        key, eq, value = w.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if key == "chunked-prefill" and eq:
            if value.lower() in ("false", "off", "no", "0"):
                argv.append("--no-chunked-prefill")
            elif value.lower() not in ("true", "on", "yes", "1"):
                raise ConfigError(f"Configuration {label}: chunked-prefill={value!r} must be true or false.")
            continue
        if key not in flag_names or (key == "no-chunked-prefill") == bool(eq):
            raise ConfigError(f"Configuration {label}: {w!r} is not a setting; write key=value words from "
                              f"{', '.join(sorted(flag_names - {'no-chunked-prefill', 'chunked-prefill'}))}, or "
                              f"the bare word no-chunked-prefill (e.g. --{label.lower()} \"weights=fp8 tp=2\").")
        argv += [f"--{key}", value] if eq else [f"--{key}"]
    class _ConfigParser(_Parser):
        def error(self, message: str) -> None:
            raise ConfigError(f"Configuration {label} ({text!r}): {message.removeprefix('argument ')}.")

    p = _ConfigParser(prog=f"plan compare --{label.lower()}", add_help=False)
    knobs = _candidate_flags(p)
    ns = p.parse_args(argv)
    return {f: getattr(ns, f) for f in knobs}


def parse_measured(text: str, labels: list[str]) -> dict[str, str]:
    """`A=verify_a.json,B=verify_b.json` -> {label: path}; labels must be those of the configurations."""
    from serveplan.errors import ConfigError

    out: dict[str, str] = {}
    for part in (x.strip() for x in text.split(",") if x.strip()):
        label, eq, path = part.partition("=")
        if not eq or not path:
            raise ConfigError(f"--measured {part!r}: write LABEL=FILE pairs separated by commas "
                              f"(e.g. A=verify_a.json,B=verify_b.json).")
        if label.strip() not in labels:
            raise ConfigError(f"--measured names {label.strip()!r}; the configurations are {' and '.join(labels)}.")
        out[label.strip()] = path.strip()
    return out


def main(argv: list[str]) -> int:
    flags, overrides = split_overrides(argv, VALUE_FLAGS)
    p = _Parser(prog="plan compare", description="Two configurations on the same hardware and traffic, side by "
                "side: memory, latency percentiles, goodput and capacity at the SLO, $/1M tokens, quality, and "
                "B's deltas against A.")
    add_request_flags(p)
    add_workload_flags(p)
    p.add_argument("--a", required=True, metavar="'KEY=VALUE ...'",
                   help="configuration A: estimate's flags without dashes, e.g. \"weights=awq tp=2\"")
    p.add_argument("--b", required=True, metavar="'KEY=VALUE ...'",
                   help="configuration B, the same way (its deltas are against A)")
    p.add_argument("--html", metavar="FILE", help="also write the cost-attribution dashboard (HTML with plots)")
    p.add_argument("--measured", metavar="A=FILE,B=FILE",
                   help="verify.json (or bench JSON) of a configuration: the dashboard shows predicted vs measured")
    a = p.parse_args(flags)

    from serveplan.errors import ConfigError
    from serveplan.planner.capacity import capacity_at_slo
    from serveplan.planner.compare import Labelled, compare_doc, render_compare
    from serveplan.planner.estimate import Scorer

    labels = ["A", "B"]
    measured_files = parse_measured(a.measured, labels) if a.measured else {}
    if measured_files and not a.html:
        raise ConfigError("--measured is shown in the dashboard: add --html FILE.")
    knobs = {"A": parse_config(a.a, "A"), "B": parse_config(a.b, "B")}
    req = workload_request(a, overrides)
    cands = {lb: build_candidate(req, knobs[lb], f"configuration {lb}") for lb in labels}
    scorer = Scorer(req)
    items = []
    for lb in labels:
        # an open loop's is simulated by capacity_at_slo (on the reported sample); a closed loop's here
        est = scorer.score(cands[lb], simulated=req.traffic.is_closed_loop)
        if not est.memory.fits:
            raise ConfigError(f"Configuration {lb} ({getattr(a, lb.lower())}: {est.config.label()}) does not fit: "
                              f"{est.memory.reason.rstrip('.')}.")
        items.append(Labelled(label=lb, estimate=capacity_at_slo(scorer, est), spec=getattr(a, lb.lower())))
    measured = {}
    if measured_files:
        from serveplan.bench.results import read_bench_summary

        measured = {lb: read_bench_summary(f)[0] for lb, f in measured_files.items()}
    if a.html:
        from serveplan.bench.dashboard import write_dashboard

        write_dashboard(items, a.html, req=req, measured=measured)
    if a.json:
        print(json.dumps(compare_doc(req, items), indent=1))
    else:
        render_compare(req, items, _console())
        if a.html:
            _console().print(f"Wrote {a.html}")
    return 0
