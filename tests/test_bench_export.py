"""`bench --export-locust DIR`: a locustfile and a k6 script that replay bench's own load. The locustfile is
run headless against the fake engine; the k6 script is checked as text (and by `node --check` where node is)."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import start_engine, stop_engine
from serveplan.bench.export import export_files, export_profile, render_k6, render_locustfile, sample_lengths
from serveplan.planner.config import load_traffic
from serveplan.planner.spec import LengthDist, Traffic

REPO = Path(__file__).resolve().parents[1]
# Short requests (the fake engine's max_model_len is 8192, and a few seconds of Locust should finish many).
SMALL = ["input_len.mean=100", "input_len.std=80", "input_len.max=1000", "output_len.kind=fixed",
         "output_len.mean=10", "output_len.min=1", "output_len.max=10"]


def _locust_lengths(text: str) -> list[tuple[int, int]]:
    """LENGTHS of a generated locustfile, read as Python."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "LENGTHS":
            return [tuple(x) for x in ast.literal_eval(node.value)]
    raise AssertionError("no LENGTHS in the locustfile")


def _k6_const(text: str, name: str):  # noqa: ANN202
    m = re.search(rf"^const {name} = (.*?);(?:[ \t]*//[^\n]*)?$", text, re.S | re.M)
    assert m, f"no const {name} in k6.js"
    return json.loads(re.sub(r",\s*]", "]", m.group(1)))  # JS arrays end with a trailing comma


def _clipped_mean(dist: LengthDist) -> float:
    """The mean of the distribution as bench samples it (quantiles, clipped, rounded)."""
    return sum(max(1, round(x)) for x in dist.grid(20000)) / 20000


@pytest.mark.parametrize("traffic", ["chat", "rag", "summarize", "offline-batch"])
def test_embedded_lengths_follow_the_traffic(traffic):
    t = load_traffic(traffic)
    files = export_files(export_profile(t, "http://127.0.0.1:8000"))
    lengths = _locust_lengths(files["locustfile.py"])
    assert lengths == [tuple(p) for p in _k6_const(files["k6.js"], "LENGTHS")]
    assert len(lengths) == 2000
    for k, dist in ((0, t.input_len), (1, t.output_len)):
        xs = [p[k] for p in lengths]
        assert abs(sum(xs) / len(xs) / _clipped_mean(dist) - 1) < 0.05, (traffic, k)
        assert min(xs) >= dist.min and max(xs) <= dist.max


def test_choice_and_fixed_lengths():
    t = Traffic(input_len=LengthDist(kind="choice", values=(100, 1000), weights=(3, 1)),
                output_len=LengthDist(kind="fixed", mean=64), rate_rps=1)
    lengths = sample_lengths(t, seed=3, n=4000)
    assert {o for _, o in lengths} == {64}
    share_1000 = sum(i == 1000 for i, _ in lengths) / len(lengths)
    assert abs(share_1000 - 0.25) < 0.03


@pytest.fixture(scope="module")
def engine():
    proc, url = start_engine(FAKE_ENGINE_TTFT_MS="20", FAKE_ENGINE_ITL_MS="2")
    try:
        yield url
    finally:
        stop_engine(proc)


def test_lengths_are_the_ones_bench_sends(engine):
    """The same seed: the exported files send what `bench --seed 7` sends, in its order."""
    from serveplan.bench.loadgen import run_bench

    t = load_traffic("chat", SMALL)
    res = run_bench([engine], t, concurrency=1, num_requests=6, seed=7, progress=False)
    sent = [(r.input_len, r.output_len) for r in res.requests]
    assert sent == list(export_profile(t, engine, seed=7).lengths[:6])


def test_k6_script_carries_the_load():
    t = load_traffic("chat", [*SMALL, "rate_rps=3.5"])
    p = export_profile(t, "http://10.0.0.5:8000/v1", model="llama", duration_s=90, seed=1)
    js = render_k6(p)
    assert "executor: 'constant-arrival-rate'" in js and "rate: 35000," in js and "timeUnit: '1000s'" in js
    assert "duration: '90s'" in js and f"preAllocatedVUs: {p.users}" in js
    assert _k6_const(js, "RATE_RPS") == 3.5 and _k6_const(js, "THIN") == 10
    assert _k6_const(js, "MODEL") == "llama" and _k6_const(js, "PATH") == "/v1/completions"
    assert '__ENV.BASE_URL || "http://10.0.0.5:8000"' in js
    assert [tuple(x) for x in _k6_const(js, "LENGTHS")] == list(p.lengths)
    assert "timings.waiting" in js and "ttft_ttfb" in js
    closed = render_k6(export_profile(load_traffic("offline-batch"), "http://h:8000", duration_s=30))
    assert "executor: 'constant-vus'" in closed and "vus: 256," in closed and _k6_const(closed, "CONCURRENCY") == 256
    constant = render_k6(export_profile(load_traffic("chat", ["arrival=constant"]), "http://h:8000"))
    assert _k6_const(constant, "THIN") == 1 and "rate: 2000," in constant


@pytest.mark.parametrize("traffic, extra", [("chat", ["prefix_share=0.3"]), ("offline-batch", [])])
def test_files_are_valid_code(tmp_path, traffic, extra):
    files = export_files(export_profile(load_traffic(traffic, extra), "http://127.0.0.1:8000"))
    compile(files["locustfile.py"], "locustfile.py", "exec")
    if extra:
        assert len(_k6_const(files["k6.js"], "PREFIX_WORDS")) > 0
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: k6.js was checked as text only")
    script = tmp_path / "k6.mjs"  # an ES module, as k6 reads it; --check parses without resolving imports
    script.write_text(files["k6.js"])
    p = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_locust_open_loop_schedule_and_users():
    p = export_profile(load_traffic("chat", ["rate_rps=4"]), "http://h:8000")
    text = render_locustfile(p)
    assert "RATE_RPS = 4.0" in text and f"USERS = {p.users}" in text and "ARRIVAL = 'poisson'" in text
    assert p.users >= 4 * 2  # at least rate x 1 s x headroom
    assert p.locust_command("x.py") == (f"locust -f x.py --headless -u {p.users} -r {p.users} -t 60s "
                                        f"--host http://h:8000")
    capped = export_profile(load_traffic("chat", ["rate_rps=4", "concurrency=3"]), "http://h:8000")
    assert capped.users == 3 and capped.mode == "open"
    closed = export_profile(load_traffic("chat"), "http://h:8000", concurrency=5)
    assert closed.mode == "closed" and closed.users == 5 and "MODE = 'closed'" in render_locustfile(closed)


def bench(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serveplan.cli", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, COLUMNS="300",
                                                          PYTHONPATH=str(REPO)))


def test_cli_writes_both_files_and_the_commands(tmp_path):
    out = tmp_path / "lt"
    (out).mkdir()
    (out / "keep.txt").write_text("mine")
    p = bench("--url", "http://127.0.0.1:9", "--traffic", "chat", "rate_rps=5", "--duration", "20",
              "--export-locust", str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["k6.js", "keep.txt", "locustfile.py"]
    assert f"locust -f {out / 'locustfile.py'} --headless -u " in p.stdout
    assert "-t 20s --host http://127.0.0.1:9" in p.stdout
    assert f"k6 run {out / 'k6.js'}" in p.stdout
    assert "RATE_RPS = 5.0" in (out / "locustfile.py").read_text()


@pytest.mark.parametrize("args, needle", [
    (["--url", "http://a:1", "--url", "http://b:1"], "takes one --url"),
    (["--url", "http://a:1", "--sweep-rates", "1,2"], "takes no --sweep-rates"),
    (["--url", "http://a:1", "--num-requests", "10"], "takes no --num-requests"),
    (["--url", "a:1"], "write the scheme too"),
    (["--url", "http://a:1", "--traffic", "chatt"], "Did you mean chat"),
])
def test_cli_bad_input_is_one_sentence(tmp_path, args, needle):
    p = bench(*args, "--export-locust", str(tmp_path / "x"))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert not (tmp_path / "x").exists()


def test_cli_export_into_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    p = bench("--url", "http://a:1", "--export-locust", str(f))
    assert p.returncode == 2 and "is a file; give a folder" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                    reason="locust is not installed (pip install -e '.[test]' installs it)")
@pytest.mark.slow
def test_locustfile_runs_headless_against_the_fake_engine(engine, tmp_path):
    t = load_traffic("chat", [*SMALL, "rate_rps=10"])
    (tmp_path / "locustfile.py").write_text(render_locustfile(export_profile(t, engine, duration_s=4)))
    # cwd = tmp_path: no locust.conf of the repository or the user's is read.
    p = subprocess.run([sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless", "-u", "8", "-r", "8",
                        "-t", "4s", "--host", engine, "--only-summary", "--csv", "run", "--loglevel", "WARNING"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader((tmp_path / "run_stats.csv").open())}
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    req = rows[("POST", "/v1/completions")]
    assert int(req["Request Count"]) >= 1 and int(req["Failure Count"]) == 0
    ttft = rows[("SSE", "ttft")]
    assert int(ttft["Request Count"]) >= 1 and float(ttft["Average Response Time"]) > 0
    assert int(rows[("SSE", "tpot")]["Request Count"]) >= 1
