"""Planner speed: wall time of the real `plan` console entry, process start to exit, plus where the time goes.

    python benchmarks/planner_speed.py                  # 5 runs per command, the table + breakdown
    python benchmarks/planner_speed.py --repeats 10 --profile   # plus the cProfile top of the card command

Each command runs as `plan ... --no-write` in a subprocess (stdout captured, so the table is rendered but not
shown); the wall time is taken around the subprocess, so interpreter start, imports, Hydra, the search, the
simulation re-score, rendering and exit are all in it. One extra `--json` run per command gives the search
statistics. The breakdown runs the card command's pieces in a fresh interpreter, the way `plan()` in
serveplan/planner/api.py calls them, and checks their sum against one real `plan()` call.

The target (design card): the card's command under 3 s wall on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET_S = 3.0

CARD = ["--model", "llama-70b", "--gpus", "2xA100"]
CASES: list[tuple[str, list[str]]] = [
    ("card: llama-70b 2xA100", CARD),
    ("llama-8b 1xL4 traffic=rag", ["--model", "llama-8b", "--gpus", "1xL4", "traffic=rag"]),
    ("qwen-32b 8xH100", ["--model", "qwen-32b", "--gpus", "8xH100"]),
    ("llama-405b 2x8xH100", ["--model", "llama-405b", "--gpus", "2x8xH100"]),
    ("mixtral-8x7b 4xA100 pareto nsga2",
     ["--model", "mixtral-8x7b", "--gpus", "4xA100", "search.pareto=true", "search.sampler=nsga2"]),
]


# ------------------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_quota() -> str:
    """The cgroup v2 CPU limit, if any ('max' = none)."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return "none" if quota == "max" else f"{int(quota) / int(period):g} CPUs"
    except (OSError, ValueError):
        return "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    def ver(mod: str) -> str:
        try:
            from importlib.metadata import version

            return version(mod)
        except Exception:  # noqa: BLE001
            return "?"

    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(len(os.sched_getaffinity(0)))
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                                "serveplan"], capture_output=True, text=True, check=True).stdout.strip()
        commit += " + uncommitted changes under serveplan/" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "nproc": nproc, "cpu": cpu_model(), "cpu quota": cpu_quota(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "load average (1/5/15 min) at start": loadavg(),
        "packages": f"serveplan {ver('serveplan')} ({commit}), optuna {ver('optuna')}, "
                    f"hydra-core {ver('hydra-core')}, pydantic {ver('pydantic')}, rich {ver('rich')}",
    }


# ------------------------------------------------------------------------------------------------ wall time
def plan_exe() -> list[str]:
    """The installed `plan` console script: next to this interpreter first (a venv), else on PATH."""
    cand = Path(sys.executable).parent / "plan"
    if cand.exists():
        return [str(cand)]
    found = shutil.which("plan")
    if found:
        return [found]
    raise SystemExit("No `plan` console script found: pip install -e . first (or run with the venv's python).")


def time_case(exe: list[str], args: list[str], repeats: int, cwd: Path) -> dict:
    walls, codes = [], set()
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run(exe + args + ["--no-write"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - t0)
        codes.add(p.returncode)
        if p.returncode not in (0, 1):  # 1 = no candidate meets the SLO: still a finished plan
            sys.stderr.write(p.stderr.decode(errors="replace"))
            raise SystemExit(f"`plan {' '.join(args)}` exited {p.returncode}")
    p = subprocess.run(exe + args + ["--no-write", "--json"], cwd=cwd, capture_output=True, text=True)
    search = json.loads(p.stdout)["search"] if p.returncode in (0, 1) else {}
    return {"walls": walls, "median": statistics.median(walls), "max": max(walls), "exit": sorted(codes),
            "search": search}


# ------------------------------------------------------------------------------------------------ breakdown
def breakdown_child() -> None:
    """Runs in a fresh interpreter: the card command's phases, timed one by one. Prints one JSON object."""
    t_start = time.perf_counter()
    phases: list[tuple[str, float]] = []

    def mark(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        phases.append((name, t1 - t0))
        return t1

    t = time.perf_counter()
    import serveplan.cli  # noqa: F401
    from serveplan.planner import api
    from serveplan.planner.config import build_request
    from serveplan.planner.decision import diverse, final_ranking
    from serveplan.planner.estimate import Scorer, rank
    from serveplan.planner.report import plan_json, render_plan
    from serveplan.planner.result import Plan
    from serveplan.planner.search import run_search
    t = mark("import serveplan (cli, planner, pydantic)", t)
    import optuna  # noqa: F401  (run_search imports it lazily; timed apart from the search)
    t = mark("import optuna", t)
    import hydra  # noqa: F401
    t = mark("import hydra", t)
    req = build_request(model="llama-70b", gpus="2xA100")
    t = mark("Hydra compose + validation (build_request)", t)
    scorer = Scorer(req)
    t = mark("hardware profile + calibration lookup (Scorer)", t)
    evaluated, pareto, stats = run_search(req, scorer)
    t = mark(f"search: {stats.sampler}, {stats.trials} analytic trials (run_search)", t)
    ranked = rank(evaluated)
    k = req.search.top_k
    chosen = diverse(ranked, k * api.RESCORE_FACTOR) + ranked[:k]
    uniq = list({e.config: e for e in chosen}.values())
    t = mark("rank", t)
    top = [scorer.score(e.config, simulated=True, seed=req.search.seed) for e in uniq]
    t = mark(f"simulation re-score of {len(uniq)} leaders", t)
    final, reason = final_ranking(req, scorer, rank(top), k)
    result = Plan(request=req, ranked=tuple(final), pareto=tuple(pareto), why=reason,
                  profile={"gpu": scorer.profile.gpu}, stats=stats)
    t = mark("final ranking: capacity at the SLO of the finalists + why", t)
    import io

    from rich.console import Console

    render_plan(result, Console(file=io.StringIO(), width=200, highlight=False))
    json.dumps(plan_json(result))
    t = mark("render table (rich) + JSON document", t)
    total = time.perf_counter() - t_start
    # Sanity check: one real plan() call (warm imports and caches now, so a lower bound on the cold one).
    t0 = time.perf_counter()
    real = api.plan(req)
    warm_plan = time.perf_counter() - t0
    same = real.winner.config == result.winner.config
    print(json.dumps({"phases": phases, "total": total, "warm_plan_s": warm_plan, "same_winner": same}))


def breakdown(repeats: int) -> dict:
    # Interpreter start + exit alone (site, the editable-install finder), as `plan` pays them.
    bare = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    runs = []
    for _ in range(repeats):
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_breakdown"], capture_output=True,
                           text=True, check=True, cwd=ROOT)
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    names = [n for n, _ in runs[0]["phases"]]
    med = {n: statistics.median(r["phases"][i][1] for r in runs) for i, n in enumerate(names)}
    return {"interpreter_s": statistics.median(bare), "phases": med,
            "total_s": statistics.median(r["total"] for r in runs),
            "warm_plan_s": statistics.median(r["warm_plan_s"] for r in runs),
            "same_winner": all(r["same_winner"] for r in runs)}


def profile_card(top: int = 25) -> str:
    import cProfile
    import io
    import pstats

    code = ("from serveplan.cli import plan_main; import sys, io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()): plan_main(%r)\n" % (CARD + ["--no-write"]))
    prof_path = ROOT / ".planner_speed.prof"
    script = ROOT / ".planner_speed_card.py"  # `python -m cProfile -c CODE` needs Python 3.12; a file works on 3.11
    script.write_text(code)
    try:
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof_path), str(script)], check=True, cwd=ROOT)
    finally:
        script.unlink(missing_ok=True)
    buf = io.StringIO()
    pstats.Stats(str(prof_path), stream=buf).sort_stats("cumulative").print_stats(top)
    prof_path.unlink(missing_ok=True)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ output
def table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """A Markdown table (readable as plain text too). align: one of 'l'/'r' per column."""
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w[i]) if align[i] == "r" else c.ljust(w[i])
                                 for i, c in enumerate(cells)) + " |"

    sep = "|" + "|".join(("-" * (w[i] + 1) + ":") if align[i] == "r" else ("-" * (w[i] + 2))
                         for i in range(len(w))) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per command (median and max reported)")
    ap.add_argument("--profile", action="store_true", help="also print the cProfile top of the card command")
    ap.add_argument("--json-out", type=Path, help="also write the raw measurements here")
    ap.add_argument("--_breakdown", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._breakdown:
        breakdown_child()
        return 0

    info = machine()
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    exe = plan_exe()
    print(f"Command: {exe[0]} ARGS --no-write, {a.repeats} runs each, wall time process start to exit\n")
    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as cwd:  # --no-write: nothing is written, but keep the repo clean
        for name, args in CASES:
            results[name] = time_case(exe, args, a.repeats, Path(cwd))
            r = results[name]
            print(f"  {name}: median {r['median']:.2f} s, max {r['max']:.2f} s", file=sys.stderr)

    rows = []
    for (name, args), r in zip(CASES, results.values()):
        s = r["search"]
        rows.append([f"`plan {' '.join(args)}`", f"{r['median']:.2f}", f"{r['max']:.2f}",
                     ",".join(map(str, r["exit"])), str(s.get("sampler", "?")), str(s.get("trials", "?")),
                     f"{s.get('memory_feasible', '?')}/{s.get('space_size', '?')}",
                     f"{s.get('examined_fraction', 0):.0%}", f"{s.get('seconds', 0):.2f}"])
    print(table(["command (+ --no-write)", "median s", "max s", "exit", "sampler", "trials",
                 "feasible/space", "examined", "plan() s"], rows, "lrrrlrrrr"))
    print("\n`plan() s` is the search stats' `seconds`: the whole plan() call (optuna import, search, simulation "
          "re-score), from the --json run. Exit 1 = no candidate meets the SLO (a finished plan).")

    card = results[CASES[0][0]]
    verdict = "meets" if card["max"] < TARGET_S else "MISSES"
    print(f"\nCard command: median {card['median']:.2f} s, max {card['max']:.2f} s on {info['nproc']} CPU(s): "
          f"{verdict} the {TARGET_S:.0f} s target.\n")

    bd = breakdown(a.repeats)
    rows = [["interpreter start + exit (`python -c pass`)", f"{bd['interpreter_s']:.3f}"]]
    rows += [[n, f"{v:.3f}"] for n, v in bd["phases"].items()]
    rows.append(["**sum of the in-process phases**", f"**{bd['total_s']:.3f}**"])
    print(f"Card command in-process breakdown (fresh interpreter, median of {a.repeats}):")
    print(table(["phase", "seconds"], rows, "lr"))
    print(f"\nInterpreter + phases = {bd['interpreter_s'] + bd['total_s']:.2f} s vs {card['median']:.2f} s measured "
          f"through the console script (the rest: the console-script wrapper, argument handling, GC at exit). "
          f"A second, warm plan() call in the same process: {bd['warm_plan_s']:.3f} s "
          f"(same winner as the pieces: {bd['same_winner']}).")
    print(f"\nLoad average (1/5/15 min) at the end: {loadavg()} (other work on the machine inflates the times).")
    if a.profile or card["median"] >= TARGET_S * 0.8:
        print("\ncProfile of the card command (cumulative):\n")
        print(profile_card())
    if a.json_out:
        a.json_out.write_text(json.dumps({"machine": info, "results": results, "breakdown": bd}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
