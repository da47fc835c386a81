"""`plan compare` and its dashboard: deltas of B against A, memory by precision, one sentence for a configuration
that does not fit, --json, the HTML (parsed, and rendered in headless Chromium where one is installed)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from serveplan.cli import plan_main
from serveplan.errors import ConfigError
from serveplan.planner.capacity import capacity_at_slo
from serveplan.planner.compare import METRICS, Labelled, compare_doc, delta, deltas, figures
from serveplan.planner.config import build_request
from serveplan.planner.estimate import Scorer
from serveplan.planner.spec import Candidate

BASE = ["compare", "--model", "llama-8b", "--gpus", "1xH100", "--rate", "4"]
A, B = "weights=bf16 kv-cache-dtype=auto", "weights=fp8 kv-cache-dtype=fp8"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = plan_main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def pair():
    """(request, [A, B]) as `plan compare` builds them for BASE with A and B."""
    req = build_request(model="llama-8b", gpus="1xH100",
                        overrides=["traffic.arrival=poisson", "traffic.rate_rps=4.0", "traffic.concurrency=null"])
    scorer = Scorer(req)
    items = []
    for label, spec, knobs in (("A", A, {"weight_dtype": "bf16"}),
                               ("B", B, {"weight_dtype": "fp8", "kv_cache_dtype": "fp8"})):
        cand = Candidate(engine=req.engine.name, max_model_len=req.max_model_len,
                         gpu_memory_utilization=req.engine.gpu_memory_utilization, **knobs)
        items.append(Labelled(label, capacity_at_slo(scorer, scorer.score(cand, simulated=True)), spec))
    return req, items


def test_delta_is_b_minus_a_over_a():
    assert delta(2.0, 3.0) == {"delta": 1.0, "pct": 50.0}
    assert delta(4.0, 3.0) == {"delta": -1.0, "pct": -25.0}
    assert delta(0.0, 3.0) == {"delta": 3.0, "pct": None}
    assert delta(None, 3.0) == {"delta": None, "pct": None}


def test_deltas_of_b_against_a(pair):
    _, (a, b) = pair
    fa, fb, d = figures(a.estimate), figures(b.estimate), deltas(a.estimate, b.estimate)
    assert set(d) == {k for k, *_ in METRICS}
    for k in d:
        if fa[k] is None or fb[k] is None:
            assert d[k]["delta"] is None
            continue
        assert d[k]["delta"] == pytest.approx(fb[k] - fa[k])
        if fa[k]:
            assert d[k]["pct"] == pytest.approx((fb[k] - fa[k]) / abs(fa[k]) * 100)
    # fp8 weights and KV cache: half the weight bytes, more KV tokens; capacity at the SLO computed for both
    assert d["weights_gb"]["delta"] < 0 and d["kv_tokens"]["delta"] > 0
    assert fa["capacity_rps"] and fb["capacity_rps"]
    assert fb["quality_cost_pct"] > fa["quality_cost_pct"] == 0


def test_fp8_weights_are_smaller_than_bf16_through_the_cli(capsys):
    rc, out, err = _run([*BASE, "--a", "weights=bf16", "--b", "weights=fp8", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    a, b = doc["configs"]
    assert (a["label"], b["label"]) == ("A", "B")
    assert b["figures"]["weights_gb"] < a["figures"]["weights_gb"] * 0.6
    assert doc["deltas_against"] == "A" and doc["deltas"]["B"]["weights_gb"]["pct"] < -40


def test_json_round_trips(pair, capsys):
    req, items = pair
    rc, out, err = _run([*BASE, "--a", A, "--b", B, "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc == json.loads(json.dumps(compare_doc(req, items)))
    assert json.loads(json.dumps(doc)) == doc
    for key in ("ttft_p99_ms", "tpot_p50_ms", "e2e_p99_ms", "goodput_rps", "capacity_tok_s_per_gpu",
                "cost_per_1m_tokens", "cost_per_1m_tokens_at_capacity", "kv_tokens", "quality_cost_pct"):
        assert key in doc["configs"][0]["figures"] and key in doc["deltas"]["B"]


def test_table_shows_both_and_the_deltas(capsys):
    rc, out, err = _run([*BASE, "--a", A, "--b", B], capsys)
    assert rc == 0, err
    for word in ("B vs A", "capacity at SLO", "$/1M output tokens at capacity", "TTFT P99", "KV tokens",
                 "stated quality cost"):
        assert word in out, word


def test_a_config_that_does_not_fit_is_one_sentence_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SERVEPLAN_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "serveplan.cli", "compare", "--model", "llama-70b", "--gpus",
                        "2xH100", "--a", "weights=fp8 tp=2", "--b", "weights=bf16 tp=1"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: Configuration B") and "does not fit" in line
    assert "bf16" in line and "GB" in line


@pytest.mark.parametrize("a, b, words", [
    ("wieghts=fp8", "weights=fp8", ("Configuration A", "'wieghts=fp8' is not a setting")),
    ("weights=fp8", "weights=fp9", ("Configuration B", "invalid choice: 'fp9'")),
    ("weights=fp8 tp=4", "weights=fp8", ("Configuration A", "needs 4 GPUs")),
])
def test_bad_configs_are_one_sentence(a, b, words, capsys):
    rc, out, err = _run([*BASE, "--a", a, "--b", b], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and all(w in err for w in words), err


def test_measured_without_html_or_with_an_unknown_label(capsys):
    rc, _, err = _run([*BASE, "--a", A, "--b", B, "--measured", "A=x.json"], capsys)
    assert rc == 2 and "--html" in err
    rc, _, err = _run([*BASE, "--a", A, "--b", B, "--measured", "C=x.json", "--html", "x.html"], capsys)
    assert rc == 2 and "'C'" in err


# ------------------------------------------------------------------------------------------- dashboard
def _verify_json(path: Path, req, est, scale: float) -> Path:
    """A verify.json (the document serveplan.bench.verify writes) whose measured percentiles are the
    prediction's times `scale`."""
    from serveplan.bench.results import BenchSummary, LatencyStats
    from serveplan.bench.verify import Load, VerifyResult

    p = est.predictions
    st = lambda x: LatencyStats(count=100, p50=x.p50 * scale, p90=x.p90 * scale, p99=x.p99 * scale,  # noqa: E731
                                mean=x.mean * scale)
    s = BenchSummary(completed=100, duration_s=25.0, ttft_ms=st(p.ttft_ms), tpot_ms=st(p.tpot_ms),
                     e2e_ms=st(p.e2e_ms), requests_per_s=p.requests_per_s, output_tok_s=p.throughput_tok_s * 0.9,
                     offered_rps=req.traffic.rate_rps)
    v = VerifyResult(created_at="2026-01-01T00:00:00Z", plan_dir=".", plan_file="plan.yaml", engine="vllm",
                     engine_version="0.26.0", gpu="h100-sxm", gpu_display="H100", model=req.model.name,
                     candidate=est.config.label(), config=est.config.model_dump(mode="json"), num_gpus=1,
                     request={}, traffic=req.traffic.model_dump(mode="json"), load=Load(mode="open", rate_rps=4.0),
                     measured=s.model_dump(mode="json"), completed=100)
    path.write_text(v.model_dump_json(indent=1))
    return path


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


@pytest.fixture(scope="module")
def dashboard(pair, tmp_path_factory) -> Path:
    pytest.importorskip("matplotlib")
    req, items = pair
    d = tmp_path_factory.mktemp("dash")
    va = _verify_json(d / "verify_a.json", req, items[0].estimate, 1.2)
    vb = _verify_json(d / "verify_b.json", req, items[1].estimate, 0.9)
    out = d / "report.html"
    rc = plan_main([*BASE, "--a", A, "--b", B, "--html", str(out), "--measured", f"A={va},B={vb}"])
    assert rc == 0
    return out


def test_verify_json_is_read_by_the_bench_reader(pair, tmp_path):
    from serveplan.bench.results import read_bench_summary

    req, items = pair
    s, _ = read_bench_summary(_verify_json(tmp_path / "verify.json", req, items[0].estimate, 2.0))
    assert s.completed == 100
    assert s.ttft_ms.p99 == pytest.approx(items[0].estimate.predictions.ttft_ms.p99 * 2.0)


def test_dashboard_embeds_the_figures_labels_and_numbers(dashboard, pair):
    _, items = pair
    page = _Page()
    page.feed(dashboard.read_text())
    # cost and capacity, latency percentiles, memory, predicted vs measured
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(page.text)
    fa, fb = figures(items[0].estimate), figures(items[1].estimate)
    for f in (fa, fb):
        assert f"${f['cost_per_1m_tokens_at_capacity']:,.3f}" in text
        assert f"{f['capacity_tok_s_per_gpu']:,.1f}" in text
        assert f"{f['kv_tokens']:,}" in text
    assert items[0].estimate.config.label() in text and items[1].estimate.config.label() in text
    assert "B vs A" in text and "Predicted vs measured" in text
    ttft_a = items[0].estimate.predictions.ttft_ms.p99
    assert f"{ttft_a:,.1f}" in text and f"{ttft_a * 1.2:,.1f}" in text and "+20.0%" in text


def test_dashboard_without_matplotlib_is_one_sentence(pair, tmp_path, monkeypatch):
    from serveplan.bench.dashboard import NEED_MATPLOTLIB, write_dashboard

    req, items = pair
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError) as e:
        write_dashboard(items, tmp_path / "x.html", req=req)
    assert str(e.value) == NEED_MATPLOTLIB and "pip install" in NEED_MATPLOTLIB
    assert not (tmp_path / "x.html").exists()


def test_dashboard_takes_any_number_of_labelled_estimates(pair, tmp_path):
    pytest.importorskip("matplotlib")
    from serveplan.bench.dashboard import write_dashboard

    req, items = pair
    fleet = [*items, Labelled("C", items[1].estimate, "same as B")]
    html = write_dashboard(fleet, tmp_path / "fleet.html", req=req).read_text()
    assert "C vs A" in html and "B vs A" in html and html.count("<img") == 3


def _browser() -> str | None:
    for name in (os.environ.get("SERVEPLAN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def test_dashboard_renders_with_charts_in_headless_chromium(dashboard, tmp_path):
    """The page as a person sees it: headless Chromium screenshots it, and the screenshot shows the charts
    (matplotlib's first two colours, A's and B's bars, over many pixels), not a blank page."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome on PATH (apt-get install chromium, or set SERVEPLAN_CHROMIUM)")
    from PIL import Image

    shot = tmp_path / "dashboard.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1300,2800", f"--user-data-dir={tmp_path / 'profile'}",
                        f"--screenshot={shot}", dashboard.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (exit {r.returncode}): {r.stderr[-2000:]}"
    import numpy as np

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (2800, 1300, 3)
    non_white = (img != 255).any(axis=2)
    assert non_white.mean() > 0.05, "the screenshot is nearly blank"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200, "too few colours for charts"

    def near(region, ref, tol=30):  # noqa: ANN001, ANN202 (pixels within tol of an RGB colour)
        return int((np.abs(region - np.array(ref)) <= tol).all(axis=2).sum())

    blue, orange = near(img, (0x1F, 0x77, 0xB4)), near(img, (0xFF, 0x7F, 0x0E))  # matplotlib C0 (A), C1 (B)
    assert blue > 5000 and orange > 5000, (blue, orange)
    # the charts are in the upper part of the page, under their headings, above the tables
    assert near(img[:1400], (0x1F, 0x77, 0xB4)) > 3000
    if os.environ.get("SERVEPLAN_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["SERVEPLAN_KEEP_SCREENSHOT"])
