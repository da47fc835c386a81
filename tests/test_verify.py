"""`verify`: launch a plan with the fake engine as `vllm`, bench it at its planned load, compare with the prediction.

Every test checks that no engine process is left running (the pids and process groups of the run record,
read from /proc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import alive, free_base_port, free_port, group_alive, make_plan, served, temp_leftovers
from serveplan.errors import LaunchError

TTFT_MS, ITL_MS = 80.0, 2.0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def plan_dir(fake_env, tmp_path):
    """plan.yaml for vLLM 0.26 on H100 (2 replicas of TP1), with the planner's predictions for its winner."""
    try:
        from serveplan.launcher.launch import _engines

        _engines()[1]("vllm")
    except ImportError as e:
        pytest.skip(f"engine adapters not importable yet ({e})")
    from serveplan.planner.estimate import estimate

    fake_env.setenv("FAKE_ENGINE_TTFT_MS", str(TTFT_MS))
    fake_env.setenv("FAKE_ENGINE_ITL_MS", str(ITL_MS))
    fake_env.setenv("SERVEPLAN_FAKE_GPUS", ",".join(["NVIDIA H100 80GB HBM3"] * 2))
    plan = make_plan(tp=1, replicas=2)
    est = estimate(plan.request, plan.winner.config)
    assert est.predictions is not None
    plan = plan.model_copy(update={"ranked": (est,)})
    d = tmp_path / "plan"
    d.mkdir()
    (d / "plan.yaml").write_text(plan.to_yaml())
    return d


def engines_gone(run: dict) -> None:
    assert run["replicas"], "the run record lists no replicas"
    for r in run["replicas"]:
        assert r["pid"] is not None
        assert not alive(r["pid"]), f"{r['name']} (pid {r['pid']}) is still running"
        assert not group_alive(r["pgid"]), f"process group {r['pgid']} still has members"


def verify_cmd(d: Path, *args: str) -> list[str]:
    # Two replicas listen on port and port + 1: both must be free (port + 1 of a random free port can be
    # the local end of some client connection).
    return [sys.executable, "-m", "serveplan.cli", "verify", str(d), "--port", str(free_base_port(2)),
            "--health-timeout", "15", "--no-progress", "--warmup", "0", *args]


def test_verify_end_to_end(plan_dir):
    p = subprocess.run(verify_cmd(plan_dir, "--num-requests", "10", "--warmup", "2"), cwd=REPO, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, COLUMNS="200"))
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((plan_dir / "verify.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "serveplan-verify"
    assert doc["engine"] == "vllm" and doc["gpu"] == "h100-sxm" and doc["config"]["replicas"] == 2
    assert doc["load"] == {"mode": "open", "rate_rps": 4.0, "concurrency": None, "source": "plan"}
    assert doc["prediction_source"] == "plan"
    for m in ("ttft_ms", "tpot_ms"):
        for pct in ("p50", "p90", "p99", "mean"):
            assert doc["predicted"][m][pct] > 0 and doc["measured"][m][pct] > 0
            c = next(c for c in doc["comparison"] if c["metric"] == f"{m}.{pct}")
            assert c["rel_error"] == pytest.approx((c["measured"] - c["predicted"]) / c["predicted"])
    assert {c["metric"] for c in doc["comparison"]} >= {"e2e_ms.p50", "e2e_ms.p99", "output_tok_s",
                                                         "requests_per_s"}
    # The fake engine waits FAKE_ENGINE_TTFT_MS before the first token.
    assert TTFT_MS <= doc["measured"]["ttft_ms"]["p50"] < TTFT_MS * 1.5 + 20
    assert doc["completed"] == 10 and doc["failed"] == 0 and doc["errors"] == {}
    # two seconds of the planned load went first and are in no figure (only the ten measured requests are)
    assert doc["notes"][0].startswith("a 2-s warm-up at the same load (") and "in no figure" in doc["notes"][0]
    assert doc["bench_args"]["warmup_s"] == 2
    assert any(n.startswith("10 requests: each P99 is about the slowest 1 of them") for n in doc["notes"])
    # each latency's range over simulated runs of ten requests: a P99 of ten moves far more than a P50 of ten does
    rng = {c["metric"]: c["sample_range"] for c in doc["comparison"]}
    for key in ("ttft_ms.p50", "ttft_ms.p99", "tpot_ms.p99", "e2e_ms.p99"):
        lo, hi = rng[key]
        assert 0 < lo <= hi, key
    assert rng["e2e_ms.p99"][1] > rng["e2e_ms.p99"][0]  # output lengths drawn again move the slowest request
    assert rng["output_tok_s"] is None and rng["requests_per_s"] is None
    lo, hi = rng["ttft_ms.p99"]
    d = 0 if lo >= 100 else 1  # whole ms from 100 on, tenths below
    assert f"[{lo:,.{d}f}-{hi:,.{d}f}]" in p.stdout
    # the fake engine's fixed 80 ms first token against the model's H100 8B: outside every drawn run, and said so
    p99 = next(c for c in doc["comparison"] if c["metric"] == "ttft_ms.p99")
    assert p99["measured"] > rng["ttft_ms.p99"][1]
    assert any(n.startswith("TTFT P99 measured") and "outside" in n for n in doc["notes"])
    assert len(doc["requests"]) == 10 and len(doc["measured_per_url"]) == 2
    assert doc["run"]["status"] == "stopped" and [r["exit_code"] for r in doc["run"]["replicas"]] == [0, 0]
    assert (plan_dir / doc["bench_file"]).is_file()
    engines_gone(doc["run"])
    assert not temp_leftovers(plan_dir)
    for word in ("predicted (plan)", "measured", "TTFT P50", "TPOT P99", "output tok/s", "verify.json",
                 "replayed on the requests sent"):
        assert word in p.stdout
    # the launch's own notes (as `plan launch` prints them) are shown too, and kept in run.notes
    assert doc["run"]["notes"] and all(f"note: {n[:40]}" in " ".join(p.stdout.split()) for n in doc["run"]["notes"])
    # the model replayed on the ten requests sent (each replica's own): latencies beside the prediction's
    for m in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert doc["replayed"][m]["p99"] >= doc["replayed"][m]["p50"] > 0
    c = next(c for c in doc["comparison"] if c["metric"] == "ttft_ms.p50")
    assert c["replayed"] == pytest.approx(doc["replayed"]["ttft_ms"]["p50"])
    assert next(c for c in doc["comparison"] if c["metric"] == "output_tok_s")["replayed"] is None


def test_forced_run_on_another_gpu_is_predicted_for_that_gpu(plan_dir, fake_env):
    """A --force run of an H100 plan on H200s (session 21 ran the 1xH100 plan that way): the prediction is
    re-estimated for the H200 with the plan's configuration, and the document and table say where it ran."""
    from rich.console import Console

    from serveplan.bench.verify import verify_plan
    from serveplan.planner.catalog import gpu_spec
    from serveplan.planner.estimate import estimate
    from serveplan.planner.result import load_plan

    fake_env.setenv("SERVEPLAN_FAKE_GPUS", ",".join(["NVIDIA H200"] * 2))
    with pytest.raises(LaunchError, match="made for H100"):
        verify_plan(plan_dir, warmup_s=0, num_requests=4, base_port=free_port(), health_timeout_s=15, grace_s=3, progress=False,
                    console=Console(file=open(os.devnull, "w")))
    out = plan_dir / "forced.json"
    res = verify_plan(plan_dir, warmup_s=0, force=True, num_requests=6, base_port=free_base_port(2), health_timeout_s=15,
                      grace_s=3, progress=False, output=out, console=Console(file=open(os.devnull, "w")))
    doc = json.loads(out.read_text())
    assert doc["gpu"] == "h100-sxm" and doc["ran_on_gpu"] == "h200" and doc["prediction_source"] == "re-estimated"
    plan = load_plan(plan_dir)
    on_h200 = plan.request.model_copy(update={"inventory": plan.request.inventory.model_copy(
        update={"gpu": gpu_spec("h200")})})
    again = estimate(on_h200, plan.winner.config)
    assert doc["predicted"]["tpot_ms"]["mean"] == pytest.approx(again.predictions.tpot_ms.mean)
    # the H200's 4.8 TB/s against the H100's 3.35: the same configuration decodes faster there
    assert doc["predicted"]["tpot_ms"]["mean"] < plan.winner.predictions.tpot_ms.mean
    assert any("this ran on (--force)" in n for n in doc["notes"])
    engines_gone(doc["run"])
    assert res.ran_on_gpu == "h200"


def test_load_override_re_estimates(plan_dir):
    from rich.console import Console

    from serveplan.bench.verify import verify_plan
    from serveplan.planner.estimate import estimate
    from serveplan.planner.result import load_plan

    out = plan_dir / "elsewhere" / "v.json"
    res = verify_plan(plan_dir, warmup_s=0, concurrency=2, num_requests=6, base_port=free_port(), health_timeout_s=15,
                      grace_s=3, progress=False, output=out, console=Console(file=open(os.devnull, "w")))
    doc = json.loads(out.read_text())
    assert res.path == str(out) and (out.parent / "v-bench.json").is_file()
    assert doc["prediction_source"] == "re-estimated"
    assert doc["load"]["mode"] == "closed" and doc["load"]["concurrency"] == 2 and doc["load"]["source"] == "override"
    assert doc["bench_args"]["mode"] == "closed" and doc["bench_args"]["concurrency"] == 2
    plan = load_plan(plan_dir)
    again = estimate(plan.request.model_copy(update={"traffic": plan.request.traffic.model_copy(
        update={"arrival": "closed", "concurrency": 2, "rate_rps": None})}), plan.winner.config)
    assert doc["predicted"]["ttft_ms"]["p50"] == pytest.approx(again.predictions.ttft_ms.p50)
    assert doc["predicted"]["requests_per_s"] != pytest.approx(plan.winner.predictions.requests_per_s)
    assert res.exit_code == 0 and res.compared("ttft_ms.p50").measured >= TTFT_MS
    engines_gone(doc["run"])


def test_a_kernel_compiled_during_the_measured_load_is_noted(plan_dir, fake_env):
    """vLLM logs "Triton kernel JIT compilation during inference" when it compiles a kernel for a batch shape met while
    serving (session 26: a fresh Mixtral server's first ~25 s of load). In the warm-up: no note. In the measured part:
    a note naming the replica and the line, and what to do."""
    from rich.console import Console

    from serveplan.bench.verify import verify_plan

    def run(jit_at: int, warmup_s: float) -> list[str]:
        fake_env.setenv("FAKE_ENGINE_JIT_AT_REQUEST", str(jit_at))
        res = verify_plan(plan_dir, warmup_s=warmup_s, concurrency=2, num_requests=4, base_port=free_base_port(2),
                          health_timeout_s=15, grace_s=3, progress=False, console=Console(file=open(os.devnull, "w")))
        return [n for n in res.notes if "compiled a kernel during the measured load" in n]

    # each replica's first request is a warm-up one (two clients, round robin): compiled before the measured part
    assert run(jit_at=1, warmup_s=1.0) == []
    # each replica's second measured request: inside it
    stalls = run(jit_at=2, warmup_s=0)
    assert len(stalls) == 1 and stalls[0].startswith("replica-")
    assert "Triton kernel JIT compilation during inference: fused_moe_kernel" in stalls[0]
    assert "(EngineCore pid=" not in stalls[0] and "--warmup" in stalls[0]


def test_launch_failure_propagates(plan_dir, fake_env):
    from serveplan.launcher.record import read_run
    from serveplan.bench.verify import verify_plan

    fake_env.setenv("FAKE_ENGINE_MODE", "crash")
    with pytest.raises(LaunchError, match=r"crashed while starting \(exited with code 1\): `RuntimeError: CUDA error"):
        verify_plan(plan_dir, warmup_s=0, num_requests=2, base_port=free_port(), health_timeout_s=15, grace_s=3,
                    progress=False, console=None)
    assert not (plan_dir / "verify.json").exists()
    rec = read_run(plan_dir)
    assert rec.status == "failed"
    engines_gone(rec.model_dump())


def test_bad_plan_dir_is_one_line(tmp_path, capsys):
    from serveplan.cli import main

    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No plan.yaml in")
    # a folder that is not there is named as given (it read "No plan.yaml in /" for /nonexistent)
    missing = tmp_path / "no-such-plan"
    assert main(["verify", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: Plan folder '{missing}' does not exist; give the folder `plan -o` wrote."]
    assert main(["plan", "stop", str(missing)]) != 0
    assert capsys.readouterr().err.strip().splitlines() == err


def test_sigterm_during_bench_stops_engines(plan_dir):
    cmd = verify_cmd(plan_dir, "--duration", "30")
    port = int(cmd[cmd.index("--port") + 1])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        for line in proc.stdout:  # wait until the bench has started
            if "benchmarking" in line or time.monotonic() > deadline:
                break
        # then until both replicas have served a few requests, however slow the machine (not a fixed second)
        replicas = [f"http://127.0.0.1:{p}" for p in (port, port + 1)]
        while time.monotonic() < deadline + 30 and min(map(served, replicas)) < 2:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = json.loads((plan_dir / "run.json").read_text())
    assert run["status"] == "stopped"
    engines_gone(run)
    doc = json.loads((plan_dir / "verify.json").read_text())
    assert doc["interrupted"] is True and doc["completed"] >= 1


def test_sample_range_of_a_short_run(plan_dir):
    """Simulated runs of the measured size (five seeds), chat-like lognormal prompts: a median's spread shrinks as the
    run grows, and a short run's P99 sits below a long run's (its slowest request is a lower quantile): why a
    124-request verify's P99 is compared with runs of 124, not with the plan's long-run figure."""
    from serveplan.bench.verify import sample_ranges
    from serveplan.planner.result import load_plan
    from serveplan.planner.spec import LengthDist

    plan = load_plan(plan_dir)
    chat = plan.request.traffic.model_copy(update={"rate_rps": 1.0, "input_len": LengthDist(
        kind="lognormal", mean=1024, std=900, min=16, max=8192)})
    short, long_ = sample_ranges(plan, chat, 20), sample_ranges(plan, chat, 2000)
    width = lambda r, k: r[k][1] - r[k][0]  # noqa: E731
    assert width(short, "ttft_ms.p50") > width(long_, "ttft_ms.p50") >= 0
    assert short["ttft_ms.p99"][1] < long_["ttft_ms.p99"][0]
    assert sample_ranges(plan, chat, 0) is None and sample_ranges(plan, chat, 10**6) is None


def test_outside_sample_range_notes_only_misses():
    from serveplan.bench.verify import Comparison, outside_sample_range

    inside = Comparison(metric="ttft_ms.p99", predicted=1457.0, measured=1200.0, sample_range=(1121.0, 1830.0))
    below = inside.model_copy(update={"measured": 769.1})
    p50 = Comparison(metric="ttft_ms.p50", predicted=300.0, measured=100.0, sample_range=(290.0, 310.0))
    assert outside_sample_range([inside, p50]) == []
    (note,) = outside_sample_range([below, p50])
    assert note.startswith("TTFT P99 measured 769.1 ms lies outside the 1,121-1,830 ms")
    tpot = Comparison(metric="tpot_ms.p99", predicted=4.3, measured=2.4, sample_range=(4.02, 4.12))
    assert outside_sample_range([tpot])[0].startswith("TPOT P99 measured 2.4 ms lies outside the 4.0-4.1 ms")
