"""Step time of one engine iteration (prefill, decode or mixed), from a hardware profile.

Per pipeline stage: linear layers take max(FLOPs / achieved GEMM rate at this many tokens, weight bytes /
achieved bandwidth); decode attention reads the KV cache at the achieved attention bandwidth; prefill
attention is causal FLOPs at the achieved attention rate; tensor parallelism adds two all-reduces per layer
over the actual link; a fixed and a per-sequence CPU cost are added per step (scheduling, sampling,
launches). Weight-only int4 (AWQ/GPTQ) and weight-only FP8 (GPUs without FP8 tensor cores) shrink the
bytes, so memory-bound decode speeds up, while compute-bound prefill runs at the bf16 rate (slightly worse,
dequantizing). Every term records where its number came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from serveplan.planner.catalog import quant_method
from serveplan.planner.memory import kv_bytes_per_token_per_gpu, kv_heads_per_gpu, linear_params_per_gpu_per_layer
from serveplan.planner.profiles import KERNEL_TABLES, Calibration, HardwareProfile
from serveplan.planner.spec import W4A16_TERM_NAMES, Candidate, EngineConfig, Inventory, ModelSpec

# Weight-only int4 (AWQ, GPTQ): how its kernels fall short of a bf16 GEMM's rate and bandwidth, and their fixed cost
# per layer, are engine terms (EngineConfig.w4a16_*; vLLM's solved on its Machete kernel, session 17).
W4A16_DTYPES = ("awq", "gptq")
ZERO_POINT_DTYPES = ("awq",)  # asymmetric int4 weights (serveplan quantize writes AWQ as W4A16_ASYM)

# Below this many tokens a linear layer is memory-bound: its time is weight bytes / bandwidth, and the
# profile's GEMM curve is used only for the compute-bound side (its small-M points are isolated kernels,
# slower than an engine's fused, graph-captured layers and not monotone between measured points).
GEMM_COMPUTE_KNEE_TOKENS = 256
# Weight formats whose GEMMs quantize their activations first (W8A8): more kernels per layer
# (EngineConfig.act_quant_us_per_layer).
W8A8_DTYPES = ("fp8", "int8")
ELEMENTWISE_BYTES_PER_TOKEN_PER_HIDDEN = 24
# Pipeline bubbles: micro-batches of unequal size and stage imbalance idle some stages (vLLM runs pp
# virtual engines); each extra stage costs this share of the step.
PP_BUBBLE_PER_STAGE = 0.08  # norms, rotary, activation, residual: reads + writes per layer
# Weight-only int4 kernels tile the tokens at 16 at least (vLLM's Machete: a 128x16 or 256x16 tile for M = 1-16; Marlin
# likewise): below 16 tokens each weight tile is dequantized and multiplied as for 16, so the un-hidden part of the
# kernel's math (w4a16_overlap) stops shrinking there.
W4A16_MIN_TOKENS = 16
# bitsandbytes NF4 (vLLM 0.26 `--quantization bitsandbytes`, TGI `--quantize bitsandbytes-nf4`): both call
# bitsandbytes' matmul_4bit, which for one token runs its gemv_4bit kernel on the packed weights and for more
# than one dequantizes the whole weight to bf16 and runs a bf16 GEMM. So one token reads the 4-bit bytes (at
# W4A16's efficiency, an assumption: no bnb kernel was measured here); more tokens also write and read the
# dequantized bf16 copy (4 bytes per weight), slower than bf16 itself; and the GEMM runs at the bf16 rate with
# the dequantize kernel's launch and the weight-only penalty on top (W4A16's, assumed). Not measured on a GPU.
# The dequantize pass runs before the GEMM, not overlapped with it: its time is added, not max()-ed.
BNB_COMPUTE_PENALTY = 1.15  # EngineConfig.w4a16_compute_penalty's default (Marlin's published ~3.8x at batch 1-16)
BNB_BANDWIDTH_PENALTY = 1.05  # ... and w4a16_bandwidth_penalty's


def engine_w4a16_holds(engine: EngineConfig, arch: str) -> bool:
    """Whether the engine's own W4A16 terms hold on a GPU of this architecture (w4a16_archs; vLLM's Machete kernel
    runs on Hopper alone, Marlin elsewhere)."""
    return not engine.w4a16_archs or arch in engine.w4a16_archs


def w4a16_terms(engine: EngineConfig, arch: str, weight_dtype: str = "gptq") -> dict[str, float]:
    """The engine's W4A16 terms on a GPU of this architecture: its own where they hold (an AWQ checkpoint's zero-point
    variant where measured apart: engine.w4a16_zero_point), the published Marlin numbers (the defaults) on others."""
    if not engine_w4a16_holds(engine, arch):
        return {k: EngineConfig.model_fields[k].default for k in W4A16_TERM_NAMES}
    own = {k: getattr(engine, k) for k in W4A16_TERM_NAMES}
    return {**own, **engine.w4a16_zero_point} if weight_dtype in ZERO_POINT_DTYPES else own


def cudagraph_tokens(engine: EngineConfig, cand: Candidate) -> int:
    """The largest step (tokens) that runs in CUDA graphs; 0: no limit is modelled."""
    graphs = engine.cudagraph_max_tokens
    if not graphs:
        return 0
    if cand.max_cudagraph_capture_size:  # captured up to the size asked for
        return min(cand.max_cudagraph_capture_size, cand.max_num_batched_tokens)
    return min(2 * cand.max_num_seqs, graphs, cand.max_num_batched_tokens)  # the engine's default


def compute_dtype(weight_dtype: str, inventory: Inventory) -> str:
    """The tensor-core dtype the linear layers run in for a weight precision on this GPU."""
    gpu = inventory.gpu
    if weight_dtype == "fp8" and gpu.has_fp8_tensor_cores:
        return "fp8"
    if weight_dtype == "int8" and gpu.has_int8_tensor_cores:
        return "int8"
    return "bf16"


def weight_only(weight_dtype: str, inventory: Inventory) -> bool:
    return weight_dtype in (*W4A16_DTYPES, "bnb-nf4") or (
        weight_dtype in ("fp8", "int8") and compute_dtype(weight_dtype, inventory) == "bf16")


@dataclass
class StepModel:
    """Precomputed per-candidate terms; `step_ms` is called many times by the serving model."""

    model: ModelSpec
    inventory: Inventory
    engine: EngineConfig
    cand: Candidate
    profile: HardwareProfile
    calib: Calibration | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, c, gpu, prof = self.model, self.cand, self.inventory.gpu, self.profile
        self.layers = math.ceil(m.num_layers / c.pp)
        bpw = quant_method(c.weight_dtype).bytes_per_weight
        lin_params_layer = linear_params_per_gpu_per_layer(m, c.tp)
        lm_head = m.vocab_size * m.hidden_size / c.tp
        self.lin_params = self.layers * lin_params_layer
        self.lm_head_bytes = lm_head * 2  # bf16 whatever the weights' precision
        # FLOPs per token: active linear params (MoE: routed experts only) + LM head, per GPU.
        attn_lin = (2 * m.hidden_size * m.num_attention_heads * m.head_dim / c.tp
                    + 2 * m.hidden_size * kv_heads_per_gpu(m, c.tp) * m.head_dim)
        self.flops_per_token = 2 * (self.layers * (attn_lin + m.active_mlp_params_per_layer / c.tp) + lm_head)
        self.dense_bytes = self.layers * attn_lin * bpw + lm_head * 2
        self.expert_bytes = self.layers * (m.mlp_params_per_layer / c.tp) * bpw
        self._bpw = bpw
        self.dense_lin_params = self.layers * attn_lin  # quantized linear weights (bnb dequantizes them)
        self.expert_params = self.layers * (m.mlp_params_per_layer / c.tp)
        self.kv_bytes_per_token = kv_bytes_per_token_per_gpu(m, c.tp, c.pp, c.kv_cache_dtype)
        # decode attention over an FP8 cache also converts every element it reads (engine.fp8_kv_convert_gbs)
        self.fp8_kv_convert_bps = (self.engine.fp8_kv_convert_gbs * 1e9
                                   if c.kv_cache_dtype == "fp8" and self.engine.fp8_kv_convert_gbs else 0.0)
        # ... and, once the batch fills the GPU, reads each sequence's KV head in one block: the longest context
        # sets the pace (engine.fp8_kv_seq_gbs)
        self.fp8_kv_seq_bps = (self.engine.fp8_kv_seq_gbs * 1e9
                               if c.kv_cache_dtype == "fp8" and self.engine.fp8_kv_seq_gbs else 0.0)
        self.kv_heads = kv_heads_per_gpu(m, c.tp)
        self.cdtype = compute_dtype(c.weight_dtype, self.inventory)
        self.weight_only = weight_only(c.weight_dtype, self.inventory)
        scale_bw = self.calib.bandwidth_scale if self.calib else 1.0
        self.seq_layer_us = self.calib.seq_layer_us if self.calib else 0.0
        self.att_scale = (scale_bw if not self.calib or self.calib.attention_scale is None
                          else self.calib.attention_scale)
        self.compute_scale = self.calib.compute_scale if self.calib else 1.0
        self.prefill_scale = self.calib.prefill_scale if self.calib else 1.0
        self.bw = prof.memory_bandwidth_gbs * 1e9 * scale_bw
        self.peak_bf16 = gpu.tflops.get("bf16", gpu.tflops.get("fp16", 100.0)) * 1e12
        if self.calib and self.calib.step_overhead_ms is not None:
            self.overhead_ms = self.calib.step_overhead_ms
            self.per_seq_us = self._calibrated("per_seq_overhead_us")
            over_src = "calibrated"
        else:
            self.overhead_ms, self.per_seq_us, over_src = self.engine.step_overhead_ms, \
                self.engine.per_seq_overhead_us, "assumed"
        self.prefill_seq_ms = self._calibrated("prefill_seq_overhead_ms")
        self.max_stream_tok_s = (self.calib.max_stream_tok_s if self.calib and self.calib.max_stream_tok_s
                                 else self.engine.max_stream_tok_s)
        self.request_overhead_ms = self._calibrated("request_overhead_ms")
        self.api_servers = c.api_server_count  # the front end's work is shared among them (frontend.py)
        self.graph_tokens = cudagraph_tokens(self.engine, c)
        self.eager_ms = self._calibrated("eager_step_ms")
        self.idle_floor_ms = self.engine.idle_step_floor_ms  # the first step on an idle engine (simulation, serving)
        # a step beyond the graphs launches every kernel from the host: at least this long, whatever the GPU does
        per_layer_us = (self.engine.eager_moe_layer_us or self.engine.eager_layer_us) if m.is_moe \
            else self.engine.eager_layer_us
        self.eager_floor_ms = self.layers * c.pp * per_layer_us / 1000.0
        self.tokenize_us = self.engine.tokenize_us_per_token
        # fp8 on a GPU without fp8 tensor cores is weight-only (W8A16): no activations to quantize
        self.w8a8 = c.weight_dtype in W8A8_DTYPES and not self.weight_only
        self.w4a16 = c.weight_dtype in W4A16_DTYPES
        self.w4 = w4a16_terms(self.engine, gpu.arch, c.weight_dtype)
        self.layer_us = self.engine.step_us_per_layer + (self.engine.act_quant_us_per_layer if self.w8a8 else 0.0) \
            + (self.w4["w4a16_layer_us"] if self.w4a16 else 0.0)
        # the engine's own W8A8 GEMM kernel against the profile's FP8 one, by M (measured, in the calibration); an
        # INT8 table moves INT8 layers onto the profile's FP8 curve (one tensor-core peak on Hopper; torch._int_mm,
        # the profile's int8 curve, is far slower than the engine's INT8 kernel)
        table = KERNEL_TABLES.get(self.cdtype)
        self.gemm_table = getattr(self.calib, table) if self.calib and self.w8a8 and table else None
        self.gemm_curve = "fp8" if self.cdtype == "int8" and self.gemm_table is not None else self.cdtype
        self.moe_layer_us = self.engine.moe_layer_us + (self.engine.moe_act_quant_us_per_layer if self.w8a8 else 0.0)
        # INT8 and int4 experts run slower fused kernels than the dense terms give them: INT8's against FP8's, int4's
        # (Marlin WNA16 MoE) against the dense W4A16 GEMMs' rate (engine.moe_*_compute_penalty; benchmarks/moe_quant.py)
        self.moe_compute_penalty = 1.0
        # INT8 experts with a measured kernel table: the FP8 experts' modelled time times the engine's INT8 kernel
        # over its FP8 one at the step's tokens (calibration.moe_int8_kernel); the engine's one penalty without it
        int8_experts = m.is_moe and self.w8a8 and c.weight_dtype == "int8"
        self.moe_kernel = (self.calib.moe_int8_table(m.num_experts, m.intermediate_size // c.tp)
                           if self.calib and int8_experts else None)
        if int8_experts and self.moe_kernel is None:
            self.moe_compute_penalty = self.engine.moe_int8_compute_penalty
        elif m.is_moe and self.w4a16:  # one of the W4A16 terms: 1 where the published Marlin numbers stand in
            self.moe_compute_penalty = self.w4["moe_w4a16_compute_penalty"]
        self.frontend_ms_per_ktok_s = self.engine.frontend_ms_per_ktok_s
        # Interconnect: TP stays inside a node (the search keeps it there); PP may cross nodes.
        self.link_bw = gpu.intra_node_bw_gbs * 1e9 * 0.7
        self.link_alpha_us = 8.0 if gpu.interconnect == "nvlink" else 25.0
        self.pp_bw = (self.inventory.inter_node_bw_gbs * 1e9 * 0.8 if self.inventory.nodes > 1
                      else self.link_bw)
        _, gemm_src = prof.gemm_tflops(self.gemm_curve, 256)
        self.sources = {
            "gemm": gemm_src,
            "bandwidth": "datasheet" if prof.kind == "datasheet" else "measured",
            "attention": ("datasheet" if prof.kind == "datasheet" else
                          "measured" if prof.decode_attention else "extrapolated"),
            "allreduce": ("none" if c.tp == 1 else
                          ("measured" if c.tp in prof.allreduce else "datasheet")),
            "overhead": over_src,
            # tokenizing the prompt and waiting behind the API server's other work (conf/engine/<engine>.yaml)
            "front_end": "measured" if self.tokenize_us or self.frontend_ms_per_ktok_s else "none",
            # the step's cost per layer (conf/engine/<engine>.yaml, solved from measured vLLM steps)
            "per_layer": "measured" if self.layer_us else "none",
            # host time per layer of a step beyond the CUDA graphs (conf/engine/<engine>.yaml, from c=1 prompts)
            "eager_floor": "measured" if self.eager_floor_ms else "none",
            # the first step on an idle engine (conf/engine/<engine>.yaml, from a short prompt alone on vLLM)
            "idle_floor": "measured" if self.idle_floor_ms else "none",
            "profile": prof.path,
        }
        if m.is_moe:  # routing and the fused expert kernels (conf/engine/<engine>.yaml, solved on Mixtral-8x7B FP8
            # and Qwen3-30B-A3B bf16)
            measured = self.moe_layer_us or self.engine.moe_compute_efficiency != 1.0
            self.sources["moe"] = "measured (Mixtral-8x7B FP8, Qwen3-30B-A3B bf16; H200)" if measured else "none"
            if self.moe_kernel is not None:  # the engine's INT8 expert kernel timed against its FP8 one
                moe_table, shape = self.moe_kernel
                where = f" on {moe_table.measured_on}, applied to this {gpu.arch} GPU" if moe_table.measured_on else ""
                self.sources["moe"] += f"; INT8 experts' kernel against FP8's by tokens measured{where} ({shape})"
            elif self.moe_compute_penalty != 1.0:  # the quantized experts' fused kernel, measured against FP8's
                kind, served = ("INT8", "INT8") if c.weight_dtype == "int8" else ("int4", "AWQ")
                self.sources["moe"] += (f"; {kind} experts' prompt rate measured (Mixtral-8x7B {served} against FP8; "
                                        "H200)")
        if c.kv_cache_dtype == "fp8":  # converting the FP8 cache beside reading it (conf/engine/<engine>.yaml)
            self.sources["fp8_kv"] = ("measured (8B, FP8 against bf16 KV, H200)" if self.fp8_kv_convert_bps
                                      else "bytes only")
            if self.fp8_kv_seq_bps:  # the wait for a batch's longest context (bursts of unequal prompts)
                self.sources["fp8_kv"] += "; unequal contexts measured (70B and 8B FP8, H200)"
        if self.gemm_table is not None:
            where = (f"measured on {self.gemm_table.measured_on}, applied to this {gpu.arch} GPU"
                     if self.gemm_table.measured_on else "measured")
            self.sources[table] = (f"{where} (the engine's {self.cdtype.upper()} GEMM kernel against the profile's "
                                   "FP8 one by tokens)")
        if self.w4a16:  # the int4 kernel's terms: solved on this engine's runs, or Marlin's published numbers
            measured = self.engine.w4a16_source and engine_w4a16_holds(self.engine, gpu.arch)
            self.sources["w4a16"] = (f"measured ({self.engine.w4a16_source})" if measured
                                     else "assumed (Marlin's published numbers)")
        if self.calib:
            self.sources["calibration"] = self.calib.describe()
        self._gemm_cache: dict[int, float] = {}
        self._att_cache: dict[int, float] = {}

    # -------------------------------------------------------------------------------------------- terms
    def _calibrated(self, term: str) -> float:
        """An engine term as the calibration fitted it, or the engine's default where it fitted none."""
        fitted = getattr(self.calib, term) if self.calib else None
        return getattr(self.engine, term) if fitted is None else fitted

    def _gemm_rate(self, tokens: int) -> float:
        """Achieved linear-layer FLOP/s at this many tokens."""
        r = self._gemm_cache.get(tokens)
        if r is None:
            t = max(tokens, GEMM_COMPUTE_KNEE_TOKENS)
            tflops, _ = self.profile.gemm_tflops(self.gemm_curve, t)
            r = tflops * 1e12 * self.compute_scale
            if self.w4a16:
                r /= self.w4["w4a16_compute_penalty"]
            elif self.cand.weight_dtype == "bnb-nf4":
                r /= BNB_COMPUTE_PENALTY
            self._gemm_cache[tokens] = r
        return r

    def _decode_att_bw(self, kv_tokens: int) -> float:
        r = self._att_cache.get(kv_tokens)
        if r is None:
            curve = self.profile.decode_attention
            r = curve.at(max(kv_tokens, 1))[0] * 1e9 if curve else 0.8 * self.profile.memory_bandwidth_gbs * 1e9
            r *= self.att_scale
            self._att_cache[kv_tokens] = r
        return r

    def _prefill_att_rate(self, seq: float) -> float:
        curve = self.profile.prefill_attention
        rate = curve.at(max(seq, 16))[0] * 1e12 if curve else 0.45 * self.peak_bf16
        return rate * self.prefill_scale

    def _allreduce_s(self, nbytes: float) -> float:
        tp = self.cand.tp
        measured = self.profile.collective_time_us("allreduce", tp, nbytes)
        if measured is not None:
            return measured[0] * 1e-6
        return self.link_alpha_us * 1e-6 + 2 * (tp - 1) / tp * nbytes / self.link_bw

    def _weight_read_bytes(self, tokens: float, experts: bool = True) -> float:
        """Weight bytes a step of `tokens` tokens reads (experts=False: without the MLP / expert weights)."""
        m = self.model
        frac = 0.0 if not experts else 1.0 if not m.is_moe else \
            1 - (1 - m.experts_per_token / m.num_experts) ** max(tokens, 1)
        b = self.dense_bytes + self.expert_bytes * frac  # MoE: experts touched by `tokens` routed tokens
        w = self.cand.weight_dtype
        if w == "bnb-nf4" and tokens > 1:  # the GEMM reads the dequantized bf16 copy (see _bnb_dequant_s)
            return b + (self.dense_lin_params + self.expert_params * frac) * (2.0 - self._bpw)
        if w == "bnb-nf4":
            return b * BNB_BANDWIDTH_PENALTY
        return b * (self.w4["w4a16_bandwidth_penalty"] if self.w4a16 else 1.0)

    def _moe_linear_s(self, tokens: float, t_int: int) -> float:
        """A MoE step's linear layers: the dense ones (attention projections, LM head) and the routed experts are
        separate kernels, each compute- or memory-bound on its own. The fused expert kernels reach only part of a
        dense GEMM's rate when compute-bound, and routing the tokens to their experts costs time per layer
        (engine.moe_compute_efficiency; engine.moe_layer_us, + moe_act_quant_us_per_layer for W8A8 weights:
        `benchmarks/accuracy.py --moe-term`)."""
        e = self.engine
        expert_flops = 2 * self.layers * self.model.active_mlp_params_per_layer / self.cand.tp * tokens
        rate = self._gemm_rate(t_int)
        read = self._weight_read_bytes(tokens)
        expert_read = read - self._weight_read_bytes(tokens, experts=False)
        dense = max((self.flops_per_token * tokens - expert_flops) / rate, (read - expert_read) / self.bw)
        dense *= self._kernel_factor(t_int, read - expert_read)  # the fused expert kernels are not those GEMMs
        experts = max(expert_flops * self.moe_compute_penalty / (rate * e.moe_compute_efficiency),
                      expert_read / self.bw)
        if self.moe_kernel is not None:  # INT8 experts: FP8's time times the engine's kernel ratio at these tokens
            experts *= self.moe_kernel[0].at(t_int)
        return dense + experts + self.layers * self.moe_layer_us * 1e-6

    def _kernel_factor(self, t_int: int, read: float) -> float:
        """The engine's W8A8 GEMMs' time over the profile kernel's at t_int tokens, spread over linear layers that
        read `read` bytes of which the LM head's stay bf16: 1.0 without a measured table (calibration.fp8_gemm,
        int8_gemm)."""
        if self.gemm_table is None or read <= self.lm_head_bytes:
            return 1.0
        return 1.0 + (self.gemm_table.at(t_int) - 1.0) * (read - self.lm_head_bytes) / read

    def _bnb_dequant_s(self, tokens: float) -> float:
        """bitsandbytes' dequantize pass before each matmul of more than one token: read the 4-bit weights,
        write them as bf16."""
        m = self.model
        frac = 1.0 if not m.is_moe else 1 - (1 - m.experts_per_token / m.num_experts) ** max(tokens, 1)
        params = self.dense_lin_params + self.expert_params * frac
        return params * (self._bpw + 2.0) / self.bw

    def decode_attention_s(self, decode_ctx: float, decode_seqs: float = 0.0, longest_ctx: float = 0.0) -> float:
        """Seconds of one stage's decode attention over decode_ctx cached tokens: reading their K/V, and, for an FP8
        cache, converting each element (one byte each) at engine.fp8_kv_convert_gbs. With the batch's size and its
        longest context, an FP8 cache's batch that fills the GPU also waits for its longest sequence beyond the mean
        (engine.fp8_kv_seq_gbs; 0 and equal contexts add nothing)."""
        t = decode_ctx * self.kv_bytes_per_token / self._decode_att_bw(int(decode_ctx))
        if self.fp8_kv_convert_bps:
            t += decode_ctx * self.kv_bytes_per_token / self.fp8_kv_convert_bps
        if (self.fp8_kv_seq_bps and decode_seqs > 0 and longest_ctx > decode_ctx / decode_seqs
                and decode_seqs * self.kv_heads >= self.engine.fp8_kv_unsplit_from):
            beyond_mean = longest_ctx - decode_ctx / decode_seqs  # tokens the longest holds beyond the mean
            t += beyond_mean * self.kv_bytes_per_token / self.kv_heads / self.fp8_kv_seq_bps
        return t

    def request_ms(self, prompt_tokens: float, tokens_per_s: float) -> float:
        """Time a request spends outside the engine steps before its first token, in ms: the fixed part,
        tokenizing its prompt, and waiting behind the front end's other work at tokens_per_s (prompt + output
        tokens/s through this replica, shared among its API servers)."""
        return (self.request_overhead_ms + self.tokenize_us * prompt_tokens / 1000.0
                + self.frontend_ms_per_ktok_s * tokens_per_s / self.api_servers / 1000.0)

    # -------------------------------------------------------------------------------------------- step
    def stage_s(self, decode_seqs: float, decode_ctx: float, prefill_tokens: float,
                prefill_work: float, longest_ctx: float = 0.0) -> float:
        """Seconds for one pipeline stage to run one micro-batch (no CPU overhead)."""
        tokens = decode_seqs + prefill_tokens
        if tokens <= 0:
            return 0.0
        t_int = max(1, int(tokens))
        if self.model.is_moe:
            t_lin = self._moe_linear_s(tokens, t_int)
        else:
            read = self._weight_read_bytes(tokens)
            math_tokens = max(tokens, W4A16_MIN_TOKENS) if self.w4a16 else tokens
            math_s, read_s = self.flops_per_token * math_tokens / self._gemm_rate(t_int), read / self.bw
            t_lin = max(math_s, read_s)
            if self.w4a16:  # int4 kernels dequantize in their main loop: part of the shorter side is not hidden
                t_lin += (1.0 - self.w4["w4a16_overlap"]) * min(math_s, read_s)
            t_lin *= self._kernel_factor(t_int, read)
        if self.cand.weight_dtype == "bnb-nf4" and tokens > 1:
            t_lin += self._bnb_dequant_s(tokens)
        t_att = 0.0
        if decode_seqs > 0 and decode_ctx > 0:
            t_att += self.decode_attention_s(decode_ctx, decode_seqs, longest_ctx)
        if prefill_tokens > 0:
            m = self.model
            heads = m.num_attention_heads / self.cand.tp
            flops = 4 * heads * m.head_dim * self.layers * max(prefill_work, prefill_tokens)
            t_att += flops / self._prefill_att_rate(prefill_tokens)
            # The new tokens' K/V are written, and chunks read the cached prefix too.
            t_att += prefill_tokens * self.kv_bytes_per_token / self.bw
        t_ew = tokens * self.model.hidden_size * ELEMENTWISE_BYTES_PER_TOKEN_PER_HIDDEN * self.layers / self.bw
        t_comm = 0.0
        if self.cand.tp > 1:
            t_comm = 2 * self.layers * self._allreduce_s(tokens * self.model.hidden_size * 2)
        t_layers = self.layers * (self.layer_us + self.seq_layer_us * decode_seqs) * 1e-6
        return t_lin + t_att + t_ew + t_comm + t_layers

    def step_ms(self, decode_seqs: float, decode_ctx: float, prefill_tokens: float = 0.0,
                prefill_work: float = 0.0, prefill_seqs: float = 0.0, longest_ctx: float = 0.0) -> float:
        """Wall time between two tokens of a running sequence for this batch composition, in ms.

        decode_seqs: sequences generating a token this step; decode_ctx: their summed context (KV tokens);
        prefill_tokens: prompt tokens processed this step; prefill_work: sum over prompt chunks of
        chunk x (cached prefix + chunk/2), the causal attention work; prefill_seqs: prompts in the step;
        longest_ctx: the longest context among the decoding sequences (0: all at the mean).
        """
        pp = self.cand.pp
        if pp == 1:
            t = self.stage_s(decode_seqs, decode_ctx, prefill_tokens, prefill_work, longest_ctx)
        else:  # pp micro-batches in flight: a sequence's token passes every stage once
            t = pp * self.stage_s(decode_seqs / pp, decode_ctx / pp, prefill_tokens / pp, prefill_work / pp,
                                  longest_ctx)
            t *= 1 + PP_BUBBLE_PER_STAGE * (pp - 1)
            t += (pp - 1) * (self.link_alpha_us * 1e-6 + (decode_seqs + prefill_tokens) / pp
                             * self.model.hidden_size * 2 / self.pp_bw)
        cpu = (self.overhead_ms + self.per_seq_us * (decode_seqs + prefill_seqs) / 1000.0
               + self.prefill_seq_ms * prefill_seqs)
        eager = bool(self.graph_tokens) and decode_seqs + prefill_tokens > self.graph_tokens
        if eager:
            cpu += self.eager_ms  # beyond the captured CUDA graphs: the step runs eagerly
        step = t * 1000.0 + cpu
        if eager:  # ... and the host launches its kernels one by one: the GPU waits on it when it is the slower
            step = max(step, self.eager_floor_ms)
        if self.max_stream_tok_s:  # the front end streams at most this many tokens/s: a floor on the step
            step = max(step, decode_seqs / (self.max_stream_tok_s * self.api_servers) * 1000.0)
        return step
