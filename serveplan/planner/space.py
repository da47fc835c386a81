"""The candidate space: parallel layouts, precisions and batching knobs that the GPU and engine support.

A layout is (TP, PP, replicas): TP stays within a node (all-reduce twice per layer needs the fast link),
PP may cross nodes, replicas take disjoint GPU sets. Precisions are offered only where GPU and engine run
them: FP8 W8A8 needs FP8 tensor cores (Ada/Hopper/Blackwell); vLLM also runs FP8 weight-only (Marlin) on
Ampere; INT8 W8A8 needs INT8 tensor cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from serveplan.planner.catalog import quant_method
from serveplan.planner.checkpoints import bnb_nf4_servable, checkpoint_for
from serveplan.planner.spec import Candidate, PlanRequest


@dataclass(frozen=True)
class Structure:
    """The part of a candidate that decides where weights live: layout and precisions."""

    tp: int
    pp: int
    replicas: int
    weight_dtype: str
    kv_cache_dtype: str

    @property
    def key(self) -> str:
        kv = "" if self.kv_cache_dtype == "auto" else "-kvfp8"
        return f"tp{self.tp}-pp{self.pp}-r{self.replicas}-{self.weight_dtype}{kv}"


def layouts(req: PlanRequest) -> list[tuple[int, int, int]]:
    inv, m, s = req.inventory, req.model, req.search
    out = []
    tps = [t for t in (1, 2, 4, 8, 16) if t <= inv.gpus_per_node]
    for tp in tps:
        if s.tp and tp not in s.tp:
            continue
        if not m.shards_at(tp):
            continue
        for pp in (1, 2, 3, 4, 6, 8, 12, 16):
            if s.pp and pp not in s.pp:
                continue
            if pp > 1 and not req.engine.supports_pp:
                continue
            per_replica = tp * pp
            if per_replica > inv.total_gpus or pp > m.num_layers:
                continue
            # A replica lives inside one node, or spans whole nodes with TP filling each node.
            if per_replica > inv.gpus_per_node and (tp != inv.gpus_per_node or per_replica % inv.gpus_per_node):
                continue
            max_r = inv.total_gpus // per_replica
            if s.use_all_gpus and max_r * per_replica != inv.total_gpus:
                continue  # this layout would leave GPUs idle
            rs = [max_r] if s.use_all_gpus else list(range(1, max_r + 1))
            for r in rs:
                if per_replica <= inv.gpus_per_node and r > inv.nodes * (inv.gpus_per_node // per_replica):
                    continue
                out.append((tp, pp, r))
    return out


def weight_dtypes(req: PlanRequest) -> list[str]:
    gpu, eng, s = req.inventory.gpu, req.engine, req.search
    out = []
    for w in s.allowed_quant:
        if w not in eng.weight_dtypes:
            continue
        if w == "fp16" and "bf16" in s.allowed_quant:
            continue  # same bytes and speed as bf16: not a separate choice
        if w == "fp8" and not gpu.has_fp8_tensor_cores and eng.name != "vllm":
            continue  # only vLLM runs FP8 weight-only (Marlin) without FP8 tensor cores
        if w == "int8" and not gpu.has_int8_tensor_cores:
            continue
        if w == "bnb-nf4" and not bnb_nf4_servable(eng.name, eng.version):
            continue  # config.py refuses the request first, in one sentence
        if s.max_quality_cost is not None and quant_method(w).quality_cost_pct > s.max_quality_cost:
            continue
        if checkpoint_for(req.model, w, eng.name) is None:
            continue  # no checkpoint this engine loads at that precision, and no way to make one
        out.append(w)
    return out


def kv_dtypes(req: PlanRequest) -> list[str]:
    gpu, eng = req.inventory.gpu, req.engine
    out = []
    for k in req.search.allowed_kv_dtype:
        if k not in eng.kv_dtypes:
            continue
        if k == "fp8" and eng.name == "trtllm" and not gpu.has_fp8_tensor_cores:
            continue
        out.append(k)
    return out


def structures(req: PlanRequest) -> list[Structure]:
    return [Structure(tp, pp, r, w, k) for (tp, pp, r) in layouts(req)
            for w in weight_dtypes(req) for k in kv_dtypes(req)]


def batching_options(req: PlanRequest) -> list[tuple[int, int, bool]]:
    """(max_num_seqs, max_num_batched_tokens, chunked_prefill); without chunking the token budget must
    hold a whole prompt, so it is max_model_len."""
    s, mml = req.search, req.max_model_len
    out: list[tuple[int, int, bool]] = []
    for seqs in s.max_num_seqs:
        for chunked in s.chunked_prefill:
            if chunked and not req.engine.supports_chunked_prefill:
                continue
            toks = s.max_num_batched_tokens if chunked else (max(mml, max(s.max_num_batched_tokens)),)
            for t in toks:
                opt = (seqs, max(t, seqs) if chunked else t, chunked)
                if opt not in out:
                    out.append(opt)
    return out


def make_candidate(req: PlanRequest, st: Structure, seqs: int, tokens: int, chunked: bool) -> Candidate:
    return Candidate(
        engine=req.engine.name, tp=st.tp, pp=st.pp, replicas=st.replicas, weight_dtype=st.weight_dtype,
        kv_cache_dtype=st.kv_cache_dtype, max_num_seqs=seqs, max_num_batched_tokens=tokens,
        chunked_prefill=chunked, max_model_len=req.max_model_len,
        gpu_memory_utilization=req.engine.gpu_memory_utilization,
        enable_prefix_caching=True, checkpoint=checkpoint_for(req.model, st.weight_dtype, req.engine.name),
    )
