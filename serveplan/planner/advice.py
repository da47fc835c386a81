"""What would fit, when nothing does: the smallest inventory or quantization that holds the model."""

from __future__ import annotations

from serveplan.planner import catalog
from serveplan.planner.memory import memory_breakdown, weight_bytes_per_gpu
from serveplan.planner.spec import Candidate, GPUSpec, PlanRequest

GB = 1e9
ORDER = ("bf16", "fp8", "int8", "awq")  # least to most lossy; gptq is awq's size


def _fits(req: PlanRequest, gpu: GPUSpec, n: int, wdtype: str) -> bool:
    """n GPUs of this type hold the model at this precision (TP within 8, PP across the rest)."""
    m = req.model
    tp = min(n, 8)
    while tp > 1 and (m.num_attention_heads % tp or n % tp):
        tp //= 2
    pp = n // tp
    if tp * pp != n or (pp > 1 and not req.engine.supports_pp):
        return False
    cand = Candidate(engine=req.engine.name, tp=tp, pp=pp, weight_dtype=wdtype,  # type: ignore[arg-type]
                     max_num_seqs=16, max_num_batched_tokens=2048, max_model_len=min(req.max_model_len, 4096),
                     gpu_memory_utilization=req.engine.gpu_memory_utilization)
    return memory_breakdown(m, gpu, req.engine, cand, req.traffic).fits


def smallest_count(req: PlanRequest, gpu: GPUSpec, wdtype: str, limit: int = 64) -> int | None:
    for n in (1, 2, 4, 8, 16, 24, 32, 48, 64):
        if n <= limit and _fits(req, gpu, n, wdtype):
            return n
    return None


def nothing_fits_message(req: PlanRequest) -> str:
    m, inv = req.model, req.inventory
    allowed = [w for w in ORDER if w in req.search.allowed_quant] or list(ORDER)
    need = {w: weight_bytes_per_gpu(m, 1, 1, w) / GB for w in ORDER}
    weights = ", ".join(f"{need[w]:,.0f} GB at {w}" for w in ("awq", "fp8", "bf16"))
    head = (f"{m.name} does not fit on {inv.describe()} ({inv.gpu.memory_gb:.0f} GB each): its weights alone "
            f"need {weights}, before any KV cache.")
    options = []
    for w in allowed:  # the least lossy precision that fits this inventory, if any
        if any(_fits(req, inv.gpu, n, w) for n in (inv.total_gpus,)):
            options.append(f"quantizing to {w} fits these GPUs (search.allowed_quant excluded it)")
            break
    for w in allowed[::-1][:1] + allowed[:1]:
        n = smallest_count(req, inv.gpu, w)
        if n:
            options.append(f"{n}x {inv.gpu.display_name} fit it at {w}")
    best = None
    for name in catalog.options("hardware"):
        gpu = catalog.gpu_spec(name)
        for w in allowed:
            n = smallest_count(req, gpu, w, limit=8)
            if n:
                cost = n * gpu.price_per_hour_usd
                if best is None or cost < best[0]:
                    best = (cost, n, gpu.display_name, w)
                break
    if best:
        options.append(f"{best[1]}x {best[2]} fit it at {best[3]} (${best[0]:.2f}/h)")
    uniq = list(dict.fromkeys(options))
    return head + (" It would fit: " + "; ".join(uniq) + "." if uniq else "")
