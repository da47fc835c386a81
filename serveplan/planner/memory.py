"""Per-GPU memory of a candidate: weights, KV cache, activations, engine reserve.

Sizes are in GB (1e9 bytes). The worst pipeline stage is the one that counts (it runs out first). The KV
budget follows each engine's own rule:
  vLLM:     capacity x gpu_memory_utilization - weights - peak activations - non-torch (0.26.0 captures the
            CUDA graphs afterwards, in the 1 - utilization headroom: seen on the H100, KV 56.51 GiB =
            0.92 x 79.18 - 15.0 - 1.1 - 0.22)
  SGLang:   capacity x mem_fraction_static - weights (activations and graphs live outside the fraction)
  TRT-LLM:  (capacity - weights - activations - reserve) x free_gpu_memory_fraction
  TGI:      vLLM's rule, with gpu_memory_utilization given to TGI as TGI_WIGGLE_ROOM: TGI's warmup measures the
            free memory after a prefill of max_batch_prefill_tokens and keeps (1 - TGI_WIGGLE_ROOM) x total free,
            then captures CUDA graphs (flash_causal_lm.py `warmup`, v3.3.7). The same shape as vLLM 0.26's
            profile, read from the source, not measured: its activation peak and non-torch memory are vLLM's.
Capacity is what the CUDA runtime reports (GPUSpec.usable_gib: 79.18 GiB on an H100 80GB), not the datasheet.

Besides steady state, `start_problems` holds the rules an engine enforces when it starts, so the planner
never recommends what the engine refuses: the weights as they are while loading (an online-quantized
checkpoint is held unquantized first), TP dividing the heads, max_num_batched_tokens >= max_num_seqs (and >=
max_model_len without chunked prefill), one max_model_len sequence in the KV cache.
"""

from __future__ import annotations

import math

from serveplan.planner.catalog import quant_method
from serveplan.planner.checkpoints import checkpoint_for
from serveplan.planner.result import MemoryBreakdown
from serveplan.planner.spec import Candidate, EngineConfig, GPUSpec, ModelSpec, Traffic

GB = 1e9
ACT_BYTES = 2  # bf16/fp16 activations


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each TP rank holds: split when there are enough, else replicated (one per rank)."""
    return max(1, math.ceil(model.num_kv_heads / tp))


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int, pp: int, kv_dtype: str) -> float:
    """KV bytes one token costs on one GPU of the worst pipeline stage."""
    bytes_per_elem = 1.0 if kv_dtype == "fp8" else 2.0
    layers = math.ceil(model.num_layers / pp)
    return 2 * layers * kv_heads_per_gpu(model, tp) * model.head_dim * bytes_per_elem


def linear_params_per_gpu_per_layer(model: ModelSpec, tp: int) -> float:
    """Matmul weights of one layer on one TP rank (K/V projections replicated when kv heads < TP)."""
    h, d = model.hidden_size, model.head_dim
    q_and_o = 2 * h * model.num_attention_heads * d / tp
    kv = 2 * h * kv_heads_per_gpu(model, tp) * d
    mlp = model.mlp_params_per_layer / tp
    return q_and_o + kv + mlp


def weight_bytes_per_gpu(model: ModelSpec, tp: int, pp: int, weight_dtype: str) -> float:
    """Weights on one GPU of the worst stage: quantized linear layers, bf16 embeddings/LM head/norms."""
    bpw = quant_method(weight_dtype).bytes_per_weight
    layers = math.ceil(model.num_layers / pp)
    linear = layers * linear_params_per_gpu_per_layer(model, tp) * bpw
    small = layers * model.norm_params_per_layer * 2
    if model.qkv_bias:
        small += layers * (model.num_attention_heads + 2 * model.num_kv_heads) * model.head_dim / tp * 2
    vocab_shard = model.vocab_size * model.hidden_size / tp * 2  # vocab-parallel across TP ranks
    if pp == 1:
        emb = vocab_shard * (1 if model.tie_word_embeddings else 2)
    else:  # embedding on the first stage, LM head on the last: the worst stage holds one of them
        emb = vocab_shard
    return linear + small + emb


def activation_bytes(model: ModelSpec, cand: Candidate) -> float:
    """Peak activations of the engine's profiling forward pass at max_num_batched_tokens, plus the
    sampler's fp32 logits at max_num_seqs."""
    tokens = cand.max_num_batched_tokens if cand.chunked_prefill else max(
        cand.max_num_batched_tokens, cand.max_model_len)
    inter = model.intermediate_size * (model.experts_per_token if model.is_moe else 1)
    per_token = (4 * inter / cand.tp + 4 * model.hidden_size) * ACT_BYTES
    logits = min(cand.max_num_seqs, tokens) * model.vocab_size / cand.tp * 4
    return tokens * per_token + logits


def pinned_kv_cache_bytes(model: ModelSpec, gpu: GPUSpec, engine: EngineConfig, cand: Candidate,
                          traffic: Traffic) -> int:
    """The planned KV cache per GPU in bytes, whole blocks: given as vLLM's --kv-cache-memory-bytes it yields
    exactly the plan's KV tokens (vLLM divides it by the bytes of one block across the layers)."""
    mem = memory_breakdown(model, gpu, engine, cand, traffic)
    return round(mem.kv_tokens * mem.kv_bytes_per_token)


def load_peak_bytes(model: ModelSpec, cand: Candidate, engine: str) -> float:
    """Weights on one GPU while the engine loads them. A checkpoint the engine quantizes while loading (online
    `--quantization fp8` on bf16 weights): vLLM 0.26.0 quantizes layer by layer, measured on an H200 with
    dummy weights (docs/launch-safety.md): peak 71.7 GiB for Llama-3.1-70B (67.7 GiB FP8 after loading),
    48.5 GiB for Mixtral-8x7B (43.8 GiB), so the peak is taken as the FP8 weights plus two layers in bf16.
    SGLang's and TGI's loads are not measured: they are assumed to hold the bf16 weights whole."""
    ckpt = cand.checkpoint or checkpoint_for(model, cand.weight_dtype, engine)
    quantized = weight_bytes_per_gpu(model, cand.tp, cand.pp, cand.weight_dtype)
    if ckpt is None or not ckpt.engine_quantizes:
        return quantized
    if engine == "vllm":
        layer_bf16 = linear_params_per_gpu_per_layer(model, cand.tp) * 2
        return quantized + 2 * layer_bf16
    return weight_bytes_per_gpu(model, cand.tp, cand.pp, "bf16")


def start_problems(model: ModelSpec, cand: Candidate, engine: str | None = None,
                   gpu: GPUSpec | None = None) -> list[str]:
    """Configuration rules the engines check at start, independent of memory (with the engine and GPU: theirs too)."""
    out = []
    if (engine == "vllm" and gpu is not None and gpu.arch == "hopper" and cand.weight_dtype == "fp16"
            and cand.kv_cache_dtype == "fp8"):
        # FlashAttention 3 quantizes the queries to FP8 over an FP8 cache and then needs a bf16 output: vLLM 0.26.0
        # stopped at its first forward pass with --dtype float16 (session 21, docs/launch-safety.md)
        out.append("vLLM's FlashAttention 3 on Hopper cannot pair float16 activations with an FP8 KV cache (it "
                   "needs a bf16 output); use bf16 weights or kv_cache_dtype auto")
    if not model.shards_at(cand.tp):
        out.append(f"TP{cand.tp} does not divide the {model.num_attention_heads} attention / "
                   f"{model.num_kv_heads} KV heads")
    if cand.max_num_batched_tokens < cand.max_num_seqs:
        out.append(f"max_num_batched_tokens ({cand.max_num_batched_tokens}) is below max_num_seqs "
                   f"({cand.max_num_seqs})")
    if not cand.chunked_prefill and cand.max_num_batched_tokens < cand.max_model_len:
        out.append(f"without chunked prefill max_num_batched_tokens ({cand.max_num_batched_tokens}) must hold "
                   f"a whole max_model_len ({cand.max_model_len}) prompt")
    if cand.pp > model.num_layers:
        out.append(f"PP{cand.pp} exceeds the {model.num_layers} layers")
    return out


def memory_breakdown(model: ModelSpec, gpu: GPUSpec, engine: EngineConfig, cand: Candidate,
                     traffic: Traffic) -> MemoryBreakdown:
    capacity = gpu.usable_gib * 2**30
    weights = weight_bytes_per_gpu(model, cand.tp, cand.pp, cand.weight_dtype)
    acts = activation_bytes(model, cand)
    reserve = (engine.non_torch_memory_gb + engine.cuda_graph_memory_gb) * GB
    if engine.name == "trtllm":
        budget = capacity
        kv = (capacity - weights - acts - reserve) * engine.kv_free_memory_fraction
    elif engine.name == "sglang":
        budget = capacity * cand.gpu_memory_utilization
        kv = budget - weights
        if budget + acts + reserve > capacity:
            kv = min(kv, capacity - weights - acts - reserve)
    else:  # vLLM, TGI: CUDA graphs are captured after the KV cache is sized, in the headroom above the budget
        budget = capacity * cand.gpu_memory_utilization
        kv = budget - weights - acts - engine.non_torch_memory_gb * GB
    kv_per_token = kv_bytes_per_token_per_gpu(model, cand.tp, cand.pp, cand.kv_cache_dtype)
    block = max(1, engine.kv_block_size)
    kv_tokens = max(0, int(kv // kv_per_token) // block * block) if kv > 0 else 0
    seq_tokens = traffic.input_len.mean + traffic.output_len.mean
    max_seqs = int(kv_tokens // seq_tokens) if seq_tokens > 0 else 0

    reason = "; ".join(start_problems(model, cand, engine.name, gpu))
    load_peak = load_peak_bytes(model, cand, engine.name)
    if reason:
        pass
    elif load_peak > weights and load_peak + engine.non_torch_memory_gb * GB > capacity:
        reason = (f"the engine quantizes the bf16 checkpoint while loading it and needs {load_peak / GB:.1f} GB "
                  f"per GPU for that, more than the {capacity / GB:.1f} GB of a {gpu.display_name}; a "
                  f"pre-quantized {cand.weight_dtype} checkpoint avoids this (--checkpoint {cand.weight_dtype}=PATH)")
    elif weights > budget:
        reason = (f"weights need {weights / GB:.1f} GB per GPU at {cand.weight_dtype} with TP{cand.tp}"
                  f"{f' PP{cand.pp}' if cand.pp > 1 else ''}, more than the {budget / GB:.1f} GB "
                  f"the engine may use on a {gpu.display_name}")
    elif kv <= 0:
        reason = (f"weights ({weights / GB:.1f} GB) + activations and engine reserve "
                  f"({(acts + reserve) / GB:.1f} GB) leave no room for the KV cache")
    elif kv_tokens < cand.max_model_len:
        reason = (f"the KV cache holds {kv_tokens:,} tokens, less than one {cand.max_model_len:,}-token "
                  f"sequence (max_model_len)")
    elif engine.name in ("vllm", "tgi") and capacity - budget < engine.cuda_graph_memory_gb * GB:
        reason = (f"CUDA graphs ({engine.cuda_graph_memory_gb:.1f} GB) do not fit in the "
                  f"{(capacity - budget) / GB:.1f} GB above gpu_memory_utilization {cand.gpu_memory_utilization:g}")
    return MemoryBreakdown(
        capacity_gb=capacity / GB, budget_gb=budget / GB, weights_gb=weights / GB,
        activations_gb=acts / GB, reserve_gb=reserve / GB, kv_cache_gb=kv / GB,
        kv_bytes_per_token=kv_per_token, kv_tokens=kv_tokens, max_concurrent_seqs=max_seqs,
        fits=not reason, reason=reason,
    )
