"""Showing a plan: the ranked rich table, the machine-readable document, and the output folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from serveplan.planner.result import Estimate, Plan


def _sources(e: Estimate) -> str:
    s = e.predictions.sources if e.predictions else {}
    kinds = {s.get("gemm"), s.get("bandwidth"), s.get("attention")}
    if "datasheet" in kinds:
        base = "datasheet"
    elif "extrapolated" in kinds:
        base = "extrapolated"
    elif "interpolated" in kinds:
        base = "interpolated"
    else:
        base = "measured"
    if s.get("overhead") == "calibrated":
        base += "+calibrated"
    return base


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _cell(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def candidate_doc(e: Estimate) -> dict:
    """The JSON shape for one candidate (config / predictions / memory_gb)."""
    c, p, m = e.config, e.predictions, e.memory
    doc: dict = {
        "config": {k: getattr(c, k) for k in ("engine", "tp", "pp", "replicas", "weight_dtype",
                                               "kv_cache_dtype", "max_num_seqs", "max_num_batched_tokens",
                                               "chunked_prefill", "max_model_len", "gpu_memory_utilization",
                                               "max_cudagraph_capture_size", "api_server_count")},
        "memory_gb": {"weights": round(m.weights_gb, 3), "kv_cache": round(m.kv_cache_gb, 3),
                      "other": round(m.other_gb, 3), "capacity": round(m.capacity_gb, 3),
                      "kv_tokens": m.kv_tokens, "max_concurrent_seqs": m.max_concurrent_seqs},
        "meets_slo": e.meets_slo, "violations": list(e.violations), "quality_cost_pct": e.quality_cost,
    }
    if c.checkpoint is not None:
        doc["checkpoint"] = c.checkpoint.model_dump(exclude_none=True)
    if p is not None:
        pct = lambda x: {k: round(getattr(x, k), 3) for k in ("p50", "p90", "p99", "mean")}  # noqa: E731
        doc["predictions"] = {
            "ttft_ms": pct(p.ttft_ms), "tpot_ms": pct(p.tpot_ms), "e2e_ms": pct(p.e2e_ms),
            "throughput_tok_s": round(p.throughput_tok_s, 2), "input_tok_s": round(p.input_tok_s, 2),
            "requests_per_s": round(p.requests_per_s, 4), "goodput_rps": round(p.goodput_rps, 4),
            "slo_attainment": round(p.slo_attainment, 4), "tok_s_per_gpu": round(p.tok_s_per_gpu, 2),
            "cost_per_1m_tokens": round(p.cost_per_1m_tokens, 4), "saturated": p.saturated,
            "burst_ttft_ms": pct(p.burst_ttft_ms) if p.burst_ttft_ms is not None else None,
            "max_rps": round(p.max_rps, 4), "capacity_rps": _r(p.capacity_rps, 4),
            "capacity_tok_s_per_gpu": _r(p.capacity_tok_s_per_gpu, 2),
            "cost_per_1m_tokens_at_capacity": _r(p.cost_per_1m_tokens_at_capacity, 4),
            "light_load_ms": {k: _r(v, 1) for k, v in p.light_load_ms.items()} if p.light_load_ms else None,
            "sources": dict(p.sources),
        }
    return doc


def plan_json(plan: Plan) -> dict:
    r = plan.request
    return {
        "model": r.model.name, "gpus": r.inventory.describe(), "traffic": r.traffic.name,
        "engine": f"{r.engine.name} {r.engine.version}", "slo": r.slo.model_dump(exclude_none=True),
        "objective": r.search.objective, "why": plan.why, "sizing": sizing_sentence(plan) or None,
        "context": context_sentence(r, plan.winner.config.max_model_len) if plan.ranked else None,
        "profile": plan.profile, "search": plan.stats.model_dump(),
        "candidates": [candidate_doc(e) for e in plan.ranked],
        "pareto": [candidate_doc(e) for e in plan.pareto],
    }


def render_plan(plan: Plan, console) -> None:  # noqa: ANN001 (rich Console, imported lazily)
    from rich.table import Table

    r, st = plan.request, plan.stats
    pct = r.slo.headline_percentile
    slo = ", ".join(f"{m.upper()} {p.upper()} <= {v:,.0f} ms" for m, p, v in r.slo.latency_targets()) or "none"
    load = f"{r.traffic.rate_rps:g} req/s" if not r.traffic.is_closed_loop else f"{r.traffic.concurrency} clients"
    console.print(f"[bold]{r.model.name}[/] on [bold]{r.inventory.describe()}[/] with {r.engine.name} "
                  f"{r.engine.version}; traffic [bold]{r.traffic.name}[/] (prompt ~{r.traffic.input_len.mean:,.0f}, "
                  f"output ~{r.traffic.output_len.mean:,.0f} tokens, {load}); SLO {slo}; objective "
                  f"{r.search.objective}")
    t = Table(title=None, show_lines=False, header_style="bold")
    for col, just in [("#", "right"), ("config", "left"), (f"TTFT {pct}", "right"), (f"TPOT {pct}", "right"),
                      ("served in SLO", "right"), ("req/s at SLO", "right"), ("tok/s/GPU at SLO", "right"),
                      ("$/1M at SLO", "right"), ("GB/GPU W/KV/other", "right"), ("seqs fit", "right"),
                      ("quality", "right"), ("source", "left")]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, e in enumerate(plan.ranked, 1):
        p, m = e.predictions, e.memory
        assert p is not None
        style = None if e.meets_slo else "dim"
        t.add_row(str(i), e.config.label(), f"{p.ttft_ms.at(pct):,.0f} ms", f"{p.tpot_ms.at(pct):,.1f} ms",
                  f"{p.goodput_rps:,.2f}", _cell(p.capacity_rps, ",.2f"), _cell(p.capacity_tok_s_per_gpu, ",.0f"),
                  "$" + _cell(p.cost_per_1m_tokens_at_capacity, ",.2f") if p.cost_per_1m_tokens_at_capacity else "-",
                  f"{m.weights_gb:.1f}/{m.kv_cache_gb:.1f}/{m.other_gb:.1f}", f"{m.max_concurrent_seqs:,}",
                  f"+{e.quality_cost:g}% ppl" if e.quality_cost else "ref",
                  _sources(e), style=style)
    console.print(t)
    console.print("served in SLO: req/s within every target at the offered load; at SLO: the most traffic "
                  "each carries with the SLO still met, and what a million output tokens costs there.")
    n = plan.winner.predictions.sources.get("percentiles") if plan.winner.predictions else None
    if n:  # a light load's P99 is a short sample's slowest request or two (docs/accuracy.md)
        console.print(f"Percentiles at the offered load: {n}.")
    if plan.pareto:
        _render_pareto(plan, console)
    console.print(f"[bold]Why:[/] {plan.why}")
    sizing = sizing_sentence(plan)
    if sizing:
        console.print(f"[bold]Sizing:[/] {sizing}")
    if plan.winner.config.checkpoint is not None:
        console.print(f"[bold]Weights:[/] {plan.winner.config.checkpoint.describe()}")
    servers = plan.winner.predictions.sources.get("api_servers") if plan.winner.predictions else None
    if servers:  # capacity.capacity_at_slo's choice (frontend.py)
        console.print(f"[bold]Front end:[/] --api-server-count {servers}: one vLLM API server tokenizes, "
                      f"detokenizes and streams for the whole replica on one core.")
    refused = context_sentence(r, plan.winner.config.max_model_len)
    if refused:
        console.print(f"[bold]Context:[/] {refused}")
    used, have = plan.winner.config.total_gpus, r.inventory.total_gpus
    if used < have and plan.winner.meets_slo:
        console.print(f"The winner uses {used} of the {have} GPUs: at this load the others would only add "
                      f"headroom (search.use_all_gpus=true plans for all of them; raise traffic.rate_rps to "
                      f"plan for more load).")
    prof = plan.profile
    cal = f"; calibration {prof['calibration']}" if prof.get("calibration") else "; no engine calibration"
    console.print(f"Profile: {prof.get('kind')} ({prof.get('path')}){cal}. Search: {st.sampler}, "
                  f"{st.trials:,} of {st.memory_feasible:,} candidates that fit in memory examined "
                  f"({st.examined_fraction:.0%}; {st.space_size:,} in the space) in {st.seconds:.2f} s.")
    uncovered = uncovered_layout(plan)
    if uncovered:
        console.print(uncovered)
    if not plan.ranked[0].meets_slo:
        console.print(f"[bold red]No candidate meets the SLO[/] (closest: {'; '.join(plan.winner.violations)}). "
                      f"Relax the SLO, lower the load, or add GPUs.")


def uncovered_layout(plan: Plan) -> str | None:
    """A sentence when the winner's layout and weight precision are none of those the calibration's held-out error
    was measured on (plan.profile's calibration_held_out), so that error does not vouch for it."""
    from serveplan.planner.profiles import HeldOutAccuracy

    held = plan.profile.get("calibration_held_out")
    return layout_not_held_out(HeldOutAccuracy.model_validate(held) if held else None, plan.profile.get("gpu"),
                               plan.winner.config, "the winner's")


def layout_not_held_out(held, gpu: str | None, c, whose: str) -> str | None:  # noqa: ANN001 (HeldOutAccuracy, Candidate)
    """The sentence of uncovered_layout for configuration c (None when held covers it or says nothing)."""
    from serveplan.planner.profiles import layout_name

    if held is None or held.covers(c.tp, c.weight_dtype, c.pp):
        return None
    return (f"The held-out runs on {gpu} cover {', '.join(held.layouts)}; none ran "
            f"{layout_name(c.tp, c.weight_dtype, c.pp)}, so the error above was not measured on {whose} kind of "
            f"configuration.")


def catalog_rows(what: str) -> tuple[list[str], list[list]]:
    """(header, rows) of the built-in catalog: models, gpus or traffic presets."""
    from serveplan.planner import catalog
    from serveplan.planner.checkpoints import published_table

    if what == "models":
        rows = []
        for o in catalog.options("model"):
            d = catalog.catalog_doc("model", o)
            from serveplan.planner.spec import ModelSpec

            m = ModelSpec(**d)
            quant = [w for w, lst in published_table().get(o, {}).items() if lst]
            rows.append([o, f"{m.total_params / 1e9:.1f}B", m.num_layers, f"{m.num_attention_heads}/{m.num_kv_heads}",
                         f"{m.max_position_embeddings:,}", ", ".join(quant) or "-", m.hf_id or ""])
        return ["model", "params", "layers", "heads/kv", "context", "published quantized", "hf_id"], rows
    if what == "gpus":
        rows = []
        for o in catalog.options("hardware"):
            g = catalog.gpu_spec(o)
            rows.append([o, g.display_name, f"{g.usable_gib:.1f}", f"{g.hbm_bandwidth_gbs:,.0f}",
                         ", ".join(sorted(g.tflops)), g.interconnect, f"{g.price_per_hour_usd:.2f}"])
        return ["gpu", "name", "usable GiB", "GB/s", "tensor dtypes", "link", "$/GPU-hour"], rows
    rows = []
    for o in catalog.options("traffic"):
        d = catalog.catalog_doc("traffic", o)
        load = f"{d.get('rate_rps')} req/s" if d.get("rate_rps") else f"{d.get('concurrency')} clients"
        rows.append([o, (d.get("input_len") or {}).get("mean"), (d.get("output_len") or {}).get("mean"), load,
                     d.get("description", "")])
    return ["traffic", "prompt mean", "output mean", "load", "description"], rows


def _render_pareto(plan: Plan, console) -> None:  # noqa: ANN001
    """The search's Pareto front (search.pareto=true): output tokens/s per GPU against E2E latency at the
    SLO's headline percentile, fastest first."""
    from rich.table import Table

    pct = plan.request.slo.headline_percentile
    front = sorted((e for e in plan.pareto if e.predictions is not None),
                   key=lambda e: -e.predictions.tok_s_per_gpu)  # type: ignore[union-attr]
    t = Table(title=f"Pareto front: {len(front)} configurations (tok/s per GPU vs E2E {pct}; analytic model)",
              title_justify="left", header_style="bold")
    for col in ("config", "tok/s/GPU", f"E2E {pct}", "meets SLO"):
        t.add_column(col, justify="left" if col == "config" else "right")
    for e in front:
        p = e.predictions
        assert p is not None
        t.add_row(e.config.label(), f"{p.tok_s_per_gpu:,.0f}", f"{p.e2e_ms.at(pct):,.0f} ms",
                  "yes" if e.meets_slo else "no")
    console.print(t)


def idle_miss_phrase(p, slo) -> str:  # noqa: ANN001 (Predictions or None, SLO)
    """Why no arrival rate meets the SLO, and what it would have to allow: "misses the SLO even at light load
    (TTFT P99 620 ms against 500)"; without those figures (light_load_ms), only that it meets it at no rate."""
    missed = (p.light_load_ms if p is not None else None) or {}
    if not missed:
        return "meets the SLO at no arrival rate"
    limits = {f"{metric}_{pct}": limit for metric, pct, limit in slo.latency_targets()}  # every missed one is here
    parts = [f"{k.replace('_', ' ').upper()} {v:,.0f} ms against {limits[k]:,.0f}" for k, v in missed.items()]
    return f"misses the SLO even at light load ({', '.join(parts)})"


# Below this share of refused requests the plan says nothing (one request in a thousand)
REFUSED_SHARE_NOTED = 0.001


def context_sentence(req, max_model_len: int) -> str | None:  # noqa: ANN001 (PlanRequest)
    """A sentence when some of the traffic's requests are longer (prompt + output) than the configuration's
    max_model_len: the engine refuses them, and the simulation leaves them out (simulation._servable), so the
    figures are the rest's (session 28: the chat preset's longest prompts and answers do not fit Gemma-2's 8,192
    tokens)."""
    share = req.traffic.share_longer_than(max_model_len)
    if share < REFUSED_SHARE_NOTED:
        return None
    ctx = req.model.max_position_embeddings
    if max_model_len >= ctx:
        limit, fix = f"{req.model.name}'s context", "or serve a model with a longer context"
    else:
        limit, fix = "the configuration's max_model_len", f"or raise search.max_model_len (up to {ctx:,})"
    return (f"{share:.1%} of this traffic's requests are longer than {max_model_len:,} tokens, prompt + output "
            f"({limit}); the engine refuses them (vLLM: HTTP 400), and the figures above are the other requests' "
            f"(served in SLO leaves them out). "
            f"Lower traffic.input_len.max / traffic.output_len.max, {fix}.")


def sizing_sentence(plan: Plan) -> str:
    """How many replicas of the winner the offered load needs at its capacity within the SLO."""
    r, w = plan.request, plan.winner
    p = w.predictions
    if p is None or p.capacity_rps is None or r.traffic.is_closed_loop or not r.traffic.rate_rps:
        return ""
    c = w.config
    per_replica = p.capacity_rps / c.replicas
    if per_replica <= 0:
        return f"{c.label()} {idle_miss_phrase(p, r.slo)}: relax the SLO or change the configuration."
    from serveplan.planner.decision import asked_rate

    h = r.search.headroom
    need = max(1, math.ceil(asked_rate(r) / per_replica * (1 - 1e-9)))
    gpus = need * c.gpus_per_replica
    have = r.inventory.total_gpus
    asked = f" with {h:.0%} headroom" if h else ""
    head = (f"{r.traffic.rate_rps:g} req/s{asked} needs {need} replica{'s' if need > 1 else ''} of {c.gpus_per_replica} "
            f"GPU{'s' if c.gpus_per_replica > 1 else ''} ({gpus} GPU{'s' if gpus > 1 else ''}) at {per_replica:.2f} req/s each within the SLO")
    if gpus > have:
        return f"{head}: {gpus - have} more than the {have} in the inventory."
    spare = per_replica * need - r.traffic.rate_rps
    return (f"{head}; the plan's {c.replicas} replica{'s' if c.replicas > 1 else ''} on {c.total_gpus} of {have} "
            f"GPUs leave{'s' if c.replicas == 1 else ''} room for {p.capacity_rps - r.traffic.rate_rps:.2f} req/s "
            f"more." if c.replicas >= need else f"{head} ({spare:.2f} req/s to spare).")


def render_estimate(est: Estimate, req, console, held_out=None) -> None:  # noqa: ANN001 (PlanRequest, rich Console)
    """`plan estimate`'s report of one fixed configuration: memory, latency percentiles, throughput, sources; with
    the calibration's held_out, whether its error was measured on this kind of configuration."""
    m, cand = est.memory, est.config
    console.print(f"[bold]{req.model.name}[/] on {req.inventory.describe()}, {cand.label()}")
    if cand.checkpoint is not None:
        console.print(f"Weights: {cand.checkpoint.describe()}")
    console.print(f"Memory per GPU: weights {m.weights_gb:.1f} GB, KV cache {m.kv_cache_gb:.1f} GB "
                  f"({m.kv_tokens:,} tokens, {m.max_concurrent_seqs:,} sequences of the traffic's mean length), "
                  f"other {m.other_gb:.1f} GB of {m.capacity_gb:.1f} GB.")
    if not m.fits:
        console.print(f"[bold red]Does not fit:[/] {m.reason}.")
        return
    refused = context_sentence(req, cand.max_model_len)
    if refused:
        console.print(f"Context: {refused}")
    pr = est.predictions
    assert pr is not None
    if pr.burst_ttft_ms is not None:
        console.print("Closed loop, steady state (every client busy; the first wave and the final drain apart):")
    for name, v in (("TTFT", pr.ttft_ms), ("TPOT", pr.tpot_ms), ("E2E", pr.e2e_ms)):
        console.print(f"{name:5s} P50 {v.p50:9,.1f}  P90 {v.p90:9,.1f}  P99 {v.p99:9,.1f}  mean {v.mean:9,.1f} ms")
    if pr.burst_ttft_ms is not None:
        b = pr.burst_ttft_ms
        console.print(f"First wave (all {req.traffic.concurrency} clients at once): TTFT P50 {b.p50:,.1f}  "
                      f"P99 {b.p99:,.1f} ms")
    console.print(f"Throughput {pr.throughput_tok_s:,.0f} output tok/s ({pr.tok_s_per_gpu:,.0f} per GPU), "
                  f"{pr.requests_per_s:.2f} req/s, {pr.goodput_rps:.2f} within SLO; ${pr.cost_per_1m_tokens:.2f} "
                  f"per 1M output tokens{'; SATURATED: the offered load exceeds capacity' if pr.saturated else ''}.")
    if not req.traffic.is_closed_loop and pr.max_rps > 0:  # a closed loop's clients set their own rate
        console.print(f"Load: {req.traffic.rate_rps:.2f} req/s, {req.traffic.rate_rps / pr.max_rps:.0%} of the most "
                      f"this deployment serves ({pr.max_rps:.2f} req/s).")
    console.print(f"Sources: {', '.join(f'{k}={v}' for k, v in pr.sources.items())}")
    uncovered = layout_not_held_out(held_out, req.inventory.gpu.name, cand, "this")
    if uncovered:
        console.print(uncovered)
    if est.violations:
        console.print(f"[yellow]SLO missed:[/] {'; '.join(est.violations)}")
    from serveplan.planner.decision import kv_pressure, load_pressure

    for title, note in (("KV cache", kv_pressure(req, est)), ("Near capacity", load_pressure(req, est))):
        if note:
            console.print(f"[yellow]{title}:[/] {note}", highlight=False)


def plan_files(plan: Plan) -> dict[str, str]:
    """The plan's own documents in its folder: plan.yaml (what `plan launch` reads) and plan.json."""
    return {"plan.yaml": plan.to_yaml(), "plan.json": json.dumps(plan_json(plan), indent=1)}


def write_outdir(plan: Plan, outdir: Path, extra_files=None) -> list[Path]:  # noqa: ANN001
    """Write plan.yaml, plan.json and the launch files from `extra_files(plan) -> {relative path: text}` as one
    folder that replaces `outdir` whole (fileio.write_tree_atomic): nothing stale from an earlier plan stays,
    and on failure nothing new is left. (The CLI refuses a folder whose launch still runs first.)"""
    from serveplan.errors import ConfigError
    from serveplan.fileio import write_tree_atomic

    outdir = Path(outdir)
    files = plan_files(plan)
    if extra_files is not None:
        files.update(extra_files(plan))
    try:
        return write_tree_atomic(outdir, files)
    except OSError as e:
        raise ConfigError(f"Cannot write the plan to '{outdir}': {e.strerror or e}; give -o a folder you "
                          f"can write to (or --no-write).") from None


def fleet_json(fp) -> dict:  # noqa: ANN001 (planner.fleet.FleetPlan; fleet imports nothing from here)
    """The machine-readable fleet: per model its allocation and the assigned configuration's document."""
    out = []
    for a in fp.allocations:
        w = a.plan.winner
        out.append({"model": a.label, "pool": a.pool, "gpu": a.gpu, "gpus_per_replica": a.gpus_per_replica,
                    "replicas": a.replicas, "replicas_needed": a.replicas_needed, "replicas_max": a.replicas_max,
                    "gpus": a.replicas * a.gpus_per_replica, "strategy": w.config.label(),
                    "offered_rps": a.offered_rps, "capacity_rps": round(a.capacity_rps_per_replica * a.replicas, 4),
                    "capacity_rps_per_replica": round(a.capacity_rps_per_replica, 4),
                    "cost_per_hour_usd": round(a.cost_per_hour, 4), "cost_per_1m_tokens": _r(a.cost_per_1m_tokens, 4),
                    "meets_slo": w.meets_slo, "queue_threshold": a.queue_threshold,
                    "prefill_tok_s_per_replica": round(a.prefill_tok_s, 1), "candidate": candidate_doc(w)})
    return {"models": out, "leftover_gpus": dict(fp.leftover), "cost_per_hour_usd": round(fp.cost_per_hour, 4),
            "budget_usd_per_hour": fp.spec.budget_usd_per_hour, "min_headroom": round(fp.min_headroom, 4),
            "seconds": round(fp.seconds, 2), "planner_calls": fp.planner_calls}


def render_fleet(fp, console) -> None:  # noqa: ANN001 (FleetPlan, rich Console)
    from rich.table import Table

    t = Table(header_style="bold")
    for col, just in [("model", "left"), ("GPUs", "right"), ("strategy", "left"), ("replicas", "right"),
                      ("offered", "right"), ("TTFT", "right"), ("TPOT", "right"), ("req/s at SLO", "right"),
                      ("$/hour", "right"), ("$/1M tok", "right"), ("scale", "right")]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for a in fp.allocations:
        w = a.plan.winner
        p = w.predictions
        assert p is not None
        pct = a.plan.request.slo.headline_percentile
        t.add_row(a.label, f"{a.replicas * a.gpus_per_replica}x{a.gpu} ({a.pool})", w.config.label(),
                  f"{a.replicas} x {a.gpus_per_replica} GPU", f"{a.offered_rps:g} req/s",
                  f"{pct} {p.ttft_ms.at(pct):,.0f} ms", f"{pct} {p.tpot_ms.at(pct):,.1f} ms",
                  f"{a.capacity_rps_per_replica * a.replicas:,.2f}", f"{a.cost_per_hour:,.2f}",
                  "-" if a.cost_per_1m_tokens is None else f"{a.cost_per_1m_tokens:,.3f}",
                  f"{a.replicas_needed}-{a.replicas_max} @ {a.queue_threshold} queued",
                  style=None if w.meets_slo else "dim")
    console.print(t)
    left = ", ".join(f"{n} GPU{'' if n == 1 else 's'} of {pool}" for pool, n in fp.leftover.items())
    budget = f" (budget ${fp.spec.budget_usd_per_hour:,.2f})" if fp.spec.budget_usd_per_hour else ""
    console.print(f"Fleet: ${fp.cost_per_hour:,.2f}/hour{budget}; smallest headroom {fp.min_headroom:.0%}; "
                  f"leftover {left}. TTFT/TPOT: predicted at the offered load on the replicas assigned; scale: "
                  f"autoscaler min-max replicas and its target of waiting requests per replica. "
                  f"{fp.planner_calls} planner calls, {fp.seconds:.1f} s.")
    for a in fp.allocations:
        if not a.plan.winner.meets_slo:
            console.print(f"[bold red]{a.label} misses its SLO at the offered load[/]: "
                          f"{'; '.join(a.plan.winner.violations)}.")
