"""`plan fleet fleet.yaml [-o DIR] [--json]`: several models with their traffic and SLOs on a mixed GPU inventory;
which pool, configuration and replicas each gets, at the least $/hour (or the most headroom within a budget)."""

from __future__ import annotations

import json
from pathlib import Path

from serveplan.cli.args import _Parser
from serveplan.cli.boundary import _console
from serveplan.cli.plan import EXIT_SLO_NOT_MET


def main(argv: list[str]) -> int:
    p = _Parser(prog="plan fleet", description="Assign several models (each with its traffic and SLO) to a mixed "
                "GPU inventory: the planner's best configuration per GPU allotment, then an integer program for "
                "the least $/hour (or, with budget_usd_per_hour, the most headroom within it).")
    p.add_argument("fleet", help="fleet YAML: models (model, traffic, slo, objective), inventory, budget_usd_per_hour")
    p.add_argument("--json", action="store_true", help="print a machine-readable document instead of tables")
    p.add_argument("-o", "--out", help="write one plan folder per model (plan.yaml, launch files, k8s/ with "
                   "the autoscalers) and fleet.yaml into this folder")
    a = p.parse_args(argv)

    from serveplan.planner.fleet import load_fleet, plan_fleet
    from serveplan.planner.report import fleet_json, render_fleet

    spec = load_fleet(a.fleet)
    fp = plan_fleet(spec)
    written = _write(fp, Path(a.fleet), Path(a.out)) if a.out else []
    if a.json:
        doc = fleet_json(fp)
        doc["written"] = [str(w) for w in written]
        print(json.dumps(doc, indent=1))
    else:
        con = _console()
        render_fleet(fp, con)
        if written:
            con.print(f"Wrote {a.out}/: fleet.yaml, fleet.json, gateway/ (LiteLLM) and a plan folder per model "
                      f"({', '.join(x.label for x in fp.allocations)}).")
    return 0 if all(x.plan.winner.meets_slo for x in fp.allocations) else EXIT_SLO_NOT_MET


def _write(fp, source: Path, out: Path) -> list[Path]:  # noqa: ANN001 (FleetPlan)
    """One folder, replaced whole (fileio.write_tree_atomic): fleet.yaml (the file as given), fleet.json, and per
    model what `plan -o` writes (plan.yaml, plan.json, launch artifacts) plus k8s/ autoscalers."""
    from serveplan.errors import ConfigError
    from serveplan.fileio import write_tree_atomic
    from serveplan.planner.report import fleet_json, plan_files
    from serveplan.render.targets import render_artifacts
    from serveplan.render.targets.autoscale import autoscale_files
    from serveplan.render.targets.common import dns_name, resolve
    from serveplan.render.targets.gateway import fleet_gateway_files

    files = {"fleet.yaml": source.read_text(), "fleet.json": json.dumps(fleet_json(fp), indent=1)}
    for x in fp.allocations:
        d = dns_name(x.label)
        for rel, text in {**plan_files(x.plan), **render_artifacts(x.plan), **autoscale_files(x)}.items():
            files[f"{d}/{rel}"] = text
    # One LiteLLM gateway in front of the fleet: each model by name at its Service, `auto` by prompt class.
    deps = [(resolve(x.plan, None, 8000), x.plan.request.traffic.name) for x in fp.allocations]
    files.update(fleet_gateway_files(deps))
    try:
        return write_tree_atomic(out, files)
    except OSError as e:
        raise ConfigError(f"Cannot write the fleet to '{out}': {e.strerror or e}; give -o a folder you can "
                          f"write to.") from None
