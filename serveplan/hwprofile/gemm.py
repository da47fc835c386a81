"""GEMM throughput of the linear layers of common models, per dtype (bf16, fp8, int8)."""

from __future__ import annotations

import statistics

from typing import Any, Callable


from serveplan.hwprofile.common import DTYPES, HEAD_DIM, MODELS, TP_SPLITS, _sig
from serveplan.hwprofile.timing import _Clock


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
