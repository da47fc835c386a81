"""The load generator against the fake engine over loopback, plus error paths, interruption and reports."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from serveplan.errors import ConfigError
from serveplan.bench import report as bench_report
from conftest import served, start_engine, stop_engine
from serveplan.bench.loadgen import run_bench, run_bench_async, sweep
from serveplan.bench.results import BenchResult
from serveplan.bench.tables import render_sweep_table, render_table
from serveplan.planner.spec import SLO, LengthDist, Traffic

TTFT_MS, ITL_MS = 100.0, 20.0
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(request):
    proc, url = start_engine(FAKE_ENGINE_TTFT_MS=str(TTFT_MS), FAKE_ENGINE_ITL_MS=str(ITL_MS))
    request.addfinalizer(lambda: stop_engine(proc))
    return url


def traffic(inp: LengthDist | None = None, out: int = 10, **kw) -> Traffic:
    kw.setdefault("concurrency", 1)
    kw.setdefault("arrival", "closed")
    return Traffic(name="test", input_len=inp or LengthDist(kind="fixed", mean=50),
                   output_len=LengthDist(kind="fixed", mean=out), **kw)


def max_overlap(result: BenchResult) -> int:
    """Requests in flight at once, from the recorded start and end times (independent of the counter)."""
    ev = []
    for r in result.requests:
        if r.e2e_ms is not None:
            ev += [(r.start_s, 1), (r.start_s + r.e2e_ms / 1000, -1)]
    cur = best = 0
    for _, d in sorted(ev, key=lambda x: (x[0], x[1])):
        cur += d
        best = max(best, cur)
    return best


# ----------------------------------------------------------------------------------------------- accuracy
@pytest.mark.timing
@pytest.mark.parametrize("conc", [1, 4, 16])
def test_ttft_tpot_match_the_engine(engine, conc):
    # Four waves: a cold burst of 16 simultaneous first requests pays the client's send cost (up to
    # tens of ms on a small, busy host); the median is taken over the steadier waves that follow.
    n = 4 * conc
    r = run_bench([engine], traffic(), concurrency=conc, num_requests=n, progress=False)
    s = r.summary
    assert s.completed == n and s.failed == 0 and not s.errors
    # The engine waits TTFT_MS before the first token: the measurement can't be below it (less a clock tick).
    # Above it a busy 2-core CI host adds scheduling delay to the client and the engine alike (client_lag_ms
    # shows the client's part; 111.6 ms against a 110.4 ms bound was seen with other test runs on the
    # machine), so the upper bound catches a bench that measures the wrong event (E2E: ~10x), not jitter.
    lag = s.client_lag_ms.p50 if s.client_lag_ms and s.client_lag_ms.p50 is not None else 0.0
    assert TTFT_MS - 1 <= s.ttft_ms.p50 <= TTFT_MS * 1.5 + lag, (s.ttft_ms, lag)
    assert abs(s.tpot_ms.p50 - ITL_MS) <= max(0.25 * ITL_MS, 3), s.tpot_ms
    assert abs(s.itl_ms.p50 - ITL_MS) <= max(0.25 * ITL_MS, 3), s.itl_ms
    # Closed loop: exactly `conc` clients, never more.
    assert s.max_in_flight == conc
    assert max_overlap(r) <= conc
    assert r.args.mode == "closed" and r.args.model == "fake-model"  # discovered from /v1/models
    for q in r.requests:
        assert q.output_tokens == 10 and q.output_tokens_reported and len(q.itl_ms) == 9
        assert q.prompt_tokens == 50 and q.prompt_tokens_reported  # the fake engine counts words
        assert q.tpot_ms == pytest.approx((q.e2e_ms - q.ttft_ms) / 9)
    assert s.output_tok_s == pytest.approx(s.total_output_tokens / s.duration_s)


def test_engine_timings_split_ttft():
    # vLLM with --enable-per-request-metrics reports each request's queue and prefill time in its last chunk.
    # Two slots and six simultaneous requests: four must queue for a slot, and the bench must show that
    # queueing as the engine's, not as frontend time.
    proc, url = start_engine("--enable-per-request-metrics", FAKE_ENGINE_TTFT_MS="60", FAKE_ENGINE_ITL_MS="5",
                             FAKE_ENGINE_MAX_CONCURRENCY="2")
    try:
        r = run_bench([url], traffic(out=4), concurrency=6, num_requests=6, progress=False)
    finally:
        stop_engine(proc)
    s = r.summary
    assert s.completed == 6
    for q in r.requests:
        assert q.server_queue_ms is not None and q.server_prefill_ms is not None and q.server_decode_ms is not None
        # The fake engine's first token is due 60 ms after arrival, or as soon as a slot frees after that.
        assert 59 <= q.server_queue_ms + q.server_prefill_ms <= q.ttft_ms + 1
    waited = sorted(q.server_queue_ms for q in r.requests)
    assert waited[1] < 10 and waited[-1] >= 60  # two got a slot at once; the last waited a whole request
    assert s.server_queue_ms is not None and s.server_queue_ms.count == 6
    assert s.frontend_ms is not None and s.frontend_ms.p50 is not None and s.frontend_ms.p50 >= -1
    assert " TTFT: engine queue" in [name for name, _ in s.latency_rows()]


def test_no_engine_timings_without_the_flag(engine):
    r = run_bench([engine], traffic(), concurrency=1, num_requests=2, progress=False)
    assert all(q.server_queue_ms is None for q in r.requests)
    assert r.summary.frontend_ms is None
    assert [name for name, _ in r.summary.latency_rows()] == ["TTFT", "TPOT", "ITL", "E2E"]


def test_open_loop_rate_is_achieved(engine):
    r = run_bench([engine], traffic(arrival="constant", rate_rps=1.0, concurrency=None), rate_rps=25,
                  num_requests=30, progress=False)
    assert r.args.mode == "open" and r.args.arrival == "constant"
    assert r.summary.achieved_send_rps == pytest.approx(25, rel=0.08)
    assert r.summary.completed == 30
    # Poisson: seeded exponential gaps, so the same seed sends at the same times.
    p = run_bench([engine], traffic(arrival="poisson", rate_rps=25, concurrency=None), num_requests=30,
                  seed=3, progress=False)
    assert p.args.arrival == "poisson" and p.summary.achieved_send_rps == pytest.approx(25, rel=0.45)
    b = run_bench([engine], traffic(arrival="bursty", burstiness=0.3, rate_rps=25, concurrency=None),
                  num_requests=20, progress=False)
    assert b.args.arrival == "bursty" and b.summary.completed == 20


def test_open_loop_concurrency_cap(engine):
    r = run_bench([engine], traffic(), rate_rps=100, concurrency=3, num_requests=12, progress=False)
    assert r.args.mode == "open" and r.summary.max_in_flight <= 3 and max_overlap(r) <= 3
    assert r.summary.completed == 12 and max(q.queued_ms for q in r.requests) > 50


@pytest.mark.timing
def test_replicas_round_robin_and_chat(engine):
    urls = [engine, engine + "/v1"]
    r = run_bench(urls, traffic(), concurrency=2, num_requests=6, endpoint="chat", progress=False)
    assert set(r.per_url) == set(urls)
    assert [r.per_url[u].completed for u in urls] == [3, 3]
    lag = r.summary.client_lag_ms.p50 if r.summary.client_lag_ms and r.summary.client_lag_ms.p50 is not None else 0.0
    assert r.summary.completed == 6 and TTFT_MS - 1 <= r.summary.ttft_ms.p50 <= TTFT_MS * 1.10 + lag


def test_size_classes_by_tercile(engine):
    inp = LengthDist(kind="uniform", mean=300, std=150, min=1, max=2000)
    r = run_bench([engine], traffic(inp, out=2), concurrency=8, num_requests=30, progress=False)
    lo, hi = r.tercile_bounds
    assert lo < hi
    for q in r.requests:
        want = "short" if q.input_len <= lo else "medium" if q.input_len <= hi else "long"
        assert q.size_class == want
    counts = {c.name: c.count for c in r.classes}
    assert sum(counts.values()) == 30 and all(8 <= n <= 12 for n in counts.values()), counts
    assert [c.name for c in r.classes] == ["short", "medium", "long"]
    assert r.classes[0].input_len_max <= r.classes[2].input_len_min
    # Same seed, same lengths.
    r2 = run_bench([engine], traffic(inp, out=2), concurrency=8, num_requests=30, progress=False)
    assert [q.input_len for q in r.requests] == [q.input_len for q in r2.requests]


def test_slo_goodput(engine):
    loose = run_bench([engine], traffic(), concurrency=2, num_requests=4, progress=False,
                      slo=SLO(ttft_p99_ms=1000, tpot_p99_ms=100))
    assert loose.summary.goodput_rps == pytest.approx(loose.summary.requests_per_s)
    assert loose.summary.slo_attainment == 1.0 and all(loose.summary.slo_met.values())
    tight = run_bench([engine], traffic(), concurrency=2, num_requests=4, progress=False,
                      slo=SLO(ttft_p99_ms=10))
    assert tight.summary.goodput_rps == 0 and tight.summary.slo_met == {"ttft_p99_ms": False}


# ----------------------------------------------------------------------------------------------- errors
def test_connection_refused_is_counted():
    url = f"http://127.0.0.1:{free_port()}"
    r = run_bench([url], traffic(), model="m", concurrency=2, num_requests=4, progress=False, timeout_s=5)
    assert r.summary.completed == 0 and r.summary.errors == {"connection": 4}
    assert all(q.error for q in r.requests)


def test_unreachable_model_discovery_is_a_note():
    r = run_bench([f"http://127.0.0.1:{free_port()}"], traffic(), num_requests=1, progress=False)
    assert r.summary.errors == {"connection": 1} and any("model name" in n for n in r.notes)


def test_http_500_is_counted():
    proc, url = start_engine(FAKE_ENGINE_MODE="fail_requests")
    try:
        r = run_bench([url], traffic(), concurrency=2, num_requests=4, progress=False)
    finally:
        stop_engine(proc)
    assert r.summary.errors == {"http_5xx": 4} and r.summary.completed == 0
    assert r.requests[0].error.startswith("HTTP 500")


def test_timeout_is_counted():
    proc, url = start_engine(FAKE_ENGINE_TTFT_MS="10", FAKE_ENGINE_ITL_MS="300")
    try:
        t = time.monotonic()
        r = run_bench([url], traffic(out=20), concurrency=2, num_requests=2, timeout_s=0.4, progress=False)
        assert time.monotonic() - t < 5
    finally:
        stop_engine(proc)
    assert r.summary.errors == {"timeout": 2}
    assert all(q.ttft_ms is not None for q in r.requests)  # first token came, then the limit


BAD_STREAMS = {
    "garbage": b"this is not sse\n\n",
    "bad_json": b'data: {"choices": [\n\n',
    "no_done": b'data: {"choices": [{"index": 0, "text": " hi"}]}\n\n',
    "plain_json": b'{"choices": [{"text": "hi"}]}',
    # every token a special one, skipped in the text (session 28's dummy Gemma-2): [DONE] and usage, no text
    "no_text": (b'data: {"choices": [{"index": 0, "text": ""}]}\n\n'
                b'data: {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 5}}\n\ndata: [DONE]\n\n'),
}


async def _bad_server(kind: str):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = BAD_STREAMS[kind]
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n"
                     b"connection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("kind", list(BAD_STREAMS))
def test_malformed_stream_is_counted(kind):
    async def main():
        srv = await _bad_server(kind)
        port = srv.sockets[0].getsockname()[1]
        async with srv:
            return await run_bench_async([f"http://127.0.0.1:{port}"], traffic(), model="m", concurrency=2,
                                         num_requests=3, progress=False, timeout_s=5)

    r = asyncio.run(main())
    assert r.summary.errors == {"malformed": 3}, [q.error for q in r.requests]
    assert all(q.error.startswith("malformed stream") for q in r.requests)
    if kind == "no_text":  # the message says the server did generate, so the cause is the text, not the engine
        assert all("generated 5 tokens, none with text" in q.error for q in r.requests)
        assert any(n.startswith("3 of 3 streams (100%) carried tokens but no text") for n in r.notes)
    else:  # a stream that breaks the protocol is not a text-less one
        assert not any("carried tokens but no text" in n for n in r.notes)


def _committed_bench(name: str) -> BenchResult:
    path = Path(__file__).resolve().parents[1] / "benchmarks/gpu/results" / f"{name}.json.gz"
    return BenchResult.model_validate(json.loads(gzip.decompress(path.read_bytes())))


def test_notes_say_when_streams_had_no_text_or_requests_waited_before_the_engine():
    """Session 29's Gemma-2-27B at 6 req/s (dummy weights: 163 of 389 streams special tokens only; TTFT's part before
    vLLM's scheduler 2,446 ms at P90 with its queue empty) gets both notes; at 3 req/s only the first; Qwen3-32B FP8
    near its capacity, whose front-end part stays under its prefill, neither. The thresholds are read from the
    figures, so a rule that always or never fires fails here."""
    from serveplan.bench.results import FRONTEND_NOTE_MS, summary_notes

    g6 = _committed_bench("session29/G27D/open-chat-6")
    notes = summary_notes(g6.summary, g6.requests)
    assert notes[0].startswith("163 of 389 streams (42%) carried tokens but no text")
    assert "2,446 ms at P90, against 0.1 ms queued and 867 ms of prefill" in notes[1]
    g3 = _committed_bench("session29/G27D/open-chat-3")
    assert [n.split(" (")[0] for n in summary_notes(g3.summary, g3.requests)] == ["70 of 192 streams"]
    q = _committed_bench("session29/Q3F/open-chat-9.5")
    assert summary_notes(q.summary, q.requests) == []
    assert q.summary.frontend_ms.p90 > 0.5 * FRONTEND_NOTE_MS  # a real front-end wait, under the note's bar


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError):
        run_bench([], traffic())
    with pytest.raises(ConfigError):
        run_bench(["http://x"], traffic(), rate_rps=-1)
    with pytest.raises(ConfigError):
        sweep(["http://x"], traffic())


# ----------------------------------------------------------------------------------------------- interruption
def test_cancelled_run_returns_and_writes(engine, tmp_path):
    out = tmp_path / "partial.json"

    async def main():
        before = served(engine)
        task = asyncio.create_task(run_bench_async([engine], traffic(), concurrency=2, num_requests=10_000,
                                                   progress=False, output=out))
        # cancel once a few requests have finished, however slow the machine (not after a fixed time)
        for _ in range(600):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(served, engine) - before >= 4:
                break
        task.cancel()
        return await task

    r = asyncio.run(main())
    assert r.interrupted and r.summary.completed >= 2 and r.summary.cancelled >= 1
    saved = BenchResult.read_json(out)
    assert saved.interrupted and saved.summary.completed == r.summary.completed


def _sigint_after(script: str, seconds: float, until=None) -> tuple[int, str]:  # noqa: ANN001
    """Run `script` in a Python subprocess; once it prints "started", wait `seconds`, then until `until()` holds
    (checked every 0.1 s for up to a minute, so a slow machine waits longer, not fails), and send SIGINT.
    Returns its exit status and the rest of its output."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(seconds)
        for _ in range(600 if until else 0):
            if until():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout


def test_sigint_still_writes_json(engine, tmp_path):
    out = tmp_path / "sigint.json"
    script = textwrap.dedent(f"""
        from serveplan.bench.loadgen import run_bench
        from serveplan.planner.spec import Traffic, LengthDist
        t = Traffic(input_len=LengthDist(kind="fixed", mean=50), output_len=LengthDist(kind="fixed", mean=10),
                    arrival="closed", concurrency=2)
        print("started", flush=True)
        r = run_bench([{engine!r}], t, num_requests=10000, progress=False, output={str(out)!r})
        print("done", r.interrupted, r.summary.completed, flush=True)
    """)
    before = served(engine)
    returncode, stdout = _sigint_after(script, 0.5, until=lambda: served(engine) - before >= 3)
    assert returncode == 0, stdout
    assert stdout.startswith("done True")
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["summary"]["completed"] >= 1


# ----------------------------------------------------------------------------------------------- results
@pytest.fixture(scope="module")
def sweep_results(engine):
    return sweep([engine], traffic(LengthDist(kind="uniform", mean=200, std=100)), concurrencies=[1, 4],
                 num_requests=8, progress=False, slo=SLO(ttft_p99_ms=150, tpot_p99_ms=30))


def test_json_round_trip(sweep_results, tmp_path):
    r = sweep_results[1]
    path = r.write_json(tmp_path / "sub" / "r.json")
    back = BenchResult.read_json(path)
    assert back == r
    data = json.loads(path.read_text())
    assert {"args", "traffic", "summary", "requests", "classes"} <= set(data)
    assert data["requests"][0]["itl_ms"] and data["args"]["concurrency"] == 4
    assert not list(path.parent.glob(".*"))  # no temp file left behind


def test_sweep_and_tables(sweep_results):
    from rich.console import Console

    assert [r.args.concurrency for r in sweep_results] == [1, 4]
    con = Console(record=True, width=160)
    render_table(sweep_results[1], con)
    render_sweep_table(sweep_results, con)
    text = con.export_text()
    assert "TTFT" in text and "concurrency 4" in text and "short" in text


def test_html_report_with_plots(sweep_results, tmp_path):
    pytest.importorskip("matplotlib")
    path = bench_report.write_report(sweep_results, tmp_path / "report.html")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 3  # CDFs, by prompt length, against load
    assert "Sweep" in html and bench_report.NO_MATPLOTLIB not in html


def test_html_report_without_matplotlib(sweep_results, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not bench_report.plots_available()
    path = bench_report.write_report(sweep_results[0], tmp_path / "report.html")
    html = path.read_text()
    assert bench_report.NO_MATPLOTLIB in html and "<img" not in html and "TTFT" in html


VLLM_RESULT = {
    "date": "20260101-000000", "backend": "vllm", "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "num_prompts": 100, "request_rate": "inf", "burstiness": 1.0, "max_concurrency": 16,
    "duration": 20.0, "completed": 98, "failed": 2, "total_input_tokens": 100000, "total_output_tokens": 20000,
    "request_throughput": 4.9, "request_goodput": None, "output_throughput": 1000.0,
    "total_token_throughput": 6000.0, "max_output_tokens_per_s": 1300.0, "max_concurrent_requests": 16,
    "mean_ttft_ms": 120.0, "median_ttft_ms": 110.0, "std_ttft_ms": 20.0, "p99_ttft_ms": 300.0,
    "mean_tpot_ms": 15.0, "median_tpot_ms": 14.5, "std_tpot_ms": 1.0, "p99_tpot_ms": 19.0,
    "mean_itl_ms": 15.1, "median_itl_ms": 14.0, "std_itl_ms": 2.0, "p99_itl_ms": 30.0,
}


def test_load_vllm_bench_json(tmp_path):
    p = tmp_path / "vllm.json"
    p.write_text(json.dumps(VLLM_RESULT))
    s = bench_report.load_vllm_bench_json(p)
    assert s.source == "vllm-bench" and s.completed == 98 and s.failed == 2 and s.errors == {"other": 2}
    assert (s.ttft_ms.mean, s.ttft_ms.p50, s.ttft_ms.p99, s.ttft_ms.p90) == (120.0, 110.0, 300.0, None)
    assert s.tpot_ms.p99 == 19.0 and s.itl_ms.p50 == 14.0 and s.e2e_ms.mean is None
    assert s.output_tok_s == 1000.0 and s.input_tok_s == 5000.0 and s.requests_per_s == 4.9
    assert s.concurrency_limit == 16 and s.offered_rps is None and s.goodput_rps is None
    # --save-detailed per-request seconds fill the percentiles vLLM did not print; --append-result is JSONL.
    detailed = dict(VLLM_RESULT, request_rate=8.0, ttfts=[0.1, 0.2, 0.3, 0.0], latencies=[1.0, 2.0, 3.0, 0.0],
                    errors=["", "", "", "Timeout waiting"])
    p.write_text(json.dumps(VLLM_RESULT) + "\n" + json.dumps(detailed) + "\n")
    s2 = bench_report.load_vllm_bench_json(p)
    assert s2.offered_rps == 8.0 and s2.ttft_ms.p90 == pytest.approx(280.0) and s2.e2e_ms.p50 == 2000.0
    assert s2.errors == {"timeout": 1} and s2.failed == 2
    assert bench_report.load_vllm_bench_json(p, index=0).offered_rps is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ConfigError):
        bench_report.load_vllm_bench_json(bad)


def test_missing_tokenizer_falls_back_to_approx(engine):
    r = run_bench([engine], traffic(), concurrency=1, num_requests=1, tokenizer="/nonexistent/tokenizer",
                  progress=False)
    assert r.prompt_tokens_source == "approx" and any("not usable" in n for n in r.notes)
    assert r.summary.completed == 1


# ----------------------------------------------------------------------------------------------- prepared prompts
def _slow_build(monkeypatch, seconds: float) -> None:
    from serveplan.bench.prompts import _PromptBuilder

    build = _PromptBuilder.build

    def slow(self, n_tokens):
        time.sleep(seconds)
        return build(self, n_tokens)

    monkeypatch.setattr(_PromptBuilder, "build", slow)


def test_slow_prompts_do_not_delay_arrivals(engine, monkeypatch):
    # 40 ms per prompt against 20 ms between arrivals: built on the clock, at most ~25 of the 50 arrivals
    # in the second would go out (back to back, as the schedule caught up). Built beforehand, all go out
    # on schedule, and the time it took is a note.
    _slow_build(monkeypatch, 0.04)
    r = run_bench([engine], traffic(arrival="constant", rate_rps=50, concurrency=None), duration_s=1.0,
                  progress=False)
    starts = [q.start_s for q in r.requests]
    assert [q.index for q in r.requests] == list(range(len(r.requests)))
    assert starts == sorted(starts)
    assert 40 <= len(r.requests) <= 51, len(r.requests)
    assert starts[-1] - starts[0] >= 0.7  # spread over the second, not a burst
    assert r.summary.achieved_send_rps == pytest.approx(50, rel=0.3)
    assert r.summary.completed == len(r.requests) and not r.interrupted
    assert any("building the prompts took" in n for n in r.notes), r.notes
    assert not any("built during the run" in n for n in r.notes), r.notes


def test_prepared_prompts_match_lazily_built(engine, monkeypatch):
    """The same seed sends the same bodies whether they were prepared, built on demand, or a mix."""
    from serveplan.bench import loadgen

    sent: dict[int, dict] = {}
    stream = loadgen.stream_request

    async def record(client, rec, body, **kw):
        sent[rec.index] = json.loads(json.dumps(body))
        return await stream(client, rec, body, **kw)

    monkeypatch.setattr(loadgen, "stream_request", record)
    from serveplan.bench.requests import RequestSource

    pool_size = RequestSource.pool_size
    t = traffic(LengthDist(kind="uniform", mean=60, std=30, min=1, max=200), out=3, prefix_share=0.3)
    runs = {}
    for label, size in (("prepared", None), ("lazy", 0), ("mixed", 5)):
        monkeypatch.setattr(RequestSource, "pool_size",
                            pool_size if size is None else (lambda self, n=size: n))
        sent.clear()
        r = run_bench([engine], t, concurrency=3, num_requests=12, seed=5, progress=False)
        assert r.summary.completed == 12
        runs[label] = (dict(sent), [(q.index, q.input_len, q.output_len, q.prompt_tokens) for q in
                                    sorted(r.requests, key=lambda q: q.index)])
    assert runs["prepared"] == runs["lazy"] == runs["mixed"]
    assert len({q[1] for q in runs["lazy"][1]}) > 1  # lengths vary: the comparison means something
    # An open loop takes them in the same order.
    sent.clear()
    monkeypatch.setattr(RequestSource, "pool_size", pool_size)
    o = run_bench([engine], t, rate_rps=200, num_requests=12, seed=5, progress=False)
    assert sent == runs["lazy"][0]
    assert [(q.index, q.input_len, q.output_len, q.prompt_tokens) for q in o.requests] == runs["lazy"][1]


def test_pool_size():
    from serveplan.bench.loadgen import _Run, _resolve_args
    from serveplan.bench.requests import MAX_PREPARED

    def size(t, **kw):
        kw = {"num_requests": None, "duration_s": None, "rate_rps": None, "concurrency": None, **kw}
        args = _resolve_args(["http://x"], t, None, kw["num_requests"], kw["duration_s"], kw["rate_rps"],
                             kw["concurrency"], 0, 10, None, "completions")
        return _Run(args.urls, t, args, None, False, None).source.pool_size()

    open_t = traffic(arrival="poisson", rate_rps=2, concurrency=None)
    assert size(open_t, num_requests=30) == 30
    assert size(open_t, rate_rps=1.5, duration_s=100) == 150 + 49 + 16  # ceil(150 + 4 sqrt(150) + 16)
    assert size(open_t, rate_rps=1.5, duration_s=100, num_requests=20) == 20
    assert size(open_t, rate_rps=1000, duration_s=3600) == MAX_PREPARED
    assert size(traffic(arrival="bursty", burstiness=0.25, rate_rps=2, concurrency=None),
                rate_rps=1, duration_s=100) == 100 + 80 + 16  # gamma shape 0.25: 4x the count variance
    assert size(traffic(), concurrency=4, duration_s=60) == 16 * 4 + 16
    assert size(traffic(), concurrency=4, duration_s=60, num_requests=500) == 500
    assert size(traffic()) == 200  # the default num_requests


def test_interrupt_while_preparing(engine, tmp_path):
    out = tmp_path / "prep.json"
    script = textwrap.dedent(f"""
        import time
        from rich.console import Console
        from serveplan.bench import prompts
        from serveplan.bench.loadgen import run_bench
        from serveplan.bench.tables import render_table
        from serveplan.planner.spec import Traffic, LengthDist
        build = prompts._PromptBuilder.build
        def slow(self, n):
            time.sleep(0.2)
            return build(self, n)
        prompts._PromptBuilder.build = slow
        t = Traffic(input_len=LengthDist(kind="fixed", mean=50), output_len=LengthDist(kind="fixed", mean=10),
                    arrival="poisson", rate_rps=5)
        print("started", flush=True)
        r = run_bench([{engine!r}], t, num_requests=1000, progress=False, output={str(out)!r})
        render_table(r, Console(file=open("/dev/null", "w")))
        print("done", r.interrupted, len(r.requests), flush=True)
    """)
    returncode, stdout = _sigint_after(script, 2.0)  # imports, model discovery, then a few of the slow prompts
    assert returncode == 0, stdout
    assert stdout.strip() == "done True 0"
    data = json.loads(out.read_text())
    assert data["interrupted"] is True and data["requests"] == [] and data["summary"]["completed"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["prep.json"]


def test_cancel_while_preparing(engine, monkeypatch):
    _slow_build(monkeypatch, 0.1)

    async def main():
        task = asyncio.create_task(run_bench_async([engine], traffic(), concurrency=2, num_requests=1000,
                                                   progress=False))
        await asyncio.sleep(1.0)
        task.cancel()
        return await task

    t = time.monotonic()
    r = asyncio.run(main())
    assert time.monotonic() - t < 10  # not the 100 s the whole pool would take
    assert r.interrupted and r.requests == [] and r.summary.completed == 0


# ----------------------------------------------------------------------------------------------- warm-up
def test_warmup_is_sent_first_and_left_out(engine):
    """warmup_s sends the same load first (a fresh engine compiles kernels for new batch shapes under it) and no
    figure includes it: the engine serves more requests than the result records, and a note says why."""
    before = served(engine)
    r = run_bench([engine], traffic(), concurrency=2, num_requests=6, warmup_s=1.0, progress=False)
    extra = int(served(engine) - before - 6)
    assert r.summary.completed == 6 and len(r.requests) == 6 and r.args.warmup_s == 1.0
    assert extra >= 2  # a closed loop of two clients sends at least one request each before its second is up
    assert r.notes[0].startswith(f"a 1-s warm-up at the same load ({extra} requests)") and "in no figure" in r.notes[0]
    # the measured sample is the one a run without warm-up draws (the warm-up has its own seed)
    plain = run_bench([engine], traffic(inp=LengthDist(kind="uniform", mean=50, min=10, max=90)), concurrency=2,
                      num_requests=6, progress=False)
    warmed = run_bench([engine], traffic(inp=LengthDist(kind="uniform", mean=50, min=10, max=90)), concurrency=2,
                       num_requests=6, warmup_s=0.5, progress=False)
    assert sorted(q.input_len for q in plain.requests) == sorted(q.input_len for q in warmed.requests)
    with pytest.raises(ConfigError, match="warmup_s"):
        run_bench([engine], traffic(), warmup_s=-1)


def test_cancel_during_warmup_measures_nothing(engine):
    async def main():
        before = served(engine)
        task = asyncio.create_task(run_bench_async([engine], traffic(), concurrency=2, num_requests=5,
                                                   warmup_s=120.0, progress=False))
        for _ in range(600):  # cancel once the warm-up has served a request, however slow the machine
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(served, engine) > before:
                break
        task.cancel()
        return await task

    t = time.monotonic()
    r = asyncio.run(main())
    assert time.monotonic() - t < 60  # not the 120-s warm-up
    assert r.interrupted and r.requests == [] and r.summary.completed == 0
    assert "interrupted during the warm-up: nothing was measured" in r.notes
