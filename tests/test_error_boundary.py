"""Every user mistake is one sentence: exit 2 (4 for launch and endpoint failures), no traceback. Each case
is a bad input a new user made (issue 13's list); each must name what was wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import start_engine, stop_engine

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "serveplan.cli"]
SMALL = ["--gpus", "1xL4", "--no-write", "search.n_trials=10"]


def _files(d: Path) -> dict[str, str | bytes]:
    (d / "empty").mkdir()
    (d / "empty" / "plan.yaml").write_text("")
    (d / "partial").mkdir()
    (d / "partial" / "plan.yaml").write_text("request: {}\n")
    (d / "nonmap").mkdir()
    (d / "nonmap" / "plan.yaml").write_text("[1, 2]\n")
    (d / "corrupt").mkdir()
    (d / "corrupt" / "plan.yaml").write_text("request: {model: [\n")
    (d / "list.json").write_text("[1, 2]")
    (d / "zero.json").write_text('{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 0, "vocab_size": 9}')
    (d / "div.json").write_text('{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 6, '
                                '"num_key_value_heads": 4, "vocab_size": 9}')
    (d / "bad.yaml").write_text("input_len: {mean: [\n")
    (d / "bin.yaml").write_bytes(bytes(range(256)))
    (d / "bench.json").write_text("{")
    (d / "empty.json").write_text("")
    return {}


CASES = [
    # (argv, exit code, words the sentence must contain)
    (["plan", "--model", "list.json", *SMALL], 2, ["list.json", "mapping"]),
    (["plan", "--model", "zero.json", *SMALL], 2, ["zero.json", "num_attention_heads"]),
    (["plan", "--model", "div.json", *SMALL], 2, ["div.json", "multiple of num_kv_heads"]),
    (["plan", "--model", "llama-8b", "--traffic", "bad.yaml", *SMALL], 2, ["bad.yaml", "YAML"]),
    (["plan", "--model", "llama-8b", "--traffic", "bin.yaml", *SMALL], 2, ["bin.yaml", "binary"]),
    (["plan", "--model", "llama-8b", *SMALL, "search.storage=sqlite:////no/such/dir/x.db"], 2, ["search.storage"]),
    (["plan", "--model", "llama-8b", *SMALL, "search.storage=postgresql://u@h/db"], 2, ["driver"]),
    (["plan", "--model", "llama-8b", *SMALL, "search.max_model_len=10"], 2, ["max_model_len"]),
    (["plan", "--model", "llama-8b", *SMALL, "search.max_num_seqs=[0]"], 2, ["max_num_seqs"]),
    (["plan", "--model", "llama-8b", *SMALL, "traffic.rate_rps=inf"], 2, ["rate_rps", "finite"]),
    (["plan", "--model", "llama-8b", "--gpus", "2xL4", "--no-write", "search.tp=[3]"], 2, ["search.tp=[3]", "valid TP"]),
    (["plan", "--model", "", *SMALL], 2, ["--model is empty"]),
    (["plan", "--model", "llama-8b", "--gpus", "1xH100", "engine.version=9.9.9", "--no-write"], 2,
     ["vllm 9.9.9", "0.26.0 or 0.33.0"]),
    (["plan", "--model", "llama-8b", *SMALL, "traffic.input_len.mean=1e12"], 2, ["mean", "min..max"]),
    (["plan", "--model", "llama-2-13b", *SMALL, "traffic.input_len.mean=6000", "traffic.input_len.max=8000"], 2,
     ["average", "context"]),
    (["plan", "estimate", "--model", "llama-8b", "--gpus", "1xH100", "--input-len", "100000", "--output-len", "10",
      "--max-model-len", "8192"], 2, ["max_model_len"]),
    (["plan", "estimate", "--model", "llama-8b", "--gpus", "1xH100", "--concurrency", "0"], 2, ["--concurrency"]),
    (["plan", "estimate", "--model", "llama-8b", "--gpus", "1xH100", "--max-num-seqs", "512",
      "--max-num-batched-tokens", "64"], 2, ["would refuse", "below max_num_seqs"]),
    (["plan", "launch", "missing"], 2, ["missing", "does not exist"]),
    (["plan", "launch", "empty", "--dry-run"], 2, ["empty"]),
    (["plan", "launch", "partial", "--dry-run"], 2, ["not a plan"]),
    (["plan", "launch", "nonmap", "--dry-run"], 2, ["mapping"]),
    (["plan", "launch", "corrupt", "--dry-run"], 2, ["YAML"]),
    (["plan", "launch", "empty", "--port", "70000", "--dry-run"], 2, ["port"]),
    (["plan", "stop", "empty"], 4, ["run.json"]),
    (["plan", "calibrate", "missing", "--bench", "bench.json"], 2, ["missing"]),
    (["bench", "--url", "localhost:1", "--traffic", "chat", "--num-requests", "2"], 2, ["http://"]),
    (["bench", "--url", "http://127.0.0.1:1", "--traffic", "chat", "--num-requests", "2"], 4, ["Cannot reach"]),
    (["bench", "--url", "http://127.0.0.1:1", "--traffic", "chat", "--num-requests", "0"], 2, ["--num-requests"]),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _files(d)
    return d


@pytest.mark.parametrize("argv,code,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_user_mistake_is_one_sentence(workdir, argv, code, words):
    env = {k: v for k, v in os.environ.items() if k != "SERVEPLAN_DEBUG"}
    p = subprocess.run([*CLI, *argv], cwd=workdir, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, p.stderr
    for w in words:
        assert w in err[0], err[0]


def test_calibrate_with_corrupt_or_empty_bench_json(workdir):
    plan = subprocess.run([*CLI, "--model", "llama-8b", "--gpus", "1xH100", "-o", "p", "search.n_trials=10"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert plan.returncode in (0, 1), plan.stderr
    for f, word in (("bench.json", "not valid JSON"), ("empty.json", "is empty")):
        p = subprocess.run([*CLI, "plan", "calibrate", "p", "--bench", f], cwd=workdir, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_bench_fails_loudly_when_no_request_succeeds(tmp_path):
    proc, url = start_engine(FAKE_ENGINE_LIFETIME_S="60", FAKE_ENGINE_MODE="fail_requests")
    try:
        p = subprocess.run([*CLI, "bench", "--url", url, "--traffic", "chat", "--num-requests", "4",
                            "--concurrency", "2", "--no-progress", "traffic.input_len.max=64",
                            "traffic.input_len.mean=32", "traffic.input_len.min=1", "traffic.output_len.max=8",
                            "traffic.output_len.mean=4", "traffic.output_len.min=1"],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
        assert p.returncode == 4, p.stdout + p.stderr
        assert "no request succeeded" in p.stderr
    finally:
        stop_engine(proc)
