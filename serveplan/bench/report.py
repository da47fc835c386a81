"""Benchmark reports: a self-contained HTML file (plots embedded as PNG), and reading `vllm bench serve` JSON.

`write_report(results, path)` plots TTFT/TPOT/E2E CDFs (one line per load point), TTFT by prompt-length class,
and for sweeps throughput and latency against load, with matplotlib when it is installed (the `plots`
extra); without it the report has the tables only and says so. `load_vllm_bench_json(path)` reads a
`vllm bench serve --save-result` file into the same BenchSummary that serveplan's own bench produces.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from serveplan.errors import ConfigError
from serveplan.fileio import write_atomic
from serveplan.bench.results import BenchResult, BenchSummary, LatencyStats, _pct

NO_MATPLOTLIB = ("matplotlib is not installed (pip install 'serveplan[plots]'), so this report has tables "
                 "only.")


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- vLLM
def _ms_stats(d: dict, name: str, seconds_list: list | None = None) -> LatencyStats:
    """vLLM's mean_/median_/p90_/p99_<name>_ms keys; from per-request seconds where it saved them."""
    vals = None
    if seconds_list:
        flat: list[float] = []
        for x in seconds_list:
            if isinstance(x, list):
                flat.extend(float(v) * 1000 for v in x)
            elif x is not None and not (isinstance(x, float) and math.isnan(x)):
                flat.append(float(x) * 1000)
        vals = sorted(v for v in flat if v > 0 or name == "itl")
    get = lambda k: (float(d[k]) if d.get(k) is not None else None)  # noqa: E731
    st = LatencyStats(count=int(d.get("completed") or 0), mean=get(f"mean_{name}_ms"),
                      p50=get(f"median_{name}_ms") if get(f"median_{name}_ms") is not None
                      else get(f"p50_{name}_ms"), p90=get(f"p90_{name}_ms"), p99=get(f"p99_{name}_ms"))
    if vals:  # fill what the summary keys left out (vLLM prints only P99 by default)
        st.count = len(vals)
        st.p50 = st.p50 if st.p50 is not None else _pct(vals, 50)
        st.p90 = st.p90 if st.p90 is not None else _pct(vals, 90)
        st.p99 = st.p99 if st.p99 is not None else _pct(vals, 99)
        st.mean = st.mean if st.mean is not None else sum(vals) / len(vals)
        st.max = vals[-1]
    return st


def _error_kind(msg: str) -> str:
    m = msg.lower()
    if "timeout" in m or "timed out" in m:
        return "timeout"
    if "connect" in m or "refused" in m:
        return "connection"
    if any(f"{c}" in m for c in range(500, 600)) and ("http" in m or "status" in m or "internal" in m):
        return "http_5xx"
    return "other"


def load_vllm_bench_json(path: str | Path, index: int = -1) -> BenchSummary:
    """Read a `vllm bench serve --save-result` JSON (or one record of an --append-result file).

    Field names are those of vLLM 0.26's vllm/benchmarks/serve.py: completed, failed, duration,
    total_input_tokens, total_output_tokens, request_throughput, request_goodput, output_throughput,
    total_token_throughput, {mean,median,std,pXX}_{ttft,tpot,itl,e2el}_ms, max_concurrency, request_rate,
    max_concurrent_requests, and with --save-detailed the per-request ttfts/itls/latencies (seconds)/errors.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"Cannot read vLLM bench result {p}: {e.strerror or e}.") from None
    try:
        records = [json.loads(text)]
    except json.JSONDecodeError:
        try:  # --append-result: one JSON object per line
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not a vLLM bench JSON file ({e.msg}, line {e.lineno}).") from None
    if not records:
        raise ConfigError(f"{p} holds no vLLM bench result.")
    try:
        d = records[index]
    except IndexError:
        raise ConfigError(f"{p} holds {len(records)} result(s); index {index} is out of range.") from None
    if not isinstance(d, dict) or not any(k in d for k in ("mean_ttft_ms", "mean_e2el_ms", "completed")):
        raise ConfigError(f"{p} does not look like `vllm bench serve --save-result` output "
                          "(no completed / mean_ttft_ms fields).")
    dur = float(d.get("duration") or 0.0)
    out_tps = float(d.get("output_throughput") or 0.0)
    tot_tps = float(d.get("total_token_throughput") or 0.0)
    errors: dict[str, int] = {}
    for e in d.get("errors") or []:
        if e:
            k = _error_kind(str(e))
            errors[k] = errors.get(k, 0) + 1
    failed = int(d.get("failed") or sum(errors.values()))
    if failed and not errors:
        errors = {"other": failed}
    rate = d.get("request_rate")
    offered = float(rate) if isinstance(rate, (int, float)) and math.isfinite(float(rate)) else None
    if isinstance(rate, str):
        try:
            offered = float(rate) if math.isfinite(float(rate)) else None
        except ValueError:
            offered = None
    mc = d.get("max_concurrency")
    return BenchSummary(
        source="vllm-bench", completed=int(d.get("completed") or 0), failed=failed, duration_s=dur,
        total_input_tokens=int(d.get("total_input_tokens") or 0),
        total_output_tokens=int(d.get("total_output_tokens") or 0),
        ttft_ms=_ms_stats(d, "ttft", d.get("ttfts")), tpot_ms=_ms_stats(d, "tpot"),
        itl_ms=_ms_stats(d, "itl", d.get("itls")), e2e_ms=_ms_stats(d, "e2el", d.get("latencies")),
        requests_per_s=float(d.get("request_throughput") or 0.0), output_tok_s=out_tps,
        input_tok_s=max(tot_tps - out_tps, 0.0), total_tok_s=tot_tps,
        goodput_rps=float(d["request_goodput"]) if d.get("request_goodput") is not None else None,
        errors=errors, offered_rps=offered, concurrency_limit=int(mc) if mc else None,
        max_in_flight=int(d.get("max_concurrent_requests") or 0))


# ----------------------------------------------------------------------------------------------- plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _cdf(ax, values: list[float], label: str) -> None:
    xs = sorted(values)
    if not xs:
        return
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label)


def _plots(results: list[BenchResult]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each figure."""
    import matplotlib  # noqa: F401  (raises ImportError when missing)
    from matplotlib.figure import Figure

    out: list[tuple[str, str]] = []
    shown = results if len(results) <= 8 else results[:: math.ceil(len(results) / 8)]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (metric, label) in zip(axes, (("ttft_ms", "TTFT (ms)"), ("tpot_ms", "TPOT (ms)"),
                                          ("e2e_ms", "E2E latency (ms)"))):
        for r in shown:
            _cdf(ax, [getattr(q, metric) for q in r.requests if q.ok and getattr(q, metric) is not None],
                 r.load_label)
        ax.set_xlabel(label)
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
        slo_ms = _slo_limit(results[0], metric.split("_")[0])
        if slo_ms is not None:
            ax.axvline(slo_ms, color="red", linestyle="--", linewidth=1, label="SLO")
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency CDFs")
    out.append(("Latency CDFs", _png(fig)))

    # TTFT and E2E by prompt-length class for the highest load shown: starvation of long prompts shows here.
    r = results[-1]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 2)
    for ax, (metric, label) in zip(axes, (("ttft_ms", "TTFT (ms)"), ("e2e_ms", "E2E latency (ms)"))):
        for cls in ("short", "medium", "long"):
            c = next((c for c in r.classes if c.name == cls), None)
            rng = f" ({c.input_len_min}-{c.input_len_max} tok)" if c and c.input_len_min is not None else ""
            _cdf(ax, [getattr(q, metric) for q in r.requests
                      if q.ok and q.size_class == cls and getattr(q, metric) is not None], cls + rng)
        ax.set_xlabel(label)
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"By prompt length, {r.load_label}")
    out.append(("By prompt length", _png(fig)))

    if len(results) > 1:
        xs = [x.load for x in results]
        xlabel = "offered load (req/s)" if results[0].args.mode == "open" else "concurrent clients"
        fig = Figure(figsize=(13, 3.8))
        ax1, ax2, ax3 = fig.subplots(1, 3)
        ax1.plot(xs, [x.summary.output_tok_s for x in results], "o-", label="output tok/s")
        ax1.set_ylabel("output tokens/s")
        ax1b = ax1.twinx()
        ax1b.plot(xs, [x.summary.requests_per_s for x in results], "s--", color="gray", label="req/s")
        if any(x.summary.goodput_rps is not None for x in results):
            ax1b.plot(xs, [x.summary.goodput_rps or 0 for x in results], "^--", color="green",
                      label="goodput req/s")
        ax1b.set_ylabel("requests/s")
        ax1b.legend(fontsize=8, loc="lower right")
        ax1.set_title("Throughput")
        for ax, metric, title in ((ax2, "ttft_ms", "TTFT"), (ax3, "tpot_ms", "TPOT")):
            for p, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
                ax.plot(xs, [getattr(x.summary, metric).at(p) or float("nan") for x in results], style,
                        label=p.upper())
            slo_ms = _slo_limit(results[0], metric.split("_")[0])
            if slo_ms is not None:
                ax.axhline(slo_ms, color="red", linestyle="--", linewidth=1, label="SLO")
            ax.set_title(f"{title} (ms)")
            ax.legend(fontsize=8)
        for ax in (ax1, ax2, ax3):
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        fig.suptitle("Against load")
        out.append(("Against load", _png(fig)))
    return out


def _slo_limit(r: BenchResult, metric: str) -> float | None:
    if r.slo is None:
        return None
    vals = [v for m, _p, v in r.slo.latency_targets() if m == metric]
    return min(vals) if vals else None


# ----------------------------------------------------------------------------------------------- HTML
def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _f(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    pass


def _result_section(r: BenchResult) -> str:
    s = r.summary
    parts = [f"<h2>{html.escape(r.load_label)}{' — interrupted' if r.interrupted else ''}</h2>"]
    parts.append(_table(["metric (ms)", "P50", "P90", "P99", "mean", "n"],
                        [[n, st.p50, st.p90, st.p99, st.mean, st.count] for n, st in s.latency_rows()]))
    rows = [["requests ok / failed / cancelled", f"{s.completed} / {s.failed} / {s.cancelled}"],
            ["duration (s)", s.duration_s], ["requests/s", s.requests_per_s], ["output tok/s", s.output_tok_s],
            ["input tok/s", s.input_tok_s], ["in flight max / mean", f"{s.max_in_flight} / {s.mean_in_flight:.1f}"]]
    if s.served_rps is not None:  # the figures above divide by the whole run, drain included
        rows.append(["served while loaded", f"{s.served_rps:.2f} req/s, {_f(s.served_output_tok_s)} output tok/s"])
    if s.goodput_rps is not None:
        rows.append(["goodput req/s (SLO met)", f"{s.goodput_rps:.2f} ({(s.slo_attainment or 0) * 100:.0f}%)"])
    if s.slo_met:
        rows.append(["SLO targets", ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in s.slo_met.items())])
    if s.offered_rps is not None:
        rows.append(["offered / sent req/s", f"{s.offered_rps:.2f} / {_f(s.achieved_send_rps, 2)}"])
    if s.errors:
        rows.append(["errors", ", ".join(f"{k}: {v}" for k, v in s.errors.items())])
    if s.client_lag_ms is not None and s.client_lag_ms.p99 is not None:
        rows.append(["client event-loop lag P99 (ms)", s.client_lag_ms.p99])
    rows.append(["prompts", f"{r.prompt_tokens_source}: {r.prompt_note}"])
    parts.append(_table(["", ""], rows))
    if r.classes:
        parts.append("<h3>By prompt length (terciles of the sampled input lengths"
                     + (f"; bounds {r.tercile_bounds[0]:.0f} / {r.tercile_bounds[1]:.0f} tokens"
                        if r.tercile_bounds else "") + ")</h3>")
        parts.append(_table(["class", "input len", "n", "failed", "TTFT P50", "TTFT P99", "TPOT P99", "E2E P50",
                             "E2E P99"],
                            [[c.name, "-" if c.input_len_min is None else f"{c.input_len_min}-{c.input_len_max}",
                              c.count, c.failed, c.ttft_ms.p50, c.ttft_ms.p99, c.tpot_ms.p99, c.e2e_ms.p50,
                              c.e2e_ms.p99] for c in r.classes]))
    if r.per_url:
        parts.append("<h3>Per replica</h3>")
        parts.append(_table(["url", "ok", "failed", "req/s", "out tok/s", "TTFT P99", "TPOT P99", "E2E P99"],
                            [[u, x.completed, x.failed, x.requests_per_s, x.output_tok_s, x.ttft_ms.p99,
                              x.tpot_ms.p99, x.e2e_ms.p99] for u, x in r.per_url.items()]))
    for n in r.notes:
        parts.append(f"<p class='note'>{html.escape(n)}</p>")
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}
.note{color:#8a5300}.muted{color:#666}"""


def write_report(results: list[BenchResult] | BenchResult, path: str | Path, *, title: str | None = None) -> Path:
    """Write a self-contained HTML report of one or more load points (a sweep) and return its path."""
    if isinstance(results, BenchResult):
        results = [results]
    if not results:
        raise ConfigError("write_report needs at least one bench result.")
    r0 = results[0]
    title = title or f"serveplan bench — {r0.traffic.name} on {', '.join(r0.args.urls)}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    a = r0.args
    parts.append(f"<p class='muted'>model {html.escape(str(a.model))}, endpoint /v1/"
                 f"{'chat/completions' if a.endpoint == 'chat' else 'completions'}, started {r0.started_at}, "
                 f"seed {a.seed}, traffic: input {html.escape(_dist(r0.traffic.input_len))}, output "
                 f"{html.escape(_dist(r0.traffic.output_len))}.</p>")
    try:
        figs = _plots(results)
    except ImportError:
        parts.append(f"<p class='note'>{html.escape(NO_MATPLOTLIB, quote=False)}</p>")
        figs = []
    for t, b64 in figs:
        parts.append(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b64}'>")
    if len(results) > 1:
        parts.append("<h2>Sweep</h2>")
        parts.append(_table(["load", "ok", "failed", "req/s", "out tok/s", "goodput", "TTFT P50", "TTFT P99",
                             "TPOT P50", "TPOT P99", "E2E P99"],
                            [[x.load_label, x.summary.completed, x.summary.failed, x.summary.requests_per_s,
                              x.summary.output_tok_s, x.summary.goodput_rps, x.summary.ttft_ms.p50,
                              x.summary.ttft_ms.p99, x.summary.tpot_ms.p50, x.summary.tpot_ms.p99,
                              x.summary.e2e_ms.p99] for x in results]))
    for r in results:
        parts.append(_result_section(r))
    parts.append("</body></html>")
    return write_atomic(Path(path), "\n".join(parts))


def _dist(d) -> str:
    if d.kind == "fixed":
        return f"fixed {d.mean:g}"
    if d.kind == "choice":
        return f"choice {list(d.values)}"
    return f"{d.kind} mean {d.mean:g} std {d.std:g} [{d.min}, {d.max}]"
