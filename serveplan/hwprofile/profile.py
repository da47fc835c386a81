"""Measure a hardware profile (schema version 1, see `serveplan.planner.profiles`) on this machine's GPU.

    python -m serveplan.hwprofile.profile --gpu h100-sxm -o profiles/measured/h100-sxm.yaml

What is measured, each with warmup and the median of several timed repetitions (CUDA events; small kernels
are captured `n_inner` at a time in a CUDA graph so that host launch gaps stay out of the kernel time):

- GEMM: the linear layers (QKV, O, fused gate_up, down) of Llama-3-8B, Llama-3-70B and Qwen-32B-class
  models at tensor-parallel splits 1, 2, 4, 8, token counts M = 1 .. 16384, in bf16 (`torch.mm`), fp8
  e4m3 with per-tensor scales (`torch._scaled_mm`, GPUs of compute capability >= 8.9) and int8
  (`torch._int_mm`). Weights rotate among several copies so that repetitions do not read them from L2.
  The profile's curve per dtype is the median across shapes of 2*M*N*K / time; `gemm_shapes` keeps the
  per-shape numbers.
- Attention: causal prefill through SDPA's flash backend (32 query / 8 KV heads, head_dim 128, batches of
  16384 tokens), TFLOP/s counting the causal half; decode (one query token per sequence) over batch x
  context, as GB/s of KV bytes read (K and V of one layer) vs KV tokens in the batch.
- Memory bandwidth: a large device-to-device copy, bytes read + written; launch overhead: host time of
  back-to-back tiny kernel launches.
- Collectives (more than one visible GPU): NCCL all-reduce and all-gather times, 4 KiB .. 1 GiB, for
  groups of 2, 4, 8 .. all GPUs, with NVLink multicast (NVLS) off.

Only the standard library is imported here at import time; PyTorch (and PyYAML, with a JSON fallback that
YAML loaders read too) are imported when a profile is run.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from serveplan.errors import ServeplanError

TORCH_MISSING = "profile needs PyTorch with CUDA: pip install 'serveplan[profile]'"
DTYPES = ("bf16", "fp8", "int8")
HEAD_DIM = 128
MODELS: dict[str, dict[str, int]] = {
    "llama-8b": {"hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8},
    "llama-70b": {"hidden": 8192, "intermediate": 28672, "heads": 64, "kv_heads": 8},
    "qwen-32b": {"hidden": 5120, "intermediate": 27648, "heads": 64, "kv_heads": 8},
}
TP_SPLITS = (1, 2, 4, 8)
TOKENS = tuple(2 ** i for i in range(15))  # 1 .. 16384
PREFILL_SEQ = tuple(2 ** i for i in range(7, 15))  # 128 .. 16384
DECODE_BATCH = (1, 4, 16, 64, 256)
DECODE_CONTEXT = (512, 2048, 8192, 32768)
COLL_SIZES = tuple(4096 * 4 ** i for i in range(10))  # 4 KiB .. 1 GiB
ROTATE_BYTES = 256 * 2 ** 20  # weights/KV read per timed pass at least this much, so L2 (50 MB on Hopper) can't hold them
KV_BYTES_PER_TOKEN = 2 * 8 * HEAD_DIM * 2  # K and V, one layer, 8 KV heads, bf16
NO_MULTICAST_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}

class ProfileError(ServeplanError):
    """Profiling cannot run here (no PyTorch, no CUDA, unknown GPU)."""


def catalog_name(gpu_name: str) -> str | None:
    """The catalog name for an nvidia-smi / torch device name ('NVIDIA H100 80GB HBM3' -> 'h100-sxm'): the
    catalog's own matcher, so `find_profile` finds what `profile` names (None: pass --gpu)."""
    from serveplan.planner.catalog import gpu_for_device

    return gpu_for_device(gpu_name)


def linear_shapes(models: dict[str, dict[str, int]] | None = None,
                  tp_splits: tuple[int, ...] = TP_SPLITS) -> list[dict]:
    """(N, K) of each linear layer at each TP split: column-parallel layers (QKV, gate_up) split N,
    row-parallel ones (O, down) split K. Weight W is (N, K); the GEMM is (M, K) @ W^T -> (M, N)."""
    out = []
    for model, m in (models or MODELS).items():
        q, kv, h, inter = m["heads"] * HEAD_DIM, m["kv_heads"] * HEAD_DIM, m["hidden"], m["intermediate"]
        for tp in tp_splits:
            for layer, n, k in (("qkv", (q + 2 * kv) // tp, h), ("o", h, q // tp),
                                ("gate_up", 2 * inter // tp, h), ("down", h, inter // tp)):
                out.append({"model": model, "layer": layer, "tp": tp, "n": n, "k": k})
    return out


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


# ---------------------------------------------------------------------------------------------- timing
class _Clock:
    """Times device work: CUDA events on a GPU, perf_counter around a synchronize elsewhere."""

    def __init__(self, torch: Any, device: str):
        self.torch, self.device = torch, device
        self.cuda = device.startswith("cuda")
        self.rotate_bytes = ROTATE_BYTES if self.cuda else 2 ** 20  # CPU runs are tests: keep them small

    def rotations(self, nbytes: int, cap: int = 64) -> int:
        """Copies of an operand of nbytes to rotate among so that one pass reads >= rotate_bytes."""
        return max(1, min(cap, math.ceil(self.rotate_bytes / max(nbytes, 1))))

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, run: Callable[[], None]) -> float:
        """Seconds that one call of run() takes on the device."""
        if self.cuda:
            a, b = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            a.record()
            run()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    def measure(self, fn: Callable[[int], Any], *, rotations: int = 1, budget_s: float = 0.02,
                min_reps: int = 3, max_reps: int = 20, target_s: float = 2e-4, max_inner: int = 64,
                warmup: int = 2, graph: bool = True) -> dict:
        """Median seconds of one fn(i) (i picks the rotation copy). Small ops run n_inner at a time,
        captured in a CUDA graph where possible, and the pass is divided by n_inner."""
        for i in range(warmup):
            fn(i % rotations)
        self.sync()
        est = max(self.time(lambda: fn(0)), 1e-7)
        n_inner = max(min(max_inner, math.ceil(target_s / est)), min(rotations, max_inner), 1)
        if n_inner > rotations:
            n_inner -= n_inner % rotations  # every copy equally often

        def loop() -> None:
            for i in range(n_inner):
                fn(i % rotations)

        run, how = loop, "eager"
        if graph and self.cuda:
            torch = self.torch
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    fn(0)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    loop()
                g.replay()
                self.sync()
                run, how = g.replay, "cuda_graph"
            except Exception:  # noqa: BLE001 - capture unsupported for this op: time eager launches
                self.sync()
                run, how = loop, "eager"
        run()
        self.sync()
        pass_s = max(self.time(run), 1e-9)
        reps = max(min_reps, min(max_reps, int(budget_s / pass_s)))
        times = [self.time(run) / n_inner for _ in range(reps)]
        return {"s": statistics.median(times), "reps": reps, "n_inner": n_inner, "timing": how}


# ---------------------------------------------------------------------------------------------- GEMM
def _gemm_op(torch: Any, dtype: str, device: str) -> tuple[Any, Callable]:
    """(element dtype, op(a, w) -> a @ w^T) for one of DTYPES."""
    if dtype == "bf16":
        return torch.bfloat16, lambda a, w: torch.mm(a, w.t())
    if dtype == "fp8":
        one = torch.ones((), dtype=torch.float32, device=device)
        return torch.float8_e4m3fn, lambda a, w: torch._scaled_mm(
            a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    if dtype == "int8":
        return torch.int8, lambda a, w: torch._int_mm(a, w.t())
    raise ValueError(f"unknown GEMM dtype {dtype!r}; known: {', '.join(DTYPES)}")


def _random(torch: Any, shape: tuple[int, ...], dt: Any, device: str) -> Any:
    """Random data in dt (never zeros: they can time faster than real data)."""
    if dt == torch.int8:
        return torch.randint(-16, 16, shape, dtype=torch.int8, device=device)
    x = torch.randn(shape, dtype=torch.bfloat16, device=device)
    return x if dt == torch.bfloat16 else x.to(dt)


def gemm_supported(torch: Any, dtype: str, device: str) -> tuple[bool, str]:
    """Whether dtype's GEMM runs here and gives the right answer (relative error vs float32)."""
    if dtype == "fp8" and device.startswith("cuda"):
        cap = torch.cuda.get_device_capability(torch.device(device))
        if cap < (8, 9):
            return False, f"compute capability {cap[0]}.{cap[1]} < 8.9 has no FP8"
    try:
        dt, op = _gemm_op(torch, dtype, device)
        a, w = _random(torch, (64, 256), dt, device), _random(torch, (128, 256), dt, device)
        out = op(a, w).float()
        ref = a.float() @ w.float().t()
        err = float((out - ref).norm() / ref.norm())
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    if not err < (2e-2 if dtype != "int8" else 1e-6):
        return False, f"wrong result: relative error {err:.2e}"
    return True, f"relative error {err:.1e}"


def measure_gemm(torch: Any, device: str, clock: _Clock, shapes: list[dict], tokens: tuple[int, ...],
                 dtype: str, tick: Callable[[str], None] = lambda s: None, budget_s: float = 0.02) -> list[dict]:
    """Per shape and M: achieved TFLOP/s (2*M*N*K / median time). Ops that refuse a small M (int8's
    M > 16) are timed at the smallest M they take, and still credited with the real M's FLOPs."""
    dt, op = _gemm_op(torch, dtype, device)
    esize = torch.empty((), dtype=dt).element_size()
    rows = []
    for sh in shapes:
        n, k = sh["n"], sh["k"]
        rot = clock.rotations(n * k * esize)
        pool = _random(torch, (rot, n, k), dt, device)
        a_full = _random(torch, (max(max(tokens), 32), k), dt, device)
        min_m = 1
        for m in tokens:
            tick(f"GEMM {dtype} {sh['model']} {sh['layer']} tp{sh['tp']} M={m}")
            res = None
            for m_run in sorted({max(m, c) for c in (min_m, 16, 32) if c >= min_m}):
                a = a_full[:m_run]
                try:
                    res = clock.measure(lambda i, a=a: op(a, pool[i]), rotations=rot, budget_s=budget_s)
                    if m_run > m:
                        min_m = m_run
                    break
                except RuntimeError:
                    clock.sync()
                    if m_run >= 32:
                        raise
            assert res is not None
            rows.append({**sh, "dtype": dtype, "m": m, "m_run": m_run,
                         "tflops": 2 * m * n * k / res["s"] / 1e12, "us": res["s"] * 1e6})
        del pool, a_full
    return rows


def gemm_curve(rows: list[dict], tokens: tuple[int, ...]) -> dict:
    """The profile's curve: per M, the median across shapes."""
    ys = [statistics.median(r["tflops"] for r in rows if r["m"] == m) for m in tokens]
    return {"tokens": list(tokens), "tflops": [_sig(y) for y in ys]}


# ---------------------------------------------------------------------------------------------- attention
def _sdpa(torch: Any, device: str, backend: str | None) -> Callable:
    F = torch.nn.functional
    if backend is None or not device.startswith("cuda"):
        return F.scaled_dot_product_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel
    be = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
          "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[backend]

    def call(*args: Any, **kw: Any) -> Any:
        with sdpa_kernel([be]):
            return F.scaled_dot_product_attention(*args, **kw)
    return call


def measure_prefill(torch: Any, device: str, clock: _Clock, seq_lens: tuple[int, ...], *,
                    heads: int = 32, kv_heads: int = 8, tokens_per_batch: int = 16384,
                    backend: str | None = "flash", tick: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Causal prefill: TFLOP/s counting the causal half (2 matmuls * 2 FLOP * heads * d * S^2 / 2 per
    sequence), batches of about tokens_per_batch tokens so that short sequences fill the GPU."""
    attn = _sdpa(torch, device, backend)
    rows = []
    for s in seq_lens:
        tick(f"prefill attention seq={s}")
        b = max(1, tokens_per_batch // s)
        q = _random(torch, (b, heads, s, HEAD_DIM), torch.bfloat16, device)
        kv = _random(torch, (2, b, kv_heads, s, HEAD_DIM), torch.bfloat16, device)
        try:
            res = clock.measure(lambda i: attn(q, kv[0], kv[1], is_causal=True, enable_gqa=True))
            how = f"{backend or 'default'}+enable_gqa"
        except RuntimeError:  # backend without native GQA: expand K/V to all heads
            clock.sync()
            kx, vx = (t.repeat_interleave(heads // kv_heads, dim=1) for t in kv)
            res = clock.measure(lambda i: attn(q, kx, vx, is_causal=True))
            how = f"{backend or 'default'}+expanded_kv"
        flops = b * 2 * 2 * heads * HEAD_DIM * s * s / 2
        rows.append({"seq_len": s, "batch": b, "tflops": flops / res["s"] / 1e12, "us": res["s"] * 1e6,
                     "kernel": how})
        del q, kv
    return rows


def measure_decode(torch: Any, device: str, clock: _Clock, batches: tuple[int, ...],
                   contexts: tuple[int, ...], *, max_kv_bytes: int, heads: int = 32, kv_heads: int = 8,
                   backend: str | None = "flash", tick: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Decode attention, one query token per sequence: GB/s of K+V bytes read. Both SDPA (flash) and a
    grouped bmm + softmax + bmm are timed; the faster counts (serving engines use their best kernel).
    K/V are views into one random buffer, rotated so that small caches are not read from L2."""
    attn = _sdpa(torch, device, backend)
    group = heads // kv_heads
    per_tok = 2 * kv_heads * HEAD_DIM * 2
    combos = [(b, c) for b in batches for c in contexts if b * c * per_tok <= max_kv_bytes]
    if not combos:
        return []
    need = max(min(clock.rotations(b * c * per_tok), max_kv_bytes // (b * c * per_tok)) * b * c
               for b, c in combos)
    buf = _random(torch, (2, need * kv_heads * HEAD_DIM), torch.bfloat16, device)
    rows = []
    for b, c in combos:
        tick(f"decode attention batch={b} context={c}")
        nel = b * kv_heads * c * HEAD_DIM
        rot = max(1, min(clock.rotations(b * c * per_tok), need * kv_heads * HEAD_DIM // nel))
        ks = [buf[0, i * nel:(i + 1) * nel].view(b, kv_heads, c, HEAD_DIM) for i in range(rot)]
        vs = [buf[1, i * nel:(i + 1) * nel].view(b, kv_heads, c, HEAD_DIM) for i in range(rot)]
        q = _random(torch, (b, heads, 1, HEAD_DIM), torch.bfloat16, device)
        qg = q.view(b, kv_heads, group, HEAD_DIM)
        scale = HEAD_DIM ** -0.5

        def bmm_attn(i: int) -> Any:
            p = torch.softmax(torch.matmul(qg, ks[i].transpose(-1, -2)).float() * scale, dim=-1)
            return torch.matmul(p.to(torch.bfloat16), vs[i])

        best = None
        for name, fn in ((f"sdpa-{backend or 'default'}", lambda i: attn(q, ks[i], vs[i], enable_gqa=True)),
                         ("bmm", bmm_attn)):
            try:
                res = clock.measure(fn, rotations=rot)
            except RuntimeError:
                clock.sync()
                continue
            if best is None or res["s"] < best[1]["s"]:
                best = (name, res)
        if best is None:
            continue
        rows.append({"batch": b, "context": c, "kv_tokens": b * c, "kernel": best[0], "us": best[1]["s"] * 1e6,
                     "bandwidth_gbs": b * c * per_tok / best[1]["s"] / 1e9})
    del buf
    return rows


def decode_curve(rows: list[dict]) -> dict:
    """kv_tokens -> GB/s; where several (batch, context) share a kv_tokens, their median."""
    xs = sorted({r["kv_tokens"] for r in rows})
    ys = [statistics.median(r["bandwidth_gbs"] for r in rows if r["kv_tokens"] == x) for x in xs]
    return {"kv_tokens": xs, "bandwidth_gbs": [_sig(y) for y in ys]}


# ---------------------------------------------------------------------------------------------- memory, launch
def measure_copy_bandwidth(torch: Any, device: str, clock: _Clock, nbytes: int) -> dict:
    """Device-to-device copy of nbytes: GB/s counting bytes read + bytes written."""
    n = nbytes // 2
    src = _random(torch, (n,), torch.bfloat16, device)
    dst = torch.empty_like(src)
    res = clock.measure(lambda i: dst.copy_(src), budget_s=0.2, min_reps=5, graph=False)
    if not torch.equal(dst[:4096], src[:4096]):
        raise RuntimeError("device-to-device copy gave wrong data")
    return {"bytes": 2 * n * 2, "gbs": 2 * n * 2 / res["s"] / 1e9, "reps": res["reps"]}


def measure_launch_overhead(torch: Any, device: str, clock: _Clock, n: int = 2000) -> dict:
    """Host time per launch of back-to-back tiny kernels (x.add_(1) on one element), and the per-kernel
    time of the same launches replayed from a CUDA graph (what graph-captured decode steps pay)."""
    x = torch.ones(1, device=device)
    for _ in range(50):
        x.add_(1)
    clock.sync()
    eager = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1)
        clock.sync()
        eager.append((time.perf_counter() - t0) / n)
    out = {"us": statistics.median(eager) * 1e6}
    if clock.cuda:
        try:
            k = 200
            res = clock.measure(lambda i: x.add_(1), target_s=1.0, max_inner=k, min_reps=5, warmup=5)
            out["graph_us"] = res["s"] * 1e6
        except Exception:  # noqa: BLE001
            clock.sync()
    return out


# ---------------------------------------------------------------------------------------------- collectives
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_sizes(world: int) -> list[int]:
    out = [n for n in (2, 4, 8, 16, 32, 64) if n <= world]
    return out + ([world] if world not in out and world > 1 else [])


def _collective_worker(rank: int, world: int, port: int, sizes: list[int], out_file: str, backend: str,
                       device_type: str) -> None:
    """One rank: time all-reduce and all-gather of bf16 buffers in groups of the first n ranks."""
    os.environ.update(NO_MULTICAST_ENV)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch
    import torch.distributed as dist

    cuda = device_type == "cuda"
    device = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=_dt.timedelta(minutes=5),
                            **({"device_id": torch.device(device)} if cuda else {}))
    clock = _Clock(torch, device)
    flag = torch.ones(1, device=device)
    all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13
    results: dict[str, dict[str, dict]] = {"allreduce": {}, "allgather": {}}
    for n in _group_sizes(world):
        group = dist.new_group(list(range(n)))
        if rank < n:
            for op in ("allreduce", "allgather"):
                times = []
                for size in sizes:
                    nel = size // 2
                    if op == "allreduce":
                        buf = _random(torch, (nel,), torch.bfloat16, device)
                        call = lambda: dist.all_reduce(buf, group=group)  # noqa: E731
                    else:
                        out = torch.empty(nel - nel % n, dtype=torch.bfloat16, device=device)
                        inp = _random(torch, (out.numel() // n,), torch.bfloat16, device)
                        call = lambda: all_gather(out, inp, group=group)  # noqa: E731
                    iters = 20 if size <= 16 * 2 ** 20 else 5
                    for _ in range(3):
                        call()
                    reps = []
                    for _ in range(3):
                        dist.all_reduce(flag, group=group)  # line the ranks up
                        clock.sync()

                        def run() -> None:
                            for _ in range(iters):
                                call()
                        reps.append(clock.time(run) / iters)
                    t = torch.tensor([statistics.median(reps)], dtype=torch.float64, device=device)
                    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)  # a collective ends on its slowest rank
                    times.append(_sig(float(t.item()) * 1e6))
                    del call
                results[op][str(n)] = {"bytes": list(sizes), "time_us": times}
        dist.barrier()
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


def measure_collectives(world: int, sizes: tuple[int, ...] = COLL_SIZES, *, backend: str = "nccl",
                        device_type: str = "cuda", timeout_s: float = 600.0) -> dict:
    """Spawn one process per GPU on a free localhost port; returns {allreduce: {"n": curve}, allgather: ...}."""
    import torch.multiprocessing as mp

    os.environ.update(NO_MULTICAST_ENV)  # children inherit it; NVLink multicast stays off
    with tempfile.TemporaryDirectory(prefix="serveplan-coll-") as d:
        out_file = os.path.join(d, "collectives.json")
        ctx = mp.spawn(_collective_worker, args=(world, _free_port(), list(sizes), out_file, backend, device_type),
                       nprocs=world, join=False)
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(f"collectives did not finish in {timeout_s:.0f} s")
        with open(out_file) as f:
            return json.load(f)


# ---------------------------------------------------------------------------------------------- provenance
def _smi(query: str, index: int = 0) -> list[str] | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", str(index)],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]


def _num(v: str | None) -> float | str | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return v


class _ClockSampler:
    """Samples SM/memory clocks, temperature and power with nvidia-smi while the profile runs."""

    def __init__(self, interval_s: float = 2.0):
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            s = _smi("clocks.sm,clocks.mem,temperature.gpu,power.draw")
            if s is None:
                return
            self.samples.append(s)
            self._stop.wait(interval_s)

    def __enter__(self) -> _ClockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> dict:
        cols = list(zip(*self.samples)) if self.samples else []
        out = {}
        for name, col in zip(("sm_mhz", "mem_mhz", "temperature_c", "power_w"), cols):
            vals = [v for v in (_num(x) for x in col) if isinstance(v, float)]
            if vals:
                out[name] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
        return {"samples": len(self.samples), **out} if out else {}


def provenance(torch: Any, device: str) -> dict:
    prov: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "torch": str(torch.__version__), "cuda": torch.version.cuda, "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        prov.update({
            "gpu_name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 2),
            "compute_capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
            "l2_mib": round(getattr(p, "L2_cache_size", 0) / 2 ** 20, 1) or None,
            "visible_gpus": torch.cuda.device_count(),
        })
        s = _smi("name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit")
        if s:
            prov["gpu_name"] = s[0]
            prov["driver"] = s[1]
            prov["memory_gib"] = round(float(s[2]) / 1024, 2) if _num(s[2]) else prov["memory_gib"]
            prov["clocks"] = {"sm_mhz_at_start": _num(s[3]), "mem_mhz_at_start": _num(s[4]),
                              "max_sm_mhz": _num(s[5]), "max_mem_mhz": _num(s[6])}
            prov["power_limit_w"] = _num(s[7])
    else:
        prov.update({"gpu_name": f"cpu ({platform.processor() or platform.machine()})", "device": device})
    return prov


# ---------------------------------------------------------------------------------------------- output
def _plain(x: Any) -> Any:
    """Plain YAML types only (torch's version string, tuples and the like become str, list, ...)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    return str(x)


def _json_yaml(x: Any, indent: int = 0) -> str:
    """JSON that YAML 1.1 loaders (PyYAML) read back with the same types: floats keep a '.' and a signed
    exponent ('1.0e-05', not '1e-05', which PyYAML would read as a string)."""
    pad = " " * (indent + 1)
    if isinstance(x, dict):
        if not x:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {_json_yaml(v, indent + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(x, list):
        return "[" + ", ".join(_json_yaml(v, indent + 1) for v in x) + "]"
    if isinstance(x, float) and math.isfinite(x):
        r = repr(x)
        if "e" in r:
            mant, exp = r.split("e")
            r = f"{mant if '.' in mant else mant + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"
        return r
    if isinstance(x, float):
        return json.dumps(str(x))
    return json.dumps(x)


def _dump(doc: dict, f: Any) -> None:
    doc = _plain(doc)
    try:
        import yaml
    except ImportError:  # JSON is YAML: any YAML loader reads it
        f.write(_json_yaml(doc) + "\n")
        return
    yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=120)


def write_profile(doc: dict, path: str | os.PathLike) -> Path:
    """Write doc as YAML atomically: a temporary file beside path, then os.replace; on failure nothing is
    left behind and an existing file at path is untouched."""
    from serveplan.fileio import write_atomic

    return write_atomic(path, lambda f: _dump(doc, f))


# ---------------------------------------------------------------------------------------------- progress
class _Progress:
    """A rich progress bar, or plain lines on stderr where rich is missing, or nothing."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.done, self._phase, self._bar = total, enabled, 0, "", None
        if enabled:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn)
                self._bar = Progress(TextColumn("{task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), transient=False)
            except ImportError:
                self._bar = None

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
            self._task = self._bar.add_task("profiling", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def tick(self, what: str) -> None:
        """Start measuring `what` (the previous item is done)."""
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done - 1, description=what)
            return
        phase = " ".join(what.split()[:2])
        if phase != self._phase:
            self._phase = phase
            print(f"[{self.done}/{self.total}] {what}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.total, description="done")


# ---------------------------------------------------------------------------------------------- driver
def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ProfileError(TORCH_MISSING) from e
    return torch


def run_profile(out_path: str | os.PathLike, *, gpu_name: str | None, quick: bool = False,
                dtypes: tuple[str, ...] | list[str] | None = None, n_gpus: int | None = None,
                progress: bool = True, device: str = "cuda", command: str | None = None) -> dict:
    """Measure this machine's GPU and write the profile YAML to out_path (atomically); returns the document.

    gpu_name: catalog name (e.g. 'h100-sxm'); None picks it from the device name. quick: a tiny subset
    (seconds; for tests). dtypes: GEMM dtypes among bf16, fp8, int8 (default: all the GPU runs).
    n_gpus: GPUs for the collectives (default: all visible; 1 skips them). device: 'cuda' (or 'cpu', which
    only tests use: its numbers describe no GPU)."""
    torch = _import_torch()
    t_start = time.monotonic()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProfileError(f"profile needs PyTorch with CUDA: this torch ({torch.__version__}) sees no CUDA GPU")
    for dt in dtypes or ():
        if dt not in DTYPES:
            raise ProfileError(f"unknown GEMM dtype '{dt}'; known: {', '.join(DTYPES)}")
    cuda = device.startswith("cuda")
    if cuda:
        device = str(torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device(device))
        torch.cuda.set_device(torch.device(device))
    dev_name = torch.cuda.get_device_name(torch.device(device)) if cuda else "cpu"
    guess = catalog_name(dev_name) if cuda else None
    gpu = gpu_name or guess
    if gpu is None:
        raise ProfileError(f"cannot tell the catalog name of GPU '{dev_name}': pass --gpu NAME")
    notes = []
    if gpu_name and guess and gpu_name != guess:
        msg = f"--gpu {gpu_name} given, but the device '{dev_name}' looks like {guess}"
        notes.append(msg)
        print(f"warning: {msg}", file=sys.stderr)

    clock = _Clock(torch, device)
    if quick:
        shapes = linear_shapes({"llama-8b": MODELS["llama-8b"]}, (8,))
        tokens, seqs, batches, contexts = (1, 8, 64), (128, 256), (1, 4), (128, 512)
        prefill_tokens, copy_bytes, launches, coll_sizes = 512, 32 * 2 ** 20, 200, (4096, 65536, 2 ** 20)
    else:
        shapes, tokens, seqs, batches, contexts = linear_shapes(), TOKENS, PREFILL_SEQ, DECODE_BATCH, DECODE_CONTEXT
        prefill_tokens, copy_bytes, launches, coll_sizes = 16384, 4 * 2 ** 30, 2000, COLL_SIZES
    free = torch.cuda.mem_get_info()[0] if cuda else 8 * 2 ** 30
    copy_bytes = min(copy_bytes, int(free * 0.2) // 2 ** 20 * 2 ** 20)
    max_kv = min(16 * 2 ** 30 if not quick else 64 * 2 ** 20, int(free * 0.3))
    world = (n_gpus if n_gpus is not None else torch.cuda.device_count()) if cuda else 1
    backend = "flash" if cuda else None

    checks, skipped = {}, {}
    use = []
    for dt in dtypes or DTYPES:
        ok, why = gemm_supported(torch, dt, device)
        (checks if ok else skipped)[dt] = why
        if ok:
            use.append(dt)
    if not use:
        raise ProfileError(f"no GEMM dtype runs here: {skipped}")

    n_decode = sum(1 for b in batches for c in contexts if b * c * KV_BYTES_PER_TOKEN <= max_kv)
    total = len(use) * len(shapes) * len(tokens) + len(seqs) + n_decode + 2 + (1 if world > 1 else 0)
    doc: dict[str, Any] = {"schema_version": 1, "gpu": gpu, "kind": "measured"}
    prov = provenance(torch, device)
    prov["command"] = command or shlex.join([os.path.basename(sys.executable), *sys.argv])
    prov["quick"] = quick
    sampler = _ClockSampler() if cuda else None
    with _Progress(total, progress) as bar:
        if sampler:
            sampler.__enter__()
        try:
            bar.tick("memory bandwidth (device-to-device copy)")
            bw = measure_copy_bandwidth(torch, device, clock, copy_bytes)
            bar.tick("kernel launch overhead")
            launch = measure_launch_overhead(torch, device, clock, launches)
            raw: list[dict] = []
            gemm = {}
            for dt in use:
                rows = measure_gemm(torch, device, clock, shapes, tokens, dt, bar.tick)
                gemm[dt] = gemm_curve(rows, tokens)
                raw += rows
                if cuda:
                    torch.cuda.empty_cache()
            pre = measure_prefill(torch, device, clock, seqs, tokens_per_batch=prefill_tokens,
                                  backend=backend, tick=bar.tick)
            dec = measure_decode(torch, device, clock, batches, contexts, max_kv_bytes=max_kv,
                                 backend=backend, tick=bar.tick)
            if cuda:
                torch.cuda.empty_cache()
            coll = None
            if world > 1:
                bar.tick(f"collectives (NCCL, {world} GPUs)")
                try:
                    coll = measure_collectives(world, coll_sizes)
                except Exception as e:  # noqa: BLE001 - keep the single-GPU numbers
                    notes.append(f"collectives failed: {type(e).__name__}: {e}")
                    print(f"warning: collectives failed: {e}", file=sys.stderr)
            bar.finish()
        finally:
            if sampler:
                sampler.__exit__(None, None, None)

    if sampler:
        prov.setdefault("clocks", {})["during_run"] = sampler.summary()
    prov["duration_s"] = round(time.monotonic() - t_start, 1)
    prov["gemm_checks"] = checks
    padded = {}
    for dt in use:
        pad = [r for r in raw if r["dtype"] == dt and r["m_run"] > r["m"]]
        if pad:
            padded[dt] = (f"M in {sorted({r['m'] for r in pad})} timed at M={min(r['m_run'] for r in pad)} "
                          "(credited the real M's FLOPs)")
    if padded:
        prov["gemm_padded_m"] = padded
    if skipped:
        prov["gemm_skipped"] = skipped
    prov["method"] = {
        "timing": "CUDA events, warmup, median of >=3 passes; small kernels captured n_inner at a time in a "
                  "CUDA graph",
        "gemm": "(M,K) @ W^T with W (N,K) per TP split; bf16 torch.mm, fp8 torch._scaled_mm e4m3 per-tensor "
                "scales (use_fast_accum off), int8 torch._int_mm timed at M>=32 where it refuses smaller M; "
                "weights rotate among copies >= 256 MiB; curve = median across shapes",
        "prefill": f"causal SDPA ({backend or 'default'}), 32 q / 8 kv heads, head_dim 128, "
                   f"batches of {prefill_tokens} tokens; FLOPs = 2*2*heads*d*S^2/2 per sequence",
        "decode": "1 query token per sequence, best of SDPA and grouped bmm; bytes = K+V of one layer",
        "memory_bandwidth": f"{bw['bytes'] // 2 // 2 ** 20} MiB device-to-device copy, read + write counted",
        "launch_overhead": f"host time per x.add_(1) over {launches} back-to-back launches",
    }
    if notes:
        prov["notes"] = notes
    doc["provenance"] = prov
    doc["memory_bandwidth_gbs"] = _sig(bw["gbs"])
    doc["launch_overhead_us"] = _sig(launch["us"], 3)
    if "graph_us" in launch:
        doc["launch_overhead_graph_us"] = _sig(launch["graph_us"], 3)
    doc["gemm"] = gemm
    att: dict[str, Any] = {"prefill": {"seq_len": [r["seq_len"] for r in pre],
                                       "tflops": [_sig(r["tflops"]) for r in pre]}}
    if dec:
        att["decode"] = decode_curve(dec)
    doc["attention"] = att
    if coll:
        doc["collectives"] = coll
    doc["gemm_shapes"] = [
        {"model": sh["model"], "layer": sh["layer"], "tp": sh["tp"], "n": sh["n"], "k": sh["k"],
         **{dt: [_sig(r["tflops"]) for r in raw if r["dtype"] == dt and r["model"] == sh["model"]
                 and r["layer"] == sh["layer"] and r["tp"] == sh["tp"]] for dt in use}}
        for sh in shapes]
    doc["attention_points"] = {
        "prefill": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in pre],
        "decode": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in dec],
    }
    write_profile(doc, out_path)
    return doc


def summary(doc: dict) -> str:
    """A few headline numbers of a profile, one per line."""
    lines = [f"{doc['gpu']}: {doc['provenance'].get('gpu_name')}",
             f"  copy bandwidth {doc['memory_bandwidth_gbs']:.0f} GB/s, launch {doc['launch_overhead_us']} us"]
    for dt, c in doc["gemm"].items():
        pts = ", ".join(f"M={m}: {y:.1f}" for m, y in zip(c["tokens"], c["tflops"]) if m in (1, 64, 1024, 4096, 16384))
        lines.append(f"  GEMM {dt} TFLOP/s {pts}")
    pre = doc["attention"]["prefill"]
    lines.append(f"  prefill attention {pre['tflops'][-1]:.0f} TFLOP/s at seq {pre['seq_len'][-1]}")
    if "decode" in doc["attention"]:
        d = doc["attention"]["decode"]
        lines.append(f"  decode attention {max(d['bandwidth_gbs']):.0f} GB/s best")
    return "\n".join(lines)
