"""The cost-attribution dashboard: a self-contained HTML file comparing labelled estimates (`plan compare --html`;
a fleet's configurations later), with plots embedded as PNG.

`write_dashboard(items, path, req=..., measured=...)` draws, per configuration: $ per 1M output tokens at the
offered load and at capacity (bars), TTFT/TPOT/E2E percentiles (grouped bars, the SLO as a line), capacity at
the SLO per GPU (req/s and tok/s), memory per GPU (weights / KV cache / other), and, for the configurations
given a measurement (verify.json or bench JSON, read by results.read_bench_summary), predicted vs measured
percentiles side by side. Tables below carry the same numbers. Needs matplotlib (the `plots` extra), imported
only here and only when a dashboard is written.
"""

from __future__ import annotations

import html
from pathlib import Path

from serveplan.bench.report import _CSS, _png, _Raw, _table
from serveplan.bench.results import BenchSummary
from serveplan.errors import ConfigError
from serveplan.fileio import write_atomic
from serveplan.planner.compare import METRICS, Labelled, delta, figures, format_delta, format_value
from serveplan.planner.spec import PlanRequest

NEED_MATPLOTLIB = "The dashboard's plots need matplotlib: pip install 'serveplan[plots]'."
PCTS = ("p50", "p90", "p99")
KINDS = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E"))


def _figure_module():  # noqa: ANN202
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(NEED_MATPLOTLIB) from None
    return Figure


def _bars(ax, groups: list[str], series: list[tuple[str, list[float | None]]], *, fmt: str = "{:,.0f}",  # noqa: ANN001
          styles: list[dict] | None = None) -> None:
    """Grouped bars: one group per entry of `groups`, one bar per series (label, values), styled by `styles`
    (matplotlib bar keywords per series) where given; values printed above."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (label, values) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ys = [float("nan") if v is None else v for v in values]
        colors = [f"C{g}" for g in range(len(groups))] if n == 1 else None  # one series: a colour per group
        style = styles[i] if styles else {"color": colors}
        bars = ax.bar(xs, ys, width, label=label, **style)
        ax.bar_label(bars, labels=["-" if v is None else fmt.format(v) for v in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)


def _plots(items: list[Labelled], req: PlanRequest | None, measured: dict[str, BenchSummary]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of each figure."""
    Figure = _figure_module()
    labels = [x.label for x in items]
    figs = [figures(x.estimate) for x in items]
    out: list[tuple[str, str]] = []

    fig = Figure(figsize=(13, 3.8))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _bars(ax1, labels, [("at the offered load", [f["cost_per_1m_tokens"] for f in figs]),
                        ("at capacity (SLO met)", [f["cost_per_1m_tokens_at_capacity"] for f in figs])],
          fmt="${:,.2f}")
    ax1.set_title("$ per 1M output tokens")
    ax1.legend(fontsize=8)
    _bars(ax2, labels, [("req/s per GPU", [f["capacity_rps_per_gpu"] for f in figs])], fmt="{:,.2f}")
    ax2.set_title("Capacity at the SLO: req/s per GPU")
    _bars(ax3, labels, [("tok/s per GPU", [f["capacity_tok_s_per_gpu"] for f in figs])])
    ax3.set_title("Capacity at the SLO: output tok/s per GPU")
    out.append(("Cost and capacity", _png(fig)))

    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (key, name) in zip(axes, KINDS):
        series = []
        for x in items:
            p = x.estimate.predictions
            series.append((x.label, [None if p is None else getattr(p, key).at(q) for q in PCTS]))
        _bars(ax, [q.upper() for q in PCTS], series, fmt="{:,.0f}" if key != "tpot_ms" else "{:,.1f}")
        if req is not None:
            for m, q, limit in req.slo.latency_targets():
                if f"{m}_ms" == key:
                    ax.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"SLO {q.upper()}")
        ax.set_title(f"{name} (ms) at the offered load")
        ax.legend(fontsize=8)
    out.append(("Latency percentiles", _png(fig)))

    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots(1, 1)
    bottom = [0.0] * len(items)
    for part, getter in (("weights", lambda m: m.weights_gb), ("KV cache", lambda m: max(m.kv_cache_gb, 0.0)),
                         ("other", lambda m: m.other_gb)):
        vals = [getter(x.estimate.memory) for x in items]
        bars = ax.bar(labels, vals, 0.5, bottom=bottom, label=part)
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], label_type="center", fontsize=8)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("GB per GPU")
    ax.set_title("Memory per GPU")
    ax.legend(fontsize=8)
    out.append(("Memory per GPU", _png(fig)))

    shown = [x for x in items if x.label in measured and x.estimate.predictions is not None]
    if shown:
        fig = Figure(figsize=(13, 3.8))
        axes = fig.subplots(1, 3)
        for ax, (key, name) in zip(axes, KINDS):
            series, styles = [], []
            for x in shown:  # a configuration keeps its colour: predicted solid, measured hatched
                p, s = x.estimate.predictions, measured[x.label]
                colour = f"C{items.index(x)}"
                series.append((f"{x.label} predicted", [getattr(p, key).at(q) for q in ("p50", "p99")]))
                styles.append({"color": colour})
                series.append((f"{x.label} measured", [getattr(s, key).at(q) for q in ("p50", "p99")]))
                styles.append({"color": "white", "edgecolor": colour, "hatch": "///", "linewidth": 1.2})
            _bars(ax, ["P50", "P99"], series, fmt="{:,.0f}" if key != "tpot_ms" else "{:,.1f}", styles=styles)
            ax.set_title(f"{name} (ms)")
            ax.legend(fontsize=7)
        out.append(("Predicted vs measured", _png(fig)))
    return out


def _measured_rows(x: Labelled, s: BenchSummary) -> list[list]:
    p = x.estimate.predictions
    assert p is not None
    rows = []
    for key, name in KINDS:
        for q in ("p50", "p99"):
            pv, mv = getattr(p, key).at(q), getattr(s, key).at(q)
            err = None if mv is None or not pv else (mv - pv) / pv * 100
            rows.append([f"{x.label}", f"{name} {q.upper()} (ms)", f"{pv:,.1f}", format_value(mv, "ms"),
                         "-" if err is None else f"{err:+.1f}%"])
    out = s.served_output_tok_s or s.output_tok_s  # an open loop: as served while the load was on (verify's)
    err = (out - p.throughput_tok_s) / p.throughput_tok_s * 100 if p.throughput_tok_s else None
    rows.append([x.label, "output tok/s", f"{p.throughput_tok_s:,.1f}", f"{out:,.1f}",
                 "-" if err is None else f"{err:+.1f}%"])
    return rows


def write_dashboard(items: list[Labelled], path: str | Path, *, req: PlanRequest | None = None,
                    measured: dict[str, BenchSummary] | None = None, title: str | None = None) -> Path:
    """Write the dashboard of labelled estimates (deltas against the first) to `path`; returns the path.
    `measured` maps labels to what was measured for them."""
    if not items:
        raise ConfigError("The dashboard needs at least one configuration.")
    measured = dict(measured or {})
    unknown = sorted(set(measured) - {x.label for x in items})
    if unknown:
        raise ConfigError(f"Measured results for {', '.join(unknown)}, which is not a configuration of the "
                          f"dashboard ({', '.join(x.label for x in items)}).")
    figs = _plots(items, req, measured)
    title = title or ("serveplan compare — " + (f"{req.model.name} on {req.inventory.describe()}" if req
                                                   else ", ".join(x.label for x in items)))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if req is not None:
        t = req.traffic
        load = f"{t.concurrency} concurrent clients" if t.is_closed_loop else f"{t.rate_rps:g} req/s offered"
        slo = ", ".join(f"{m.upper()} {q.upper()} &le; {v:,.0f} ms" for m, q, v in req.slo.latency_targets())
        parts.append(f"<p class='muted'>{html.escape(req.engine.name)} {html.escape(req.engine.version)}; traffic "
                     f"{html.escape(t.name)} (prompt ~{t.input_len.mean:,.0f}, output ~{t.output_len.mean:,.0f} "
                     f"tokens, {load}); SLO {slo or 'none'}; "
                     f"${req.inventory.gpu.price_per_hour_usd:.2f} per GPU-hour.</p>")
    parts.append(_table(["label", "configuration", "asked for", "GPUs"],
                        [[x.label, x.estimate.config.label(), x.spec or "-", x.estimate.config.total_gpus]
                         for x in items]))
    for t_, b64 in figs:
        parts.append(f"<h2>{html.escape(t_)}</h2><img class='figure' alt='{html.escape(t_)}' "
                     f"src='data:image/png;base64,{b64}'>")
    base = items[0]
    fs = [figures(x.estimate) for x in items]
    headers = ["figure", *(x.label for x in items), *(f"{x.label} vs {base.label}" for x in items[1:])]
    rows = []
    for key, name, unit, _better in METRICS:
        row = [name if unit == "$" else f"{name} ({unit})",
               *(_Raw(html.escape(format_value(f[key], unit))) for f in fs)]
        row += [_Raw(html.escape(format_delta(delta(fs[0][key], f[key]), unit))) for f in fs[1:]]
        rows.append(row)
    parts.append("<h2>Side by side</h2>")
    parts.append(_table(headers, rows))
    parts.append("<p class='muted'>At the offered load: the simulation's percentiles and what it serves within "
                 "the SLO. At capacity: the highest arrival rate with every SLO percentile met (good to ~10-25%), "
                 "and what a million output tokens costs there. Quality: the stated perplexity cost of the weight "
                 "precision.</p>")
    if measured:
        parts.append("<h2>Predicted vs measured</h2>")
        rows = [r for x in items if x.label in measured and x.estimate.predictions is not None
                for r in _measured_rows(x, measured[x.label])]
        parts.append(_table(["label", "figure", "predicted", "measured", "measured vs predicted"],
                            [[_Raw(html.escape(str(c))) for c in r] for r in rows]))
        for lb, s in measured.items():
            load = (f"{s.offered_rps:g} req/s offered" if s.offered_rps is not None
                    else f"{s.concurrency_limit} clients" if s.concurrency_limit else "load not recorded")
            parts.append(f"<p class='note'>{html.escape(lb)} measured: {s.completed} requests ({s.failed} failed), "
                         f"{html.escape(load)}; the prediction is at this dashboard's load.</p>")
    parts.append("</body></html>")
    return write_atomic(Path(path), "\n".join(parts))
