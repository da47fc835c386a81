"""CLI details through `python -m serveplan.cli` in subprocesses: signal exit codes of a foreground
`plan launch`, quiet exit on a closed output pipe, top-level --help and --version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import alive, free_base_port, group_alive, make_plan, temp_leftovers

CLI = [sys.executable, "-m", "serveplan.cli"]
SMALL_PLAN = ["--model", "llama-8b", "--gpus", "1xL4", "--no-write", "search.n_trials=10"]
NOISE = ("Traceback", "BrokenPipeError", "Exception ignored", "internal error")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SERVEPLAN_DEBUG", "SERVEPLAN_PROFILES")}


# ------------------------------------------------------------------------------------------- launch signals
@pytest.fixture
def plan_dir(fake_env, tmp_path):
    try:
        from serveplan.launcher.launch import _engines

        _engines()[1]("vllm")
    except ImportError as e:
        pytest.skip(f"engine adapters not importable yet ({e})")
    d = tmp_path / "plan"
    d.mkdir()
    (d / "plan.yaml").write_text(make_plan(replicas=2).to_yaml())
    return d


def _read_run(d: Path) -> dict | None:
    try:
        return json.loads((d / "run.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait_for(d: Path, proc: subprocess.Popen, ready, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = _read_run(d)
        if rec is not None and ready(rec):
            return rec
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"plan launch exited {proc.returncode} early:\n{out}\n{err}")
        time.sleep(0.05)
    pytest.fail(f"run.json never got ready: {_read_run(d)}")


def _launch(d: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "launch", str(d), "--port", str(port), "--health-timeout", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _assert_all_stopped(d: Path, sig: signal.Signals | None) -> None:
    """Every engine of the launch in `d` is gone; stopped by `sig` (None: by `plan stop`)."""
    rec = _read_run(d)
    assert rec["status"] == "stopped" and rec["stop_signal"] == (sig.name if sig else None), rec
    for r in rec["replicas"]:
        assert r["pid"] is not None
        assert not alive(r["pid"]), f"engine {r['pid']} still running"
        assert not group_alive(r["pgid"]), f"process group {r['pgid']} still has members"
    assert not temp_leftovers(d)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_foreground_launch_exit_code_follows_the_signal(plan_dir, sig, code):
    proc = _launch(plan_dir, free_base_port(2))
    try:
        _wait_for(plan_dir, proc, lambda r: r["status"] == "running" and
                  all(x["health_s"] is not None for x in r["replicas"]))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, out + err
    assert "Traceback" not in err
    _assert_all_stopped(plan_dir, sig)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_starting_exits_the_same_way(plan_dir, fake_env, sig, code):
    fake_env.setenv("FAKE_ENGINE_STARTUP_S", "30")  # spawned, never healthy before the signal
    proc = _launch(plan_dir, free_base_port(2))
    try:
        _wait_for(plan_dir, proc, lambda r: r["status"] == "starting" and
                  all(x["pid"] is not None for x in r["replicas"]))
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, out + err
    assert "Traceback" not in err and "interrupted" in err
    _assert_all_stopped(plan_dir, sig)


# ------------------------------------------------------------------------------------------- closed pipes
def _run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess:
    """stdout is a pipe whose reader is closed before the command writes anything."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([*CLI, *args], stdout=w, stderr=subprocess.PIPE, text=True, env=_env())
    finally:
        os.close(w)
        os.close(r)
    _, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


@pytest.mark.parametrize("args", [
    [*SMALL_PLAN, "--json"],
    SMALL_PLAN,  # the rich table
    ["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--input-len", "1000", "--output-len", "200",
     "--concurrency", "16", "--json"],
], ids=["plan-json", "plan-table", "estimate-json"])
def test_closed_pipe_exits_quietly(args):
    p = _run_into_closed_pipe(args)
    assert p.returncode == 141, p.stderr
    assert not any(n in p.stderr for n in NOISE), p.stderr


@pytest.mark.parametrize("cmd", [
    [*SMALL_PLAN, "--json"],
    ["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--input-len", "1000", "--output-len", "200",
     "--concurrency", "16", "--json"],
], ids=["plan", "estimate"])
def test_head_pipeline_has_no_traceback(cmd):
    line = " ".join(map(str, [*CLI, *cmd]))
    p = subprocess.run(["sh", "-c", f"{line} | head -1"], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0
    assert p.stdout.strip() == "{"
    assert not any(n in p.stderr for n in NOISE), p.stderr


def test_broken_pipe_not_on_stdout_is_still_a_bug():
    code = ("import sys\nfrom serveplan.cli import _guard\n"
            "def f(argv):\n    raise BrokenPipeError(32, 'a socket, not stdout')\n"
            "sys.exit(_guard(f, []))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert p.returncode == 3
    assert "Traceback" in p.stderr and "serveplan bug" in p.stderr


# ------------------------------------------------------------------------------------------- help, version
def test_top_level_help_names_the_subcommands():
    from serveplan.cli import SUBCOMMANDS

    p = subprocess.run([*CLI, "--help"], capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: plan")
    for name in ("estimate", "launch", "stop", "bench", "verify", "profile", *SUBCOMMANDS):
        assert f"\n  {name} " in p.stdout, name
    description = p.stdout.split("\n\n")[1]
    assert all(name in description for name in SUBCOMMANDS), description


def test_serveplan_entry_help_uses_its_name():
    p = subprocess.run([sys.executable, "-c", "import sys; from serveplan.cli import main; sys.exit(main())",
                        "--help"], capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: serveplan") and "serveplan SUBCOMMAND --help" in p.stdout


def test_version():
    p = subprocess.run([*CLI, "--version"], capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"serveplan {version('serveplan')}"


def test_detached_launch_warms_up_then_stops(plan_dir):
    """`plan launch --detach --warmup S`: the plan's traffic for S seconds once healthy, said before "ready" and kept
    in run.json's notes; `plan stop` then stops it as any detached launch."""
    port = free_base_port(2)
    p = subprocess.run([*CLI, "launch", str(plan_dir), "--detach", "--warmup", "1", "--port", str(port),
                        "--health-timeout", "20"], capture_output=True, text=True, env=_env(), timeout=60)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.index("warming up: 1 s of the plan's traffic") < p.stdout.index("ready replica-0")
        rec = _read_run(plan_dir)
        assert rec["status"] == "detached" and any(n.startswith("warmed up with ") for n in rec["notes"])
    finally:
        q = subprocess.run([*CLI, "stop", str(plan_dir)], capture_output=True, text=True, env=_env(), timeout=60)
    assert q.returncode == 0, q.stdout + q.stderr
    _assert_all_stopped(plan_dir, None)
