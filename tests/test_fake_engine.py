"""The fake engine speaks vLLM's OpenAI-compatible protocol over loopback, and fails the way vLLM does."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import BIN, alive, free_port
from serveplan.testing.fake_engine import parse_args

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def engine_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_ENGINE_")}
    env.update(FAKE_ENGINE_PYTHON=sys.executable, FAKE_ENGINE_STARTUP_S="0.05", FAKE_ENGINE_LIFETIME_S="60",
               FAKE_ENGINE_TTFT_MS="10", FAKE_ENGINE_ITL_MS="2")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(port: int, *flags: str, **env) -> subprocess.Popen:
    """`vllm serve MODEL --port P ...` through the tests/bin shim, as a rendered argv would run."""
    argv = [str(BIN / "vllm"), "serve", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--tensor-parallel-size", "1", "--enable-chunked-prefill", "--max-num-batched-tokens", "8192",
            "--gpu-memory-utilization", "0.9", "--kv-cache-dtype", "auto", *flags]
    return subprocess.Popen(argv, env=engine_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("fake engine never became healthy")


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert not alive(proc.pid)
    return proc.returncode, out


@pytest.fixture(scope="module")
def engine():
    port = free_port()
    proc = start(port, "--max-model-len", "2048", "--served-model-name", "llama")
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        code, out = finish(proc)
        assert code == 0, out
        assert "Application startup complete." in out
        assert f"Starting vLLM API server on http://127.0.0.1:{port}" in out


def sse(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# ---------------------------------------------------------------------------------------------- protocol
def test_models_and_version(engine):
    data = httpx.get(f"{engine}/v1/models").json()
    assert data["object"] == "list"
    assert data["data"][0]["id"] == "llama" and data["data"][0]["root"] == MODEL
    assert data["data"][0]["max_model_len"] == 2048


def test_completion_counts_words_and_honours_max_tokens(engine):
    r = httpx.post(f"{engine}/v1/completions",
                   json={"model": "llama", "prompt": "one two three four", "max_tokens": 7, "ignore_eos": True})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["text"].split()) == 7
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11,
                             "prompt_tokens_details": None}


def test_ignore_eos_false_stops_early_with_stop(engine):
    body = httpx.post(f"{engine}/v1/completions",
                      json={"model": "llama", "prompt": "hello", "max_tokens": 400}).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert 8 <= body["usage"]["completion_tokens"] < 400
    exact = httpx.post(f"{engine}/v1/completions",
                       json={"model": "llama", "prompt": "hello", "max_tokens": 300, "ignore_eos": True}).json()
    assert exact["usage"]["completion_tokens"] == 300


def test_streaming_completion_with_usage(engine):
    with httpx.stream("POST", f"{engine}/v1/completions",
                      json={"model": "llama", "prompt": "a b c", "max_tokens": 5, "ignore_eos": True,
                            "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = sse(r.read().decode())
    text_chunks = [c for c in chunks if c["choices"]]
    assert len(text_chunks) == 5
    assert all(c["usage"] is None for c in text_chunks)
    assert text_chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["prompt_tokens"] == 3


def test_chat_streaming_and_plain(engine):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"}]
    with httpx.stream("POST", f"{engine}/v1/chat/completions",
                      json={"model": "llama", "messages": msgs, "max_tokens": 4, "ignore_eos": True,
                            "stream": True, "stream_options": {"include_usage": True}}) as r:
        chunks = sse(r.read().decode())
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(content.split()) == 4
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8,
                                   "prompt_tokens_details": None}
    plain = httpx.post(f"{engine}/v1/chat/completions",
                       json={"model": "llama", "messages": msgs, "max_completion_tokens": 3,
                             "ignore_eos": True}).json()
    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"]["role"] == "assistant"
    assert len(plain["choices"][0]["message"]["content"].split()) == 3


def test_errors_like_vllm(engine):
    r = httpx.post(f"{engine}/v1/completions", json={"model": "other", "prompt": "x", "max_tokens": 2})
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]
    r = httpx.post(f"{engine}/v1/completions", json={"model": "llama", "prompt": "x y", "max_tokens": 2047})
    assert r.status_code == 400
    assert "maximum context length is 2048 tokens" in r.json()["error"]["message"]
    assert httpx.get(f"{engine}/nope").status_code == 404


def test_metrics_use_vllm_names(engine):
    def counter(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    before = httpx.get(f"{engine}/metrics").text
    httpx.post(f"{engine}/v1/completions", json={"prompt": "p q r", "max_tokens": 6, "ignore_eos": True})
    after = httpx.get(f"{engine}/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert f"# TYPE {name} " in after
    assert counter(after, "vllm:prompt_tokens_total") - counter(before, "vllm:prompt_tokens_total") == 3
    assert counter(after, "vllm:generation_tokens_total") - counter(before, "vllm:generation_tokens_total") == 6
    assert 'model_name="llama"' in after


def test_many_concurrent_streams(engine):
    async def one(client: httpx.AsyncClient, i: int) -> int:
        async with client.stream("POST", f"{engine}/v1/completions",
                                 json={"prompt": f"req {i}", "max_tokens": 20, "ignore_eos": True,
                                       "stream": True, "stream_options": {"include_usage": True}}) as r:
            usage = None
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    usage = json.loads(line[6:]).get("usage") or usage
            return usage["completion_tokens"]

    async def main() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return await asyncio.gather(*(one(client, i) for i in range(150)))

    t0 = time.monotonic()
    assert asyncio.run(main()) == [20] * 150
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------------------------------------- behaviour
def test_max_concurrency_queues_requests():
    port = free_port()
    proc = start(port, FAKE_ENGINE_MAX_CONCURRENCY=1, FAKE_ENGINE_TTFT_MS=5, FAKE_ENGINE_ITL_MS=20)
    try:
        wait_healthy(port, proc)
        url = f"http://127.0.0.1:{port}"

        async def main():
            async with httpx.AsyncClient(timeout=30) as c:
                req = c.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 10, "ignore_eos": True})
                task = asyncio.gather(req, c.post(f"{url}/v1/completions",
                                                  json={"prompt": "y", "max_tokens": 10, "ignore_eos": True}))
                await asyncio.sleep(0.1)
                metrics = (await c.get(f"{url}/metrics")).text
                return await task, metrics

        t0 = time.monotonic()
        (a, b), metrics = asyncio.run(main())
        assert a.status_code == b.status_code == 200
        assert time.monotonic() - t0 >= 2 * 9 * 0.020  # served one after the other
        assert 'vllm:num_requests_waiting{engine="0",model_name="%s"} 1.0' % MODEL in metrics
        assert 'vllm:num_requests_running{engine="0",model_name="%s"} 1.0' % MODEL in metrics
    finally:
        assert finish(proc)[0] == 0


def test_fail_requests_mode_answers_500_but_is_healthy():
    port = free_port()
    proc = start(port, FAKE_ENGINE_MODE="fail_requests")
    try:
        wait_healthy(port, proc)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert r.status_code == 500
    finally:
        finish(proc)


def test_health_is_503_while_loading_then_200():
    port = free_port()
    proc = start(port, FAKE_ENGINE_STARTUP_S=0.8)
    try:
        end = time.monotonic() + 5
        status = None
        while time.monotonic() < end and status is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.02)
        assert status == 503
        wait_healthy(port, proc)
    finally:
        finish(proc)


def test_port_in_use_exits_1_like_vllm():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = start(port)
        code, out = proc.wait(timeout=10), proc.stdout.read()
    assert code == 1
    assert "OSError: [Errno 98] Address already in use" in out


@pytest.mark.parametrize("mode, expect", [
    ("oom", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."),
    ("crash", "Traceback (most recent call last):"),
])
def test_failing_modes_exit_1_with_a_log_line(mode, expect):
    port = free_port()
    proc = start(port, FAKE_ENGINE_MODE=mode)
    code, out = proc.wait(timeout=10), proc.stdout.read()
    assert code == 1 and expect in out
    assert "Application startup complete." not in out


def test_ignore_sigterm_needs_sigkill():
    port = free_port()
    proc = start(port, FAKE_ENGINE_MODE="ignore_sigterm")
    try:
        wait_healthy(port, proc)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL and not alive(proc.pid)


def test_hang_never_becomes_healthy():
    port = free_port()
    proc = start(port, FAKE_ENGINE_MODE="hang", FAKE_ENGINE_STARTUP_S=0.05)
    try:
        status = None
        for _ in range(300):  # until it listens, however slow the machine: then it answers, and never healthy
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(0.5)  # well past its 0.05 s startup
        assert proc.poll() is None
        assert status == 503 and httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 503
    finally:
        assert finish(proc)[0] == 0


def test_parse_args_accepts_real_vllm_flags():
    a = parse_args(["serve", "m", "--port", "9001", "--host=127.0.0.1", "--tensor-parallel-size", "4",
                    "--served-model-name", "x", "y", "--max-model-len", "8K", "--max-num-seqs", "64",
                    "--enable-prefix-caching", "--quantization", "fp8", "--no-enable-chunked-prefill",
                    "--compilation-config", '{"level": 3}', "--swap-space", "-1"])
    assert (a.model, a.port, a.host, a.name, a.max_model_len, a.max_num_seqs) == \
        ("m", 9001, "127.0.0.1", "x", 8192, 64)
    assert a.other["tensor-parallel-size"] == ["4"]
    assert a.other["enable-prefix-caching"] == []
    assert a.other["swap-space"] == ["-1"]
    assert parse_args(["--model", "z", "--max-model-len", "4k"]).max_model_len == 4000
