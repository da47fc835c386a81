"""`bench` on the command line (python -m serveplan.cli bench ...) against the fake engine over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import start_engine, stop_engine

TTFT_MS, ITL_MS = 60.0, 4.0
REPO = Path(__file__).resolve().parents[1]
# Short outputs keep each request near TTFT + 10 x ITL.
SHORT = ["output_len.kind=fixed", "output_len.mean=10", "traffic.output_len.max=10"]


@pytest.fixture(scope="module")
def engine():
    proc, url = start_engine(FAKE_ENGINE_TTFT_MS=str(TTFT_MS), FAKE_ENGINE_ITL_MS=str(ITL_MS))
    try:
        yield url
    finally:
        stop_engine(proc)


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serveplan.cli", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS="200"))


def test_two_replicas_json_table_and_report(engine, tmp_path):
    out, report = tmp_path / "bench.json", tmp_path / "report.html"
    p = bench("--url", engine, "--url", engine + "/v1", "--traffic", "chat", *SHORT, "--rate", "20",
              "--num-requests", "12", "--slo", "interactive", "--no-progress", "-o", str(out), "--report", str(report))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    s = doc["summary"]
    assert s["completed"] == 12 and s["failed"] == 0
    assert TTFT_MS <= s["ttft_ms"]["p50"] < TTFT_MS * 1.5 + 20
    assert ITL_MS <= s["tpot_ms"]["p50"] < ITL_MS * 2 + 5
    assert doc["args"]["mode"] == "open" and doc["args"]["rate_rps"] == 20
    assert doc["traffic"]["name"] == "chat" and doc["traffic"]["output_len"]["mean"] == 10
    assert set(doc["slo"]) >= {"ttft_p99_ms"} and s["slo_met"]
    assert len(doc["per_url"]) == 2 and sum(x["completed"] for x in doc["per_url"].values()) == 12
    for word in ("TTFT", "TPOT", "E2E", "per url", "requests/s", "served while loaded", f"wrote {out}",
                 f"wrote {report}"):
        assert word in p.stdout
    assert s["served_rps"] > 0 and s["served_output_tok_s"] > 0  # an open loop: what was served while loaded
    assert report.read_text().startswith("<!doctype html>") and "served while loaded" in report.read_text()
    assert "Traceback" not in p.stderr


def test_sweep(engine, tmp_path):
    out = tmp_path / "sweep.json"
    p = bench("--url", engine, "--traffic", "chat", *SHORT, "--sweep-concurrency", "1,3", "--num-requests", "6",
              "--no-progress", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["sweep"] == "concurrency"
    assert [x["args"]["concurrency"] for x in doc["points"]] == [1, 3]
    assert all(x["summary"]["completed"] == 6 for x in doc["points"])
    assert "sweep" in p.stdout and "concurrency 1" in p.stdout and "concurrency 3" in p.stdout


@pytest.mark.parametrize("args, needle", [
    (["--url", "http://127.0.0.1:1", "--sweep-rates", "1,x"], "--sweep-rates takes comma-separated numbers"),
    (["--url", "http://127.0.0.1:1", "--rate", "fast"], "is not a number"),
    (["--traffic", "chat"], "bench needs --url"),
    (["--url", "http://127.0.0.1:1", "--traffic", "chatt"], "Did you mean chat"),
])
def test_bad_arguments(args, needle):
    p = bench(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_vllm_json(tmp_path):
    src = tmp_path / "vllm.json"
    src.write_text(json.dumps({
        "date": "20250101-000000", "backend": "vllm", "model_id": "m", "num_prompts": 10, "request_rate": "inf",
        "max_concurrency": 4, "duration": 5.0, "completed": 10, "failed": 0, "total_input_tokens": 5000,
        "total_output_tokens": 1000, "request_throughput": 2.0, "output_throughput": 200.0,
        "total_token_throughput": 1200.0, "mean_ttft_ms": 50.0, "median_ttft_ms": 45.0, "p99_ttft_ms": 120.0,
        "mean_tpot_ms": 9.0, "median_tpot_ms": 8.5, "p99_tpot_ms": 15.0, "mean_itl_ms": 9.0, "median_itl_ms": 8.0,
        "p99_itl_ms": 20.0, "mean_e2el_ms": 900.0, "median_e2el_ms": 880.0, "p99_e2el_ms": 1500.0}))
    out = tmp_path / "summary.json"
    p = bench("--vllm-json", str(src), "--slo", "interactive", "-o", str(out))
    assert p.returncode == 0, p.stderr
    s = json.loads(out.read_text())
    assert s["source"] == "vllm-bench" and s["completed"] == 10
    assert s["ttft_ms"]["p50"] == 45.0 and s["tpot_ms"]["p99"] == 15.0 and s["output_tok_s"] == 200.0
    assert s["slo_met"] == {"ttft_p99_ms": True, "tpot_p99_ms": True}
    assert "vllm bench serve result" in p.stdout and "TTFT" in p.stdout and "ttft_p99_ms ok" in p.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{\"hello\": 1}")
    p = bench("--vllm-json", str(bad))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_report_without_matplotlib_says_so(engine, tmp_path, monkeypatch, capsys):
    from serveplan.cli import bench as bench_cli
    from serveplan.bench.report import NO_MATPLOTLIB

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = tmp_path / "r.html"
    rc = bench_cli.main(["--url", engine, "--traffic", "chat", *SHORT, "--concurrency", "2", "--num-requests", "4",
                         "--no-progress", "--report", str(report)])
    assert rc == 0
    out = " ".join(capsys.readouterr().out.split())
    assert NO_MATPLOTLIB in out
    assert "tables only" in report.read_text()


def _completed(url: str) -> float:
    """Requests the fake engine has finished (its vllm:request_success_total)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("vllm:request_success_total"))


def test_interrupt_writes_json_and_exits_130(engine, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-m", "serveplan.cli", "bench", "--url", engine, "--traffic", "chat",
                             *SHORT, "--rate", "5", "--duration", "30", "--no-progress", "-o", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done_before = _completed(engine)
    try:
        # Interrupt once the engine has finished a request of this run (an event, not a fixed sleep: on a busy
        # machine the first request can take longer than any fixed delay).
        deadline = time.monotonic() + 30
        while _completed(engine) <= done_before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["summary"]["completed"] >= 1
    assert "INTERRUPTED" in stdout and "Traceback" not in stderr


def test_bench_sends_the_api_key_a_keyed_endpoint_wants():
    """An endpoint started with vLLM's --api-key refuses /v1 without `Authorization: Bearer KEY`: bench says so in
    one sentence, and with OPENAI_API_KEY set it sends the key and every request succeeds. The key is not
    written into the result file."""
    proc, url = start_engine("--api-key", "s3cret", FAKE_ENGINE_TTFT_MS="5", FAKE_ENGINE_ITL_MS="1")
    try:
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
        assert httpx.get(url + "/health", timeout=5).status_code == 200  # as in vLLM: only /v1 is guarded
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        r = subprocess.run([sys.executable, "-m", "serveplan.cli", "bench", "--url", url, "--num-requests", "4",
                            "--no-progress", *SHORT], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode != 0 and "401" in r.stderr and "OPENAI_API_KEY" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        out = Path(REPO / ".pytest-bench-key.json")
        try:
            r = subprocess.run([sys.executable, "-m", "serveplan.cli", "bench", "--url", url, "--num-requests", "4",
                                "--no-progress", "-o", str(out), *SHORT], cwd=REPO, capture_output=True, text=True,
                               timeout=60, env={**env, "OPENAI_API_KEY": "s3cret"})
            assert r.returncode == 0, r.stderr
            doc = json.loads(out.read_text())
            assert doc["summary"]["completed"] == 4 and doc["summary"]["failed"] == 0
            assert "s3cret" not in out.read_text()
        finally:
            out.unlink(missing_ok=True)
    finally:
        stop_engine(proc)


def test_one_prompt_length_has_no_by_length_classes(engine, tmp_path):
    """Terciles of one length put every request in 'short': with a single prompt length there is no table."""
    out = tmp_path / "b.json"
    p = bench("--url", engine, "--num-requests", "6", "--no-progress", "-o", str(out), *SHORT,
              "input_len.kind=fixed", "input_len.mean=100", "traffic.input_len.max=100")
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["classes"] == [] and doc["tercile_bounds"] is None
    assert "by prompt length" not in p.stdout
