"""Rich tables of bench results (one load point, a sweep)."""

from __future__ import annotations

from serveplan.bench.results import BenchResult, BenchSummary


def fmt_num(v: float | None, digits: int = 1) -> str:
    """A number for a table cell: thousands separators, "-" when missing."""
    return "-" if v is None else f"{v:,.{digits}f}"


def latency_table(s: BenchSummary, title: str):  # noqa: ANN201 (rich Table, imported lazily)
    """TTFT / TPOT / ITL / E2E percentiles of a summary, as a rich table."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("metric (ms)")
    for c in ("P50", "P90", "P99", "mean", "n"):
        t.add_column(c, justify="right")
    for name, st in s.latency_rows():
        t.add_row(name, fmt_num(st.p50), fmt_num(st.p90), fmt_num(st.p99), fmt_num(st.mean), str(st.count))
    return t


def render_table(result: BenchResult, console=None) -> None:
    """Print a result as rich tables: latencies, throughput, errors, per-class and per-url figures."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = result.summary
    title = (f"bench {result.load_label} on {len(result.args.urls)} url(s)"
             f"{'  [bold red]INTERRUPTED[/]' if result.interrupted else ''}")
    console.print(latency_table(s, title))

    t2 = Table(show_header=False, box=None)
    t2.add_column(style="bold")
    t2.add_column(justify="right")
    t2.add_row("requests ok / failed", f"{s.completed} / {s.failed}"
               + (f"  ({s.cancelled} cancelled)" if s.cancelled else ""))
    t2.add_row("duration", f"{s.duration_s:.1f} s")
    t2.add_row("requests/s", fmt_num(s.requests_per_s, 2))
    t2.add_row("output tok/s", fmt_num(s.output_tok_s))
    t2.add_row("input tok/s", fmt_num(s.input_tok_s))
    if s.served_rps is not None:  # the figures above divide by the whole run, drain included
        t2.add_row("served while loaded", f"{s.served_rps:.2f} req/s, {fmt_num(s.served_output_tok_s)} output tok/s")
    if s.goodput_rps is not None:
        t2.add_row("goodput req/s (SLO)", f"{s.goodput_rps:.2f}  ({(s.slo_attainment or 0) * 100:.0f}% met)")
    t2.add_row("in flight max / mean", f"{s.max_in_flight} / {s.mean_in_flight:.1f}")
    if s.achieved_send_rps is not None and result.args.mode == "open":
        t2.add_row("sent req/s (offered)", f"{s.achieved_send_rps:.2f} ({fmt_num(s.offered_rps, 2)})")
    if s.errors:
        t2.add_row("errors", ", ".join(f"{k} {v}" for k, v in s.errors.items()))
    if s.slo_met:
        t2.add_row("SLO", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in s.slo_met.items()))
    t2.add_row("prompt tokens", result.prompt_tokens_source)
    console.print(t2)

    if result.classes:
        t3 = Table(title="by prompt length (terciles of sampled input lengths)", title_justify="left")
        for c in ("class", "input len", "n", "failed", "TTFT P50", "TTFT P99", "TPOT P99", "E2E P99"):
            t3.add_column(c, justify="right" if c != "class" else "left")
        for c in result.classes:
            rng = "-" if c.input_len_min is None else f"{c.input_len_min}-{c.input_len_max}"
            t3.add_row(c.name, rng, str(c.count), str(c.failed), fmt_num(c.ttft_ms.p50), fmt_num(c.ttft_ms.p99),
                       fmt_num(c.tpot_ms.p99), fmt_num(c.e2e_ms.p99))
        console.print(t3)
    if result.per_url:
        t4 = Table(title="per url", title_justify="left")
        for c in ("url", "ok", "failed", "req/s", "out tok/s", "TTFT P99", "TPOT P99", "E2E P99"):
            t4.add_column(c, justify="right" if c != "url" else "left")
        for u, us in result.per_url.items():
            t4.add_row(u, str(us.completed), str(us.failed), fmt_num(us.requests_per_s, 2), fmt_num(us.output_tok_s),
                       fmt_num(us.ttft_ms.p99), fmt_num(us.tpot_ms.p99), fmt_num(us.e2e_ms.p99))
        console.print(t4)
    for n in result.notes:
        console.print(f"[yellow]note:[/] {n}")


def render_sweep_table(results: list[BenchResult], console=None) -> None:
    """One row per load point."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="sweep", title_justify="left")
    for c in ("load", "ok", "failed", "req/s", "out tok/s", "goodput", "TTFT P50", "TTFT P99", "TPOT P50",
              "TPOT P99", "E2E P99"):
        t.add_column(c, justify="right" if c != "load" else "left")
    for r in results:
        s = r.summary
        t.add_row(r.load_label + (" (interrupted)" if r.interrupted else ""), str(s.completed), str(s.failed),
                  fmt_num(s.requests_per_s, 2), fmt_num(s.output_tok_s), fmt_num(s.goodput_rps, 2), fmt_num(s.ttft_ms.p50),
                  fmt_num(s.ttft_ms.p99), fmt_num(s.tpot_ms.p50), fmt_num(s.tpot_ms.p99), fmt_num(s.e2e_ms.p99))
    console.print(t)
