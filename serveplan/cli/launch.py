"""`plan launch DIR` (start the planned engines, supervise them in the foreground or detach) and `plan stop DIR`
(stop a detached launch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from serveplan.cli.args import _Parser, port, positive_float, seconds_or_zero
from serveplan.cli.boundary import _console


def launch(argv: list[str]) -> int:
    p = _Parser(prog="plan launch", description="Start the planned engine(s), wait for health, smoke-test, "
                "supervise until Ctrl-C.")
    p.add_argument("plan_dir", help="folder holding plan.yaml (plan -o)")
    p.add_argument("--model", help="checkpoint path or HF id to serve instead of the plan's; it must hold the "
                   "planned precision")
    p.add_argument("--dry-run", action="store_true", help="print what would run; start and write nothing")
    p.add_argument("--force", action="store_true", help="launch even if the visible GPUs do not match the plan")
    p.add_argument("--port", type=port, default=8000, help="first replica's port")
    p.add_argument("--health-timeout", type=positive_float, default=900.0, help="seconds to wait for /health")
    p.add_argument("--detach", action="store_true", help="return once healthy; stop later with plan stop DIR")
    p.add_argument("--warmup", type=seconds_or_zero, default=0.0, metavar="SECONDS", help="once healthy, send this "
                   "many seconds of the plan's traffic before reporting ready (a fresh engine compiles kernels for new "
                   "batch shapes under its first load; default 0: none)")
    p.add_argument("--engine-args", default="", help="extra engine flags, checked against the engine's flag "
                   "schema (e.g. --engine-args='--load-format dummy')")
    a = p.parse_args(argv)
    import shlex
    from serveplan.launcher.launch import launch_plan

    warm = None
    if a.warmup > 0 and not a.dry_run:  # the plan's own traffic before "ready" (serveplan.bench.warmup)
        from rich.console import Console

        from serveplan.bench.warmup import warm_up

        con = Console(highlight=False)
        warm = lambda rec: warm_up(rec, a.plan_dir, a.warmup, con)  # noqa: E731
    try:
        rec = launch_plan(Path(a.plan_dir), model=a.model, dry_run=a.dry_run, force=a.force, base_port=a.port,
                          health_timeout_s=a.health_timeout, detach=a.detach,
                          extra_args=tuple(shlex.split(a.engine_args)), warm_up=warm)
    except KeyboardInterrupt:
        # Stopped by a signal while starting: the engines are stopped and run.json says which signal.
        print("interrupted", file=sys.stderr)
        return _signal_exit(_own_stop_signal(Path(a.plan_dir))) or 130
    if a.dry_run or a.detach:
        return 0
    # Foreground: launch_plan returned because SIGINT/SIGTERM asked it to stop; exit as the shell would
    # report a process ended by that signal (130 for Ctrl-C, 143 for SIGTERM).
    return _signal_exit(rec.stop_signal) or 0


def _own_stop_signal(plan_dir: Path) -> str | None:
    """The stop signal this process recorded in plan_dir's run.json (None if run.json is another's)."""
    try:
        from serveplan.launcher.record import read_run

        rec = read_run(plan_dir if plan_dir.is_dir() else plan_dir.parent)
    except Exception:  # noqa: BLE001 - best effort: no run.json, or unreadable
        return None
    return rec.stop_signal if rec.supervisor_pid == os.getpid() else None


def stop(argv: list[str]) -> int:
    p = _Parser(prog="plan stop", description="Stop a detached launch.")
    p.add_argument("plan_dir")
    a = p.parse_args(argv)
    from serveplan.launcher.launch import stop_run

    stop_run(Path(a.plan_dir), console=_console())
    return 0


def _signal_exit(name: str | None) -> int | None:
    """The shell's exit status for death by that signal: 128 + its number (SIGINT 130, SIGTERM 143)."""
    import signal

    if not name:
        return None
    try:
        return 128 + int(signal.Signals[name])
    except KeyError:
        return None
