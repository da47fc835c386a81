"""Shared test helpers: the fake engine on PATH, free ports, /proc liveness checks, a minimal Plan."""

from __future__ import annotations

import os
import socket
import time
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

BIN = Path(__file__).parent / "bin"


def _ephemeral_low() -> int:
    """Lowest port the kernel hands out to outgoing connections (Linux ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_base_port(n: int) -> int:
    """A port p with p .. p+n-1 all free now (replica i listens on base + i). Chosen below the kernel's
    ephemeral range: a port the kernel may give to some client connection between this check and the
    engine's bind (what free port 0 returns, and its neighbours) made launch tests fail on a busy machine."""
    import random

    hi = min(_ephemeral_low(), 65536) - n
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, max(20001, hi))
        if all(_bindable(p) for p in range(base, base + n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def free_port() -> int:
    return free_base_port(1)


def alive(pid: int) -> bool:
    """Exists and is not a zombie (read from /proc, no psutil)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(")") + 2] not in "ZX"


def group_alive(pgid: int) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                data = Path(f"/proc/{e}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            f = data[data.rindex(")") + 2:].split()
            if f[2] == str(pgid) and f[0] not in "ZX":
                out.append(int(e))
    return out


def temp_leftovers(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]


@pytest.fixture
def fake_env(monkeypatch):
    """tests/bin first on PATH (so `vllm` is the fake engine), fast startup, a lifetime safety net."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ENGINE_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_ENGINE_STARTUP_S", "0.1")
    monkeypatch.setenv("FAKE_ENGINE_LIFETIME_S", "120")
    monkeypatch.setenv("SERVEPLAN_FAKE_GPUS", ",".join(["NVIDIA H100 80GB HBM3"] * 8))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for k in ("FAKE_ENGINE_MODE", "FAKE_ENGINE_CRASH_AFTER_S", "FAKE_ENGINE_MAX_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def make_plan(**candidate):
    """A small valid Plan (llama-3.1-8b-like on H100) whose winner is Candidate(**candidate)."""
    from serveplan.planner.result import Estimate, MemoryBreakdown, Plan, SearchStats
    from serveplan.planner.spec import (SLO, Candidate, EngineConfig, Inventory, LengthDist, PlanRequest,
                                        SearchConfig, Traffic)

    from serveplan.testing import factories

    model, gpu = factories.model("llama-3.1-8b"), factories.gpu("h100-sxm")
    request = PlanRequest(
        model=model, inventory=Inventory(gpu=gpu, gpus_per_node=8),
        traffic=Traffic(input_len=LengthDist(kind="fixed", mean=512), output_len=LengthDist(kind="fixed", mean=128),
                        rate_rps=4),
        slo=SLO(ttft_p99_ms=1000), search=SearchConfig(), engine=EngineConfig(name="vllm", version="0.26.0"))
    cand = Candidate(**{"max_model_len": 4096, **candidate})
    mem = MemoryBreakdown(capacity_gb=85.5, budget_gb=77, weights_gb=16, activations_gb=1, reserve_gb=1.5,
                          kv_cache_gb=58, kv_bytes_per_token=131072, kv_tokens=440000, max_concurrent_seqs=600,
                          fits=True)
    stats = SearchStats(sampler="grid", space_size=1, memory_feasible=1, trials=1, examined_fraction=1.0,
                        seconds=0.0)
    return Plan(request=request, ranked=(Estimate(config=cand, memory=mem),), stats=stats)


# ------------------------------------------------------------------------------------ a fake engine server
def start_engine(*args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """A fake engine on a free loopback port (extra vllm flags in `args`, e.g. "--served-model-name", "x")."""
    port = free_port()
    e = {**os.environ, "FAKE_ENGINE_STARTUP_S": "0", "FAKE_ENGINE_LIFETIME_S": "120", **env}
    proc = subprocess.Popen([sys.executable, "-m", "serveplan.testing.fake_engine", "serve", "fake-model",
                             "--port", str(port), "--host", "127.0.0.1", *args], env=e, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake engine did not become healthy")


def stop_engine(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def served(url: str) -> float:
    """Requests the fake engine at `url` has finished (vLLM's request_success_total, over its label sets); 0 while it
    does not answer. With C requests in flight, N finished on the engine means at least N - C finished on a closed
    loop's client: it sends one only when another is done."""
    from serveplan.render.engines.base import parse_prometheus

    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return parse_prometheus(text).get("vllm:request_success_total", 0.0)
