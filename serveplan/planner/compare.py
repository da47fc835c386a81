"""Comparing configurations on the same hardware and traffic (`plan compare`): one row of figures per labelled
estimate, and the deltas of B against A.

Each estimate is the step-level simulation at the offered load plus its capacity at the SLO
(capacity.capacity_at_slo). The figures a comparison shows are `METRICS`, in that order; `compare_doc` is the
machine-readable document (`plan compare --json`) and the input of the HTML dashboard, which takes any number
of labelled estimates (a fleet of them later), not only two.
"""

from __future__ import annotations

from dataclasses import dataclass

from serveplan.planner.result import Estimate
from serveplan.planner.spec import PlanRequest

# (key, what it is, unit, better when "lower" or "higher"): the rows of a comparison, in order.
METRICS: list[tuple[str, str, str, str]] = [
    ("weights_gb", "weights per GPU", "GB", "lower"),
    ("kv_cache_gb", "KV cache per GPU", "GB", "higher"),
    ("kv_tokens", "KV tokens per replica", "tokens", "higher"),
    ("ttft_p50_ms", "TTFT P50", "ms", "lower"),
    ("ttft_p99_ms", "TTFT P99", "ms", "lower"),
    ("tpot_p50_ms", "TPOT P50", "ms", "lower"),
    ("tpot_p99_ms", "TPOT P99", "ms", "lower"),
    ("e2e_p50_ms", "E2E P50", "ms", "lower"),
    ("e2e_p99_ms", "E2E P99", "ms", "lower"),
    ("goodput_rps", "goodput within SLO", "req/s", "higher"),
    ("capacity_rps", "capacity at SLO", "req/s", "higher"),
    ("capacity_rps_per_gpu", "capacity at SLO per GPU", "req/s", "higher"),
    ("capacity_tok_s_per_gpu", "capacity at SLO per GPU", "tok/s", "higher"),
    ("cost_per_1m_tokens", "$/1M output tokens at the offered load", "$", "lower"),
    ("cost_per_1m_tokens_at_capacity", "$/1M output tokens at capacity", "$", "lower"),
    ("quality_cost_pct", "stated quality cost, perplexity", "%", "lower"),
]


@dataclass(frozen=True)
class Labelled:
    """One configuration of a comparison: its label (A, B, a fleet member's name), what the user asked for,
    and its estimate (with capacity at the SLO filled where the traffic is open loop)."""

    label: str
    estimate: Estimate
    spec: str = ""


def figures(e: Estimate) -> dict[str, float | int | None]:
    """The METRICS of one estimate; None where it has no such figure (no predictions, closed loop capacity)."""
    m, p, c = e.memory, e.predictions, e.config
    out: dict[str, float | int | None] = {k: None for k, *_ in METRICS}
    out.update(weights_gb=m.weights_gb, kv_cache_gb=m.kv_cache_gb, kv_tokens=m.kv_tokens,
               quality_cost_pct=e.quality_cost)
    if p is not None:
        out.update(ttft_p50_ms=p.ttft_ms.p50, ttft_p99_ms=p.ttft_ms.p99, tpot_p50_ms=p.tpot_ms.p50,
                   tpot_p99_ms=p.tpot_ms.p99, e2e_p50_ms=p.e2e_ms.p50, e2e_p99_ms=p.e2e_ms.p99,
                   goodput_rps=p.goodput_rps, cost_per_1m_tokens=p.cost_per_1m_tokens,
                   capacity_rps=p.capacity_rps,
                   capacity_rps_per_gpu=None if p.capacity_rps is None else p.capacity_rps / c.total_gpus,
                   capacity_tok_s_per_gpu=p.capacity_tok_s_per_gpu,
                   cost_per_1m_tokens_at_capacity=p.cost_per_1m_tokens_at_capacity)
    return out


def delta(a: float | None, b: float | None) -> dict[str, float | None]:
    """B vs A: {"delta": b - a, "pct": (b - a) / |a| x 100}; None where either is missing (pct also where a is 0)."""
    if a is None or b is None:
        return {"delta": None, "pct": None}
    return {"delta": b - a, "pct": (b - a) / abs(a) * 100 if a != 0 else None}


def deltas(a: Estimate, b: Estimate) -> dict[str, dict[str, float | None]]:
    """Every METRIC of B against A."""
    fa, fb = figures(a), figures(b)
    return {k: delta(fa[k], fb[k]) for k, *_ in METRICS}


def _r(x: float | int | None) -> float | int | None:
    return x if x is None or isinstance(x, int) else round(x, 4)


def compare_doc(req: PlanRequest, items: list[Labelled]) -> dict:
    """The JSON document of a comparison: the shared request, each configuration's figures (and the full
    candidate document), and with two or more the deltas of each later one against the first."""
    from serveplan.planner.report import candidate_doc

    t = req.traffic
    doc: dict = {
        "model": req.model.name, "gpus": req.inventory.describe(), "engine": f"{req.engine.name} {req.engine.version}",
        "traffic": t.name, "load": ({"mode": "closed", "concurrency": t.concurrency} if t.is_closed_loop
                                    else {"mode": "open", "rate_rps": t.rate_rps}),
        "input_len_mean": t.input_len.mean, "output_len_mean": t.output_len.mean,
        "slo": req.slo.model_dump(exclude_none=True),
        "metrics": [{"key": k, "name": n, "unit": u, "better": b} for k, n, u, b in METRICS],
        "configs": [{"label": x.label, "spec": x.spec, "candidate": x.estimate.config.label(),
                     "gpus": x.estimate.config.total_gpus,
                     "figures": {k: _r(v) for k, v in figures(x.estimate).items()},
                     "estimate": candidate_doc(x.estimate)} for x in items],
    }
    if len(items) >= 2:
        base = items[0]
        doc["deltas"] = {x.label: {k: {kk: _r(vv) for kk, vv in d.items()}
                                   for k, d in deltas(base.estimate, x.estimate).items()}
                         for x in items[1:]}
        doc["deltas_against"] = base.label
    return doc


def render_compare(req: PlanRequest, items: list[Labelled], console) -> None:  # noqa: ANN001 (rich Console)
    """Side by side: one column per configuration, then B vs A (delta and %) for each later one."""
    from rich.table import Table

    t = req.traffic
    load = f"{t.concurrency} clients" if t.is_closed_loop else f"{t.rate_rps:g} req/s"
    slo = ", ".join(f"{m.upper()} {p.upper()} <= {v:,.0f} ms" for m, p, v in req.slo.latency_targets()) or "none"
    console.print(f"[bold]{req.model.name}[/] on [bold]{req.inventory.describe()}[/] with {req.engine.name} "
                  f"{req.engine.version}; traffic [bold]{t.name}[/] (prompt ~{t.input_len.mean:,.0f}, output "
                  f"~{t.output_len.mean:,.0f} tokens, {load}); SLO {slo}")
    for x in items:
        console.print(f"[bold]{x.label}[/]: {x.estimate.config.label()}"
                      + (f"  ({x.spec})" if x.spec else ""))
    tab = Table(header_style="bold")
    tab.add_column("figure", justify="left")
    for x in items:
        tab.add_column(x.label, justify="right")
    base = items[0]
    for x in items[1:]:
        tab.add_column(f"{x.label} vs {base.label}", justify="right")
    figs = [figures(x.estimate) for x in items]
    for key, name, unit, better in METRICS:
        row = [name if unit == "$" else f"{name} ({unit})"] + [format_value(f[key], unit) for f in figs]
        for x, f in zip(items[1:], figs[1:]):
            d = delta(figs[0][key], f[key])
            row.append(_fmt_delta(d, unit, better))
        tab.add_row(*row)
    console.print(tab)
    if t.is_closed_loop:
        console.print("Closed loop: capacity at the SLO needs an arrival rate (--rate), so it is not computed.")
    console.print("At the offered load: the simulation's percentiles and what it serves within the SLO; at "
                  "capacity: the highest arrival rate with every SLO percentile met (good to ~10-25%). Quality "
                  "is the stated perplexity cost of the weight precision (conf/quantization.yaml).")
    for x in items:
        if x.estimate.violations:
            console.print(f"[yellow]{x.label} misses the SLO at the offered load:[/] "
                          f"{'; '.join(x.estimate.violations)}")


def format_value(v: float | int | None, unit: str) -> str:
    """One figure as the table and the dashboard show it."""
    if v is None:
        return "-"
    if unit == "$":
        return f"${v:,.3f}"
    if unit == "tokens":
        return f"{int(v):,}"
    if unit in ("req/s", "%"):
        return f"{v:,.2f}"
    return f"{v:,.1f}"


def format_delta(d: dict[str, float | None], unit: str) -> str:
    """B's delta against A (see `delta`): signed value and percentage, uncoloured."""
    if d["delta"] is None:
        return "-"
    dv = d["delta"]
    sign = "+" if dv > 0 else ""
    txt = f"{sign}{format_value(dv, unit) if unit != '$' else ('-' if dv < 0 else '') + format_value(abs(dv), unit)}"
    if d["pct"] is not None:
        txt += f" ({d['pct']:+.1f}%)"
    return txt


def _fmt_delta(d: dict[str, float | None], unit: str, better: str) -> str:
    """format_delta, green where B is better and red where it is worse."""
    txt = format_delta(d, unit)
    dv = d["delta"]
    if not dv:  # no delta, or none
        return txt
    good = (dv < 0) == (better == "lower")
    return f"[green]{txt}[/]" if good else f"[red]{txt}[/]"
