"""Causal prefill attention (TFLOP/s) and decode attention (GB/s of KV read); copy bandwidth and launch overhead."""

from __future__ import annotations

import statistics
import time

from typing import Any, Callable


from serveplan.hwprofile.common import HEAD_DIM, _sig
from serveplan.hwprofile.gemm import _random
from serveplan.hwprofile.timing import _Clock


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
