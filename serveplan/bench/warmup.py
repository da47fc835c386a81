"""`plan launch --warmup SECONDS`: the plan's own traffic sent to a fresh deployment before it is reported ready.

An engine compiles kernels for batch shapes the first time it meets them: vLLM 0.26.0's start-up warm-up does not
cover its fused MoE kernel, and a fresh Mixtral server's first ~25 s of load waited on it (docs/accuracy.md, session
26). The first users would pay that; a warm-up pays it instead. The launcher calls `warm_up` through its hook
(launch_plan's warm_up), so that it needs no load generator of its own."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from serveplan.bench.loadgen import run_bench
from serveplan.launcher.record import RunRecord
from serveplan.planner.result import load_plan


def warm_up(rec: RunRecord, plan_dir: str | Path, seconds: float, console: Console) -> bool:
    """Send the plan's traffic to the healthy replicas in `rec` for `seconds` and keep none of it; a note in
    rec.notes says how many requests it took. False when a signal stopped it."""
    traffic = load_plan(plan_dir).request.traffic
    console.print(Text(f"warming up: {seconds:g} s of the plan's traffic ({traffic.name}), in no figure"),
                  soft_wrap=True)
    warm = run_bench(list(rec.endpoints), traffic, model=rec.served_model_name, duration_s=seconds, progress=False)
    s = warm.summary
    failed = f" ({s.failed} failed: {', '.join(f'{k} {v}' for k, v in s.errors.items())})" if s.failed else ""
    rec.notes.append(f"warmed up with {s.completed + s.failed} requests of the plan's traffic in {seconds:g} s{failed}")
    console.print(Text(f"note: {rec.notes[-1]}", "yellow"), soft_wrap=True)
    return not warm.interrupted
