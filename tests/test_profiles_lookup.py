"""Hardware profiles and engine calibrations (planner.profiles): which file wins, what a lookup says about
where its number came from, and that a profile or calibration actually moves the step time."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from serveplan.planner import catalog
from serveplan.planner.config import build_request
from serveplan.planner.estimate import Scorer, estimate
from serveplan.planner.perf import StepModel
from serveplan.planner.profiles import (SHIPPED_PROFILES, Curve, find_calibration, find_profile,
                                        load_profile_file, parse_profile, search_path)
from serveplan.planner.spec import Candidate, EngineConfig

GPU = "l4"
TOKENS = [1, 16, 256, 4096]


def profile_doc(kind: str, bw: float, *, gpu: str = GPU, tokens=TOKENS, decode: bool = True) -> dict:
    doc = {
        "schema_version": 1, "gpu": gpu, "kind": kind,
        "provenance": {"command": "test"},
        "memory_bandwidth_gbs": bw,
        "gemm": {"bf16": {"tokens": list(tokens), "tflops": [0.5 * t ** 0.5 + 1 for t in tokens]}},
        "attention": {"prefill": {"seq_len": [128, 1024, 8192], "tflops": [20.0, 40.0, 50.0]}},
        "collectives": {"allreduce": {"2": {"bytes": [1024, 1048576], "time_us": [10.0, 60.0]}}},
    }
    if decode:
        doc["attention"]["decode"] = {"kv_tokens": [256, 4096, 65536], "bandwidth_gbs": [50.0, 150.0, 200.0]}
    return doc


def write_profile(root: Path, kind: str, bw: float, *, sub: bool = False, **kw) -> Path:
    f = root / kind / (f"{GPU}/a.yaml" if sub else f"{GPU}.yaml")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump(profile_doc(kind, bw, **kw)))
    return f


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("SERVEPLAN_PROFILES", raising=False)


# ------------------------------------------------------------------------------------------- lookup order
def test_measured_beats_datasheet_in_any_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_profile(a, "datasheet", 111.0)
    write_profile(b, "measured", 222.0)
    for dirs in ((a, b), (b, a)):
        prof = find_profile(GPU, dirs)
        assert prof.kind == "measured" and prof.memory_bandwidth_gbs == 222.0, dirs


def test_earlier_dir_wins_within_a_kind(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_profile(a, "measured", 111.0)
    write_profile(b, "measured", 222.0, sub=True)  # <dir>/measured/<gpu>/*.yaml is read too
    assert find_profile(GPU, (a, b)).memory_bandwidth_gbs == 111.0
    assert find_profile(GPU, (b, a)).memory_bandwidth_gbs == 222.0
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    write_profile(d1, "datasheet", 333.0)
    write_profile(d2, "datasheet", 444.0)
    assert find_profile(GPU, (d2, d1)).memory_bandwidth_gbs == 444.0


def test_profile_for_another_gpu_is_not_used(tmp_path):
    a = tmp_path / "a"
    f = a / "measured" / f"{GPU}.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(yaml.safe_dump(profile_doc("measured", 999.0, gpu="a10")))  # mislabelled file
    prof = find_profile(GPU, (a, SHIPPED_PROFILES))
    assert prof is not None and prof.gpu == GPU and prof.memory_bandwidth_gbs != 999.0
    assert find_profile("no-such-gpu", (a,)) is None


def test_env_dir_is_searched(tmp_path, monkeypatch):
    env = tmp_path / "env"
    write_profile(env, "measured", 555.0)
    monkeypatch.setenv("SERVEPLAN_PROFILES", str(env))
    path = search_path()
    assert path.index(env) < path.index(SHIPPED_PROFILES)
    prof = find_profile(GPU)
    assert prof.kind == "measured" and prof.memory_bandwidth_gbs == 555.0
    # Explicit dirs come before the environment's.
    x = tmp_path / "x"
    write_profile(x, "measured", 666.0)
    assert find_profile(GPU, search_path((str(x),))).memory_bandwidth_gbs == 666.0


def test_shipped_profile_is_datasheet_for_every_catalog_gpu():
    for name in catalog.options("hardware"):
        f = SHIPPED_PROFILES / "datasheet" / f"{name}.yaml"
        prof = load_profile_file(f)
        assert prof.kind == "datasheet" and prof.gpu == name
        gpu = catalog.gpu_spec(name)
        assert prof.memory_bandwidth_gbs < gpu.hbm_bandwidth_gbs  # achieved, below peak


def test_bad_schema_version_rejected():
    doc = profile_doc("measured", 100.0)
    doc["schema_version"] = 2
    with pytest.raises(ValueError, match="schema_version"):
        parse_profile(doc, "x.yaml")


# ------------------------------------------------------------------------------------------- curves
def test_curve_sources_and_log_interpolation():
    c = Curve(x=(1.0, 10.0, 100.0), y=(0.0, 10.0, 20.0))
    assert c.at(10) == (10.0, "measured")
    assert c.at(1) == (0.0, "measured") and c.at(100) == (20.0, "measured")
    assert c.at(0.5) == (0.0, "extrapolated")
    assert c.at(1000) == (20.0, "extrapolated")
    v, s = c.at(math.sqrt(10))  # halfway between 1 and 10 in log(x)
    assert s == "interpolated" and v == pytest.approx(5.0)
    v, s = c.at(50)  # log-x: 10 + 10 * log(5)/log(10) = 16.99; linear-x would be 14.44
    assert s == "interpolated" and v == pytest.approx(10 + 10 * math.log(5) / math.log(10))


def test_parsed_curves_are_sorted():
    doc = profile_doc("measured", 100.0)
    doc["gemm"]["bf16"] = {"tokens": [256, 1, 16], "tflops": [9.0, 1.0, 3.0]}
    prof = parse_profile(doc)
    assert prof.gemm["bf16"].x == (1.0, 16.0, 256.0)
    assert prof.gemm_tflops("bf16", 16) == (3.0, "measured")
    assert prof.gemm_tflops("bf16", 64)[1] == "interpolated"
    # A dtype the profile lacks stands in with bf16 and says so.
    assert prof.gemm_tflops("fp8", 16) == (3.0, "extrapolated")
    ds = parse_profile({**doc, "kind": "datasheet"})
    assert ds.gemm_tflops("bf16", 64)[1] == "datasheet"


def test_collective_lookup():
    prof = parse_profile(profile_doc("measured", 100.0))
    assert prof.collective_time_us("allreduce", 2, 1024) == (10.0, "measured")
    assert prof.collective_time_us("allreduce", 4, 1024) is None
    v, s = prof.collective_time_us("allreduce", 2, 2 * 1048576)  # beyond the table: bandwidth-bound
    assert s == "extrapolated" and v == pytest.approx(120.0)


# ------------------------------------------------------------------------------------------- step model
def _step_model(profile, calib=None, tp=1) -> StepModel:
    from serveplan.testing import factories

    model = factories.model("llama-3.1-8b")
    inv = factories.inventory(GPU, gpus_per_node=2)
    eng = EngineConfig(**catalog.catalog_doc("engine", "vllm"))
    return StepModel(model, inv, eng, Candidate(tp=tp), profile, calib)


def test_step_model_sources_follow_the_profile():
    exact = parse_profile(profile_doc("measured", 250.0, tokens=[1, 16, 256, 4096]))
    between = parse_profile(profile_doc("measured", 250.0, tokens=[1, 64, 1024, 4096], decode=False))
    shipped = load_profile_file(SHIPPED_PROFILES / "datasheet" / f"{GPU}.yaml")
    s = _step_model(exact, tp=2).sources
    assert s["gemm"] == "measured" and s["bandwidth"] == "measured" and s["attention"] == "measured"
    assert s["allreduce"] == "measured"
    s = _step_model(between).sources
    assert s["gemm"] == "interpolated" and s["attention"] == "extrapolated"
    s = _step_model(shipped, tp=2).sources
    assert s["gemm"] == s["bandwidth"] == s["attention"] == s["allreduce"] == "datasheet"
    assert s["overhead"] == "assumed"


def test_measured_bandwidth_moves_decode_step():
    slow = _step_model(parse_profile(profile_doc("measured", 150.0)))
    fast = _step_model(parse_profile(profile_doc("measured", 300.0)))
    # Batch-1 decode of 16 GB of weights is bandwidth-bound: twice the bandwidth, about half the time.
    t_slow, t_fast = slow.step_ms(1, 1) - slow.overhead_ms, fast.step_ms(1, 1) - fast.overhead_ms
    assert t_slow > t_fast
    assert t_slow / t_fast == pytest.approx(2.0, rel=0.1)


# ------------------------------------------------------------------------------------------- calibration
@pytest.fixture(scope="module")
def l4_req():
    return build_request(model="llama-8b", gpus="1xL4",
                         overrides=["traffic.input_len.kind=fixed", "traffic.input_len.mean=500",
                                    "traffic.input_len.max=500", "traffic.output_len.kind=fixed",
                                    "traffic.output_len.mean=100", "traffic.output_len.max=100",
                                    "traffic.rate_rps=0.5"])


DEFAULT_VLLM = EngineConfig(**catalog.catalog_doc("engine", "vllm")).version


def _write_calibration(root: Path, version: str = DEFAULT_VLLM, *, engine: str = "vllm", gpu: str = GPU,
                       **terms) -> Path:
    f = root / "calibration" / f"{engine}-{version}" / f"{gpu}.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump({"engine": engine, "engine_version": version, "gpu": gpu,
                                 "source": "test benchmark", **terms}))
    return f


def test_calibration_changes_step_time(tmp_path, monkeypatch, l4_req):
    cand = Candidate(max_model_len=1024)
    base = Scorer(l4_req, use_calibration=False).score(cand, simulated=True)
    assert base.predictions.sources["overhead"] == "assumed"
    f = _write_calibration(tmp_path, step_overhead_ms=9.0, per_seq_overhead_us=20.0, bandwidth_scale=0.8)
    assert find_calibration("vllm", DEFAULT_VLLM, GPU, (tmp_path,)).step_overhead_ms == 9.0
    monkeypatch.setenv("SERVEPLAN_PROFILES", str(tmp_path))
    cal = estimate(l4_req, cand)
    p0, p1 = base.predictions, cal.predictions
    assert p1.sources["overhead"] == "calibrated"
    assert p1.sources.get("calibration") == str(f)
    # 7 ms more per step (9 vs the assumed 2) and 20% less bandwidth: every token is slower.
    assert p1.decode_step_ms > p0.decode_step_ms + 7.0
    assert p1.tpot_ms.p50 > p0.tpot_ms.p50 + 7.0


def test_calibration_for_a_newer_version_or_other_engine_or_gpu_is_ignored(tmp_path):
    _write_calibration(tmp_path, "0.40.0", step_overhead_ms=9)
    _write_calibration(tmp_path, "0.1.0", engine="sglang", step_overhead_ms=9)
    _write_calibration(tmp_path, "0.1.0", gpu="h100-sxm", step_overhead_ms=9)
    assert find_calibration("vllm", "0.26.0", GPU, (tmp_path,)) is None


def test_calibration_falls_back_to_the_newest_older_version(tmp_path):
    """No file at the version planned for: the newest older version's (numerically: 0.26 is newer than 0.9),
    marked as applied to the planned version; a file at the version itself always wins."""
    d1, d2 = tmp_path / "first", tmp_path / "second"
    _write_calibration(d1, "0.9.0", step_overhead_ms=1.0)
    _write_calibration(d2, "0.26.0", step_overhead_ms=2.0)
    _write_calibration(d2, "0.20.1", step_overhead_ms=3.0)
    _write_calibration(d2, "0.40.0", step_overhead_ms=4.0)
    cal = find_calibration("vllm", "0.33.0", GPU, (d1, d2))
    assert cal.step_overhead_ms == 2.0 and cal.engine_version == "0.26.0" and cal.applied_to == "0.33.0"
    assert cal.describe() == f"{d2 / 'calibration' / 'vllm-0.26.0' / GPU}.yaml (measured on vLLM 0.26.0, applied to 0.33.0)"
    assert find_calibration("vllm", "0.25.0", GPU, (d1, d2)).step_overhead_ms == 3.0  # 0.20.1 beats 0.9.0
    exact = _write_calibration(d2, "0.33.0", step_overhead_ms=5.0)
    cal = find_calibration("vllm", "0.33.0", GPU, (d1, d2))
    assert cal.step_overhead_ms == 5.0 and not cal.applied_to and cal.describe() == str(exact)
    assert find_calibration("vllm", "nightly", GPU, (d1, d2)) is None  # no order to fall back along


def test_a_calibration_file_with_a_broken_kernel_table_is_one_sentence(tmp_path):
    """A hand-edited calibration whose fp8_gemm table is out of order, or one with a term of the wrong type, is
    refused with the file and the field named (a ConfigError: the CLI prints it without a traceback)."""
    from serveplan.errors import ConfigError

    # one folder per file: loaded files are cached by path and modification time
    a, b, c, d = (tmp_path / n for n in "abcd")
    f = _write_calibration(a, "0.26.0", fp8_gemm={"tokens": [1, 32, 16], "factor": [1.0, 1.3, 1.0]})
    with pytest.raises(ConfigError, match=r"is not valid: fp8_gemm: .*increasing") as e:
        find_calibration("vllm", "0.26.0", GPU, (a,))
    assert str(f) in str(e.value)
    _write_calibration(b, "0.26.0", fp8_gemm={"tokens": [1, 32], "factor": [1.0]})
    with pytest.raises(ConfigError, match="as many factors as tokens"):
        find_calibration("vllm", "0.26.0", GPU, (b,))
    _write_calibration(c, "0.26.0", step_overhead_ms="fast")
    with pytest.raises(ConfigError, match="step_overhead_ms"):
        find_calibration("vllm", "0.33.0", GPU, (c,))  # the fallback reads it the same way
    _write_calibration(d, "0.26.0", fp8_gemm={"tokens": [1, 16, 17], "factor": [1.0, 1.0, 1.4]})
    assert find_calibration("vllm", "0.26.0", GPU, (d,)).fp8_gemm.at(17) == 1.4


def test_default_vllm_plans_say_the_calibration_is_0_26s(monkeypatch, tmp_path):
    """The default vLLM (0.33.0) on an H100 has no calibration of its own: the shipped 0.26.0 one is applied,
    and the plan's sources and profile say which version it was measured on; 0.26.0 gets it plainly."""
    from serveplan.planner import profiles
    from serveplan.planner.api import plan

    monkeypatch.delenv("SERVEPLAN_PROFILES", raising=False)
    monkeypatch.setattr(profiles, "USER_PROFILES", tmp_path)
    shipped = str(SHIPPED_PROFILES / "calibration" / "vllm-0.26.0" / "h100-sxm.yaml")
    assert DEFAULT_VLLM == "0.33.0"
    req = build_request(model="llama-8b", gpus="1xH100", overrides=["search.n_trials=10"])
    est = estimate(req, Candidate(max_model_len=4096))
    assert est.predictions.sources["overhead"] == "calibrated"
    # ... and how far its terms were from the runs they were not fitted on (benchmarks/accuracy.py --write-held-out)
    held_out = find_calibration("vllm", "0.26.0", "h100-sxm").held_out
    assert held_out.points > 0 and held_out.worst_optimism > 1
    accuracy = f"; {held_out.describe('vllm', '0.26.0')}"
    assert accuracy.startswith(f"; on {held_out.points} held-out vLLM 0.26.0 closed-loop points TTFT was ")
    note = f"{shipped} (measured on vLLM 0.26.0, applied to 0.33.0){accuracy}"
    assert est.predictions.sources["calibration"] == note
    planned = plan(req).profile
    assert planned["calibration"] == note and planned["calibration_held_out"] == held_out.model_dump()
    old = build_request(model="llama-8b", gpus="1xH100", overrides=["engine.version=0.26.0"])
    assert estimate(old, Candidate(max_model_len=4096)).predictions.sources["calibration"] == shipped + accuracy


def test_a_plan_says_when_its_winner_is_no_layout_the_held_out_error_covers():
    """The held-out error a plan quotes was measured on some layouts and precisions (HeldOutAccuracy.layouts); a
    winner of another kind gets one sentence saying so, a covered one (or a calibration without layouts) none."""
    from conftest import make_plan

    from serveplan.planner.profiles import HeldOutAccuracy, layout_name
    from serveplan.planner.report import uncovered_layout

    held = HeldOutAccuracy(points=12, ttft=0.1, tpot=0.03, throughput=0.02, worst_optimism=1.2,
                           layouts=("TP1 bf16", "TP1 fp8"))
    assert layout_name(2, "fp8") == "TP2 fp8" and layout_name(1, "fp8", pp=2) == "TP1 PP2 fp8"
    assert held.covers(1, "fp8") and not held.covers(2, "fp8") and not held.covers(1, "fp8", pp=2)

    def with_held(plan, h):  # noqa: ANN001, ANN202
        return plan.model_copy(update={"profile": {"gpu": "h100-sxm", "calibration_held_out": h}})

    tp2 = make_plan(tp=2, weight_dtype="fp8")
    sentence = uncovered_layout(with_held(tp2, held.model_dump()))
    assert sentence == ("The held-out runs on h100-sxm cover TP1 bf16, TP1 fp8; none ran TP2 fp8, so the error above "
                        "was not measured on the winner's kind of configuration.")
    assert uncovered_layout(with_held(make_plan(tp=1, weight_dtype="fp8"), held.model_dump())) is None
    assert uncovered_layout(with_held(tp2, held.model_copy(update={"layouts": ()}).model_dump())) is None
    assert uncovered_layout(tp2.model_copy(update={"profile": {"gpu": "h100-sxm"}})) is None
