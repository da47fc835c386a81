"""The command line through its real entry points, in subprocesses: exit codes, output, written files.

All commands of this module start at once (one module fixture) and are awaited together, so the whole
file costs about as long as its slowest command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serveplan.planner.result import load_plan

PLAN_SCRIPT = shutil.which("plan") or ("/tmp/venv/bin/plan" if Path("/tmp/venv/bin/plan").exists() else None)
SMALL = ["search.n_trials=10"]

COMMANDS: dict[str, list[str]] = {
    "card": ["--model", "llama-70b", "--gpus", "2xA100", "-o", "{tmp}/card-out"],
    "json": ["--model", "llama-8b", "--gpus", "1xL4", "--json", "-o", "{tmp}/json-out", *SMALL],
    "estimate": ["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--input-len", "1000",
                 "--output-len", "200", "--concurrency", "16"],
    "estimate_json": ["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--input-len", "1000",
                      "--output-len", "200", "--rate", "2", "--json"],
    "bad_model": ["--model", "lama-70b", "--gpus", "2xA100", "--no-write"],
    "bad_gpu": ["--model", "llama-8b", "--gpus", "2xZ100", "--no-write"],
    "bad_gpus_syntax": ["--model", "llama-8b", "--gpus", "2 x", "--no-write"],
    "bad_override": ["--model", "llama-8b", "--gpus", "1xL4", "slo.ttft_p99=5", "--no-write"],
    "bad_value": ["--model", "llama-8b", "--gpus", "1xL4", "search.n_trials=0", "--no-write"],
    "nothing_fits": ["--model", "llama-405b", "--gpus", "1xL4", "--no-write", *SMALL],
    "estimate_bad_gpu": ["estimate", "--model", "llama-8b", "--gpus", "1xQ9000"],
    "slo_missed": ["--model", "llama-8b", "--gpus", "1xL4", "slo.ttft_p99_ms=1", "--no-write", *SMALL],
    "write_under_file": ["--model", "llama-8b", "--gpus", "1xL4", "-o", "{tmp}/wf/afile/sub/out", *SMALL],
    "write_onto_file": ["--model", "llama-8b", "--gpus", "1xL4", "-o", "{tmp}/wf2/afile", *SMALL],
}
USER_ERRORS = ["bad_model", "bad_gpu", "bad_gpus_syntax", "bad_override", "bad_value", "nothing_fits",
               "estimate_bad_gpu"]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    for sub in ("wf", "wf2"):
        (d / sub).mkdir()
        (d / sub / "afile").write_text("not a folder\n")
    return d


@pytest.fixture(scope="module")
def runs(tmp) -> dict[str, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k not in ("SERVEPLAN_DEBUG", "SERVEPLAN_PROFILES")}
    procs = {}
    for name, args in COMMANDS.items():
        argv = [sys.executable, "-m", "serveplan.cli", *(a.replace("{tmp}", str(tmp)) for a in args)]
        procs[name] = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    # The overrides run goes through the installed console script where there is one.
    entry = [PLAN_SCRIPT] if PLAN_SCRIPT else [sys.executable, "-m", "serveplan.cli"]
    argv = [*entry, "--model", "llama-8b", "--gpus", "1xL40S", "traffic=rag", "slo.tpot_p99_ms=77", "--no-write",
            *SMALL]
    procs["overrides"] = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


# ------------------------------------------------------------------------------------------- plan
def test_card_command(runs, tmp):
    r = runs["card"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "llama-3.1-70b" in r.stdout and "A100" in r.stdout
    assert "Why:" in r.stdout
    plan = load_plan(tmp / "card-out" / "plan.yaml")
    assert plan.request.model.name == "llama-3.1-70b"
    assert plan.request.inventory.total_gpus == 2 and plan.request.inventory.gpu.name == "a100-80gb-sxm"
    assert plan.ranked and plan.winner.config.total_gpus <= 2
    # The table's first row is the winner that plan.yaml records.
    assert plan.winner.config.label() in r.stdout
    assert plan.why.split(":")[0] in r.stdout.replace("\n", " ")
    # No temporary folders are left beside the output.
    assert not [p for p in tmp.iterdir() if p.name.startswith(".card-out")]


def test_overrides_change_the_output(runs):
    r = runs["overrides"]
    assert r.returncode in (0, 1), r.stderr
    header = r.stdout.splitlines()[0]
    assert "TPOT P99 <= 77 ms" in header and "TPOT P99 <= 100 ms" not in header  # default SLO: 100 ms
    assert "traffic rag" in header and "4,000" in header  # rag's mean prompt
    assert "L40S" in header and "llama-3.1-8b" in header
    assert "Why:" in r.stdout


def test_json_document(runs, tmp):
    r = runs["json"]
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"] == "llama-3.1-8b" and doc["traffic"] == "chat"
    assert doc["candidates"]
    required = {"engine", "tp", "pp", "replicas", "weight_dtype", "kv_cache_dtype", "max_num_seqs",
                "max_num_batched_tokens", "chunked_prefill"}
    for c in doc["candidates"]:
        assert required <= set(c["config"])
        assert c["config"]["engine"] == "vllm" and c["config"]["tp"] * c["config"]["pp"] * c["config"]["replicas"] == 1
        p = c["predictions"]
        for k in ("ttft_ms", "tpot_ms"):
            assert set(p[k]) >= {"p50", "p90", "p99", "mean"}
            assert p[k]["p50"] <= p[k]["p90"] <= p[k]["p99"]
        for k in ("throughput_tok_s", "requests_per_s", "cost_per_1m_tokens"):
            assert isinstance(p[k], (int, float)) and p[k] > 0
        assert set(c["memory_gb"]) >= {"weights", "kv_cache", "other"}
        assert 0 < c["memory_gb"]["weights"] < 26  # one 24 GB L4
    # It wrote the folder too, and said so.
    assert any(w.endswith("plan.yaml") for w in doc["written"])
    assert load_plan(tmp / "json-out").winner.config.weight_dtype == doc["candidates"][0]["config"]["weight_dtype"]


def test_console_script_was_used(runs):
    if not PLAN_SCRIPT:
        pytest.skip("the `plan` console script is not installed")
    assert runs["overrides"].args[0] == PLAN_SCRIPT


# ------------------------------------------------------------------------------------------- estimate
def test_estimate_prints_predictions(runs):
    r = runs["estimate"]
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in ("TTFT", "TPOT", "E2E", "P50", "P99", "Throughput", "Memory per GPU", "Sources"):
        assert word in out
    assert "16.1 GB" in out  # llama-3.1-8b bf16 weights


def test_estimate_says_when_no_held_out_run_had_its_layout(runs, capsys):
    """The H100 calibration's held-out runs are TP1 bf16 and fp8: a TP2 estimate there says its error was not
    measured on that kind of configuration; the TP1 bf16 one of `runs` does not."""
    from serveplan.cli import main

    assert "none ran" not in runs["estimate"].stdout
    assert main(["estimate", "--model", "llama-70b", "--gpus", "2xH100", "--tp", "2", "--weights", "fp8"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "none ran TP2 fp8, so the error above was not measured on this kind of configuration" in out
    assert "held-out vLLM 0.26.0 closed-loop points" in out  # the error it speaks of, on the Sources line


def test_estimate_takes_the_cudagraph_capture_size(capsys):
    from serveplan.cli import main

    def config(*extra):
        assert main(["estimate", "--model", "llama-8b", "--gpus", "1xH100", "--rate", "4", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    big = config("--max-cudagraph-capture-size", "2048")
    assert big["config"]["max_cudagraph_capture_size"] == 2048
    assert config()["config"]["max_cudagraph_capture_size"] is None


def test_estimate_json(runs):
    r = runs["estimate_json"]
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["config"]["tp"] == 1 and doc["config"]["weight_dtype"] == "bf16"
    p = doc["predictions"]
    assert p["requests_per_s"] == pytest.approx(2.0, rel=0.05)
    assert p["throughput_tok_s"] == pytest.approx(400, rel=0.05)  # 2 req/s x 200 output tokens
    assert p["sources"]["serving"] == "simulated"


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", USER_ERRORS)
def test_user_errors_exit_2_with_one_line(runs, name):
    r = runs[name]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    assert r.stdout == ""


def test_error_messages_name_the_problem(runs):
    assert "lama-70b" in runs["bad_model"].stderr and "llama-3.1-70b" in runs["bad_model"].stderr
    assert "Z100" in runs["bad_gpu"].stderr and "h100-sxm" in runs["bad_gpu"].stderr
    assert "2x8xH100" in runs["bad_gpus_syntax"].stderr
    assert "ttft_p99_ms" in runs["bad_override"].stderr
    assert "n_trials" in runs["bad_value"].stderr
    assert "GB" in runs["nothing_fits"].stderr and "fit" in runs["nothing_fits"].stderr


def test_slo_not_met_exits_1(runs):
    r = runs["slo_missed"]
    assert r.returncode == 1, r.stderr
    assert "No candidate meets the SLO" in r.stdout
    assert "Traceback" not in r.stderr


def test_failed_write_leaves_nothing(runs, tmp):
    for name, folder in (("write_under_file", "wf"), ("write_onto_file", "wf2")):
        r = runs[name]
        assert r.returncode != 0, name
        # The regular file is untouched and nothing else appeared beside it.
        assert sorted(p.name for p in (tmp / folder).iterdir()) == ["afile"], name
        assert (tmp / folder / "afile").read_text() == "not a folder\n"


def test_failed_write_is_a_user_error(runs):
    for name in ("write_under_file", "write_onto_file"):
        r = runs[name]
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_catalog_listings_and_bare_plan(capsys):
    """`plan models|gpus|traffic` list the catalog (JSON too); `plan` alone prints help instead of planning."""
    import json as _json

    from serveplan.cli import main as cli_main
    from serveplan.planner.catalog import options

    for what, group, key in (("models", "model", "model"), ("gpus", "hardware", "gpu"), ("traffic", "traffic", "traffic")):
        assert cli_main(["plan", what, "--json"]) == 0
        rows = _json.loads(capsys.readouterr().out)
        assert [r[key] for r in rows] == options(group)
    assert cli_main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "models" in out and "Wrote" not in out
