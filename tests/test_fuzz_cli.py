"""Property test of the error boundary: random overrides and random files fed to `plan`, `plan estimate`,
`plan launch --dry-run` and `plan calibrate` never end in a traceback; the exit code is one of 0 (planned),
1 (no candidate meets the SLO), 2 (one sentence on a user mistake) or 4 (launch precondition)."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serveplan.cli import main

pytestmark = pytest.mark.slow

KEYS = ["search.tp", "search.pp", "search.max_num_seqs", "search.max_num_batched_tokens", "search.max_model_len",
        "search.allowed_quant", "search.n_trials", "search.objective", "search.sampler", "traffic.rate_rps",
        "traffic.concurrency", "traffic.arrival", "traffic.input_len.mean", "traffic.input_len.max",
        "traffic.output_len.std", "slo.ttft_p99_ms", "slo.tpot_p90_ms", "engine.gpu_memory_utilization",
        "hardware.nodes", "hardware.gpus_per_node", "model.num_layers", "model.num_kv_heads", "traffic", "slo",
        "search.nope", "nogroup.x"]
VALUES = st.one_of(
    st.integers(-5, 10**7).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["[]", "[0]", "[1,2]", "[3]", "[bf16,fp8]", "[awq]", "null", "inf", "-1", "''", "chat",
                     "cost", "tpe", "grid", "x]", "{a: 1}", "true"]),
    st.text(alphabet="abc019.,[]{}:-_ ", max_size=8),
)
OVERRIDE = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUES)
DOCS = st.one_of(
    st.binary(max_size=64),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                 max_leaves=6).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"", b"request: {}\n", b"winner: 1\nranked: []\n", b"{", b"summary: {completed: 0}\n",
                     b'{"completed": 3, "max_concurrency": 2}']),
)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SERVEPLAN_DEBUG", raising=False)


@SETTINGS
@given(ovs=st.lists(OVERRIDE, max_size=3))
def test_plan_with_random_overrides(ovs, capsys):
    rc, err = _run(["--model", "llama-8b", "--gpus", "1xL4", "--no-write", "search.n_trials=5", *ovs], capsys)
    assert rc in (0, 1, 2) and "Traceback" not in err, (ovs, err)
    assert len(err.strip().splitlines()) <= 3, err


@SETTINGS
@given(ovs=st.lists(OVERRIDE, max_size=2), seqs=st.integers(-3, 5000), tokens=st.integers(-3, 5000))
def test_estimate_with_random_knobs(ovs, seqs, tokens, capsys):
    rc, err = _run(["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--max-num-seqs", str(seqs),
                    "--max-num-batched-tokens", str(tokens), *ovs], capsys)
    assert rc in (0, 1, 2) and "Traceback" not in err, (ovs, err)


@SETTINGS
@given(plan=DOCS, run=DOCS)
def test_launch_dry_run_with_random_files(plan, run, tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("p")
    (d / "plan.yaml").write_bytes(plan)
    (d / "run.json").write_bytes(run)
    rc, err = _run(["plan", "launch", str(d), "--dry-run"], capsys)
    assert rc in (0, 2, 4) and "Traceback" not in err, (plan, err)
    rc, err = _run(["plan", "stop", str(d)], capsys)
    assert rc in (0, 2, 4) and "Traceback" not in err, (run, err)


@pytest.fixture(scope="module")
def a_plan(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan") / "p"
    assert main(["--model", "llama-8b", "--gpus", "1xH100", "-o", str(d), "search.n_trials=5"]) in (0, 1)
    return d


@SETTINGS
@given(bench=DOCS)
def test_calibrate_with_random_bench_files(bench, a_plan, tmp_path_factory, capsys):
    f = tmp_path_factory.mktemp("b") / "bench.json"
    f.write_bytes(bench)
    out = tmp_path_factory.mktemp("cal")
    rc, err = _run(["plan", "calibrate", str(a_plan), "--bench", str(f), "--out", str(out), "--trials", "5"], capsys)
    assert rc in (0, 2) and "Traceback" not in err, (bench, err)
