"""Calibration fitting on synthetic benchmarks whose true engine terms are known."""

import json
import subprocess
import sys

import pytest

from serveplan.planner.calibrate import (Observation, fit_calibration, loss,
                                         predict_observation, write_calibration)
from serveplan.planner.profiles import Calibration, find_calibration

TRUE = Calibration(engine="vllm", engine_version="0.26.0", gpu="h100-sxm", step_overhead_ms=4.0,
                   per_seq_overhead_us=20.0, request_overhead_ms=15.0, prefill_seq_overhead_ms=0.5, eager_step_ms=3.0,
                   bandwidth_scale=0.8, compute_scale=0.9, prefill_scale=1.0)
POINTS = [(512, 64, 1, 4), (512, 64, 8, 16), (2048, 32, 4, 8), (128, 96, 16, 32)]


@pytest.fixture(scope="module")
def synthetic():
    """Observations 'measured' by the planner itself under TRUE terms."""
    obs = []
    for i, o, c, n in POINTS:
        base = Observation(input_len=i, output_len=o, concurrency=c, num_prompts=n, ttft_ms=1, tpot_ms=1,
                           throughput_tok_s=1, max_model_len=4096)
        p = predict_observation(base, TRUE)
        obs.append(base.model_copy(update={"ttft_ms": p["ttft_ms"], "tpot_ms": p["tpot_ms"],
                                           "throughput_tok_s": p["throughput_tok_s"]}))
    return obs


def test_fit_recovers_what_the_benchmarks_show(synthetic):
    before = loss(synthetic, None)
    # nine terms from four points: TPE needs more trials than the shipped fits (which have 12-17 points) to land
    # in a basin that reproduces every point
    cal = fit_calibration(synthetic, source="synthetic", n_trials=800, version="0.26.0")
    after = loss(synthetic, cal)
    assert after < before / 3
    for o in synthetic:
        p = predict_observation(o, cal)
        assert abs(p["tpot_ms"] / o.tpot_ms - 1) < 0.10
        assert abs(p["ttft_ms"] / o.ttft_ms - 1) < 0.20
    assert cal.source == "synthetic" and cal.fit["points"] == len(synthetic)


def test_written_calibration_is_found_and_applied(tmp_path, monkeypatch, synthetic):
    path = write_calibration(TRUE, tmp_path)
    assert path == tmp_path / "calibration" / "vllm-0.26.0" / "h100-sxm.yaml"
    monkeypatch.setenv("SERVEPLAN_PROFILES", str(tmp_path))
    found = find_calibration("vllm", "0.26.0", "h100-sxm")
    assert found is not None and found.step_overhead_ms == 4.0
    assert not list(tmp_path.rglob("*.tmp"))


def test_observations_from_vllm_bench_json(tmp_path):
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.planner.report import write_outdir

    req = build_request(model="llama-8b", gpus="1xH100", overrides=["search.n_trials=20"])
    write_outdir(plan(req), tmp_path / "p")
    doc = {"completed": 32, "total_input_tokens": 32 * 512, "total_output_tokens": 32 * 128,
           "max_concurrency": 16, "mean_ttft_ms": 200.0, "mean_tpot_ms": 7.0, "output_throughput": 2000.0}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    from serveplan.bench.results import read_bench_summary
    from serveplan.planner.calibrate import BenchPoint, observations
    from serveplan.planner.result import load_plan

    s, model = read_bench_summary(tmp_path / "v.json")
    point = BenchPoint(label="v.json", model=model, completed=s.completed, total_input_tokens=s.total_input_tokens,
                       total_output_tokens=s.total_output_tokens, concurrency=s.concurrency_limit,
                       ttft_ms=s.ttft_ms.mean, tpot_ms=s.tpot_ms.mean, throughput_tok_s=s.output_tok_s)
    (obs,) = observations(load_plan(tmp_path / "p"), [point])
    assert (obs.input_len, obs.output_len, obs.concurrency, obs.num_prompts) == (512, 128, 16, 32)
    assert obs.tpot_ms == 7.0 and obs.gpu == "h100-sxm"
    # A result with neither a concurrency nor a rate is refused with one sentence.
    doc.pop("max_concurrency")
    (tmp_path / "open.json").write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "serveplan.cli", "calibrate", str(tmp_path / "p"), "--bench",
                        str(tmp_path / "open.json"), "--out", str(tmp_path / "prof")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert "closed loop" in r.stderr and "rate" in r.stderr


def test_open_loop_observation_is_fitted_on_its_median_ttft():
    """An open-loop point (verify: Poisson arrivals at a rate, the traffic's lengths) is predicted as the run it
    was (its number of requests, its drain) with TTFT at the median; a fit to points 'measured' under TRUE terms
    recovers them better than no calibration, and a heavier load of the same run never predicts a lower TPOT."""
    from serveplan.planner.config import build_request

    chat = build_request(model="llama-8b", gpus="1xH100", traffic="chat").traffic.model_dump()
    obs = []
    for rate, n in ((2.0, 60), (12.0, 240)):
        base = Observation(input_len=1024, output_len=256, concurrency=0, num_prompts=n, ttft_ms=1, tpot_ms=1,
                           throughput_tok_s=1, max_model_len=16384, rate_rps=rate, traffic=chat,
                           weight_dtype="fp8", kv_cache_dtype="fp8")
        p = predict_observation(base, TRUE)
        obs.append(base.model_copy(update={"ttft_ms": p["ttft_ms"], "tpot_ms": p["tpot_ms"],
                                           "throughput_tok_s": p["throughput_tok_s"]}))
    light, heavy = (predict_observation(o, TRUE) for o in obs)
    assert heavy["tpot_ms"] >= light["tpot_ms"]
    before = loss(obs, None)
    cal = fit_calibration(obs, source="synthetic open loop", n_trials=60, version="0.26.0")
    assert loss(obs, cal) < before / 2


def test_calibrate_cli_takes_an_open_loop_bench(tmp_path):
    """`plan calibrate DIR --bench verify.json` of an open-loop run: accepted (it used to refuse anything but a
    closed loop), fitted, and written where the planner finds it."""
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.planner.report import write_outdir

    req = build_request(model="llama-8b", gpus="1xH100", overrides=["search.n_trials=20"])
    write_outdir(plan(req), tmp_path / "p")
    doc = {"completed": 40, "total_input_tokens": 40 * 1000, "total_output_tokens": 40 * 250,
           "duration": 30.0, "request_throughput": 1.3, "output_throughput": 330.0, "request_rate": 2.0,
           "max_concurrency": None, "mean_ttft_ms": 90.0, "median_ttft_ms": 70.0, "p99_ttft_ms": 300.0,
           "mean_tpot_ms": 6.0, "median_tpot_ms": 6.0, "p99_tpot_ms": 9.0, "mean_itl_ms": 6.0,
           "median_itl_ms": 6.0, "p99_itl_ms": 9.0, "mean_e2el_ms": 1600.0, "median_e2el_ms": 1500.0,
           "p99_e2el_ms": 3000.0, "model_id": "meta-llama/Llama-3.1-8B-Instruct"}
    (tmp_path / "open.json").write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "serveplan.cli", "calibrate", str(tmp_path / "p"), "--bench",
                        str(tmp_path / "open.json"), "--out", str(tmp_path / "prof"), "--trials", "8"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 req/s" in r.stdout and "Wrote" in r.stdout
    assert list((tmp_path / "prof" / "calibration").rglob("h100-sxm.yaml"))


def test_plan_calibrate_writes_the_plans_version(tmp_path):
    """`plan calibrate` keys the fit by the benchmarked plan's engine version, not the default (0.33.0): a 0.26.0
    plan's benchmarks make vllm-0.26.0/<gpu>.yaml."""
    from serveplan.cli.calibrate import main
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.planner.report import write_outdir

    req = build_request(model="llama-8b", gpus="1xH100", overrides=["search.n_trials=20", "engine.version=0.26.0"])
    write_outdir(plan(req), tmp_path / "p")
    doc = {"completed": 32, "total_input_tokens": 32 * 512, "total_output_tokens": 32 * 128,
           "max_concurrency": 16, "mean_ttft_ms": 200.0, "mean_tpot_ms": 7.0, "output_throughput": 2000.0}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    assert main([str(tmp_path / "p"), "--bench", str(tmp_path / "v.json"), "--out", str(tmp_path / "prof"),
                 "--trials", "3"]) == 0
    written = list((tmp_path / "prof" / "calibration").glob("*/*.yaml"))
    assert [f.relative_to(tmp_path / "prof").as_posix() for f in written] == ["calibration/vllm-0.26.0/h100-sxm.yaml"]


def test_a_refit_started_from_the_old_calibration_never_ends_worse_on_its_points(synthetic):
    # The true terms as the calibration a refit replaces: tried first, so a short study cannot end above them
    # (a refit after a change to the step model starts from the terms it had)
    start = TRUE.model_copy(update={"max_stream_tok_s": None, "attention_scale": None})
    cal = fit_calibration(synthetic, source="synthetic", n_trials=4, version="0.26.0", start=start)
    assert loss(synthetic, cal) <= loss(synthetic, start) + 1e-9
    assert loss(synthetic, start) < 0.01  # TRUE reproduces its own points


def test_a_refit_keeps_the_measured_kernel_tables(synthetic):
    """The engine's measured GEMM and MoE kernel tables (fp8_gemm, int8_gemm, moe_int8_kernel) are not fitted: a
    refit carries start's, or the ones passed, through unchanged; a calibration without them gets none."""
    from serveplan.planner.profiles import KernelFactor

    fp8 = KernelFactor(tokens=(16, 17), factor=(1.0, 1.3), source="fp8 table")
    int8 = KernelFactor(tokens=(16, 17), factor=(1.0, 1.02), source="int8 table")
    moe = {"E=8,N=14336": KernelFactor(tokens=(32, 256), factor=(1.0, 3.0), source="moe table")}
    start = TRUE.model_copy(update={"fp8_gemm": fp8, "int8_gemm": int8, "moe_int8_kernel": moe})
    kept = fit_calibration(synthetic, source="synthetic", n_trials=2, version="0.26.0", start=start)
    assert kept.kernel_tables() == {"fp8_gemm": fp8, "int8_gemm": int8, "moe_int8_kernel": moe}
    passed = fit_calibration(synthetic, source="synthetic", n_trials=2, version="0.26.0",
                             kernel_tables={"int8_gemm": int8})
    assert passed.kernel_tables() == {"int8_gemm": int8}
    assert fit_calibration(synthetic, source="synthetic", n_trials=2, version="0.26.0").kernel_tables() == {}
