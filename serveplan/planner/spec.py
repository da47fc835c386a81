"""The request a plan answers: frozen, fully resolved pydantic models.

Everything the planner reads comes in through these types, built once at the edge (Hydra config + CLI) and
never mutated: change one by `model_copy(update=...)`. Planner functions take them and return values.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, ValidationError, ValidationInfo, field_validator,
                      model_validator)

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "awq", "gptq", "bnb-nf4"]
"""Weight precision: bf16/fp16 unquantized; fp8 (W8A8 where the tensor cores have FP8, else weight-only);
int8 (W8A8 SmoothQuant-style); awq / gptq (4-bit weight-only, group size 128); bnb-nf4 (bitsandbytes 4-bit
NormalFloat, blocks of 64, quantized by the engine while loading the bf16 checkpoint; searched only when named
in search.allowed_quant)."""
KVDtype = Literal["auto", "fp8"]
"""KV-cache dtype as the engines name it: auto = the activation dtype (bf16/fp16), fp8 = e4m3."""
EngineName = Literal["vllm", "trtllm", "sglang", "tgi"]
Percentile = Literal["p50", "p90", "p99"]
ALL_WEIGHT_DTYPES: tuple[WeightDtype, ...] = ("bf16", "fp16", "fp8", "int8", "awq", "gptq")
"""The precisions searched by default. bnb-nf4 is opt-in (search.allowed_quant=[bnb-nf4,...]): it is slower than
bf16 at batch > 1 (bitsandbytes dequantizes the whole weight to bf16 for every matmul of more than one token)
and less accurate than AWQ/GPTQ at the same size, so it only wins where nothing else fits and no pre-quantized
4-bit checkpoint can be had."""
VLLM_GPU_MEMORY_UTILIZATION = 0.92
"""vLLM 0.26.0's own default, the default engine's: what a Candidate or EngineConfig built in Python gets, and
what conf/engine/vllm.yaml says (a test keeps them equal); plans take the value from the engine's conf."""


# The engine's weight-only int4 terms (EngineConfig.w4a16_*), which w4a16_zero_point may set apart for AWQ
W4A16_TERM_NAMES = ("w4a16_layer_us", "w4a16_bandwidth_penalty", "w4a16_compute_penalty", "w4a16_overlap",
                    "moe_w4a16_compute_penalty")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------- model
class ModelSpec(Frozen):
    """Architecture numbers of a decoder-only transformer, as its Hugging Face config.json gives them."""

    name: str = Field(description="Canonical catalog name, e.g. llama-3.1-70b.")
    hf_id: str | None = Field(default=None, description="Hugging Face repository id.")
    aliases: tuple[str, ...] = Field(default=(), description="Short names that also select this model.")
    architecture: str = Field(default="LlamaForCausalLM", description="HF architectures[0].")
    num_layers: int = Field(gt=0, description="num_hidden_layers.")
    hidden_size: int = Field(gt=0, description="Model width (hidden_size).")
    intermediate_size: int = Field(gt=0, description="MLP width (per expert for MoE models).")
    num_attention_heads: int = Field(gt=0, description="Query heads per layer.")
    num_kv_heads: int = Field(gt=0, description="num_key_value_heads (GQA); equals heads for MHA.")
    head_dim: int = Field(gt=0, description="Width of one attention head.")
    vocab_size: int = Field(gt=0, description="Tokenizer vocabulary (embedding and LM-head rows).")
    tie_word_embeddings: bool = Field(default=False, description="LM head shares the input embedding's weights.")
    num_experts: int = Field(default=0, ge=0, description="Routed experts per MoE layer; 0 for dense.")
    experts_per_token: int = Field(default=0, ge=0, description="Experts each token is routed to.")
    gated_mlp: bool = Field(default=True, description="SwiGLU/GeGLU MLP with 3 matrices (else 2).")
    qkv_bias: bool = Field(default=False, description="Q/K/V projections carry a bias (Qwen2).")
    max_position_embeddings: int = Field(default=8192, gt=0, description="Longest context the model supports.")
    checkpoints: dict[str, str] = Field(default_factory=dict, description="Your own checkpoints by weight "
                                        "method (awq: ./llama-awq or an HF id): they take precedence over the "
                                        "published ones in conf/checkpoints.yaml.")

    @model_validator(mode="before")
    @classmethod
    def _ignore_sliding_window(cls, data):  # noqa: ANN001, ANN206
        # Plans and model files written while ModelSpec had a sliding_window field (never used by the memory
        # model, so removed) still carry the key; they load as before.
        if isinstance(data, dict) and "sliding_window" in data:
            data = {k: v for k, v in data.items() if k != "sliding_window"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_kv_heads ({self.num_kv_heads})")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ValueError("experts_per_token must be in 1..num_experts for a MoE model")
        return self

    # Parameter counts are derived from the architecture, never typed by hand.
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attn_params_per_layer(self) -> int:
        q = self.hidden_size * self.num_attention_heads * self.head_dim
        kv = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        o = self.num_attention_heads * self.head_dim * self.hidden_size
        bias = (self.num_attention_heads + 2 * self.num_kv_heads) * self.head_dim if self.qkv_bias else 0
        return q + kv + o + bias

    @property
    def mlp_params_per_expert(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def mlp_params_per_layer(self) -> int:
        if not self.is_moe:
            return self.mlp_params_per_expert
        router = self.hidden_size * self.num_experts
        return self.num_experts * self.mlp_params_per_expert + router

    @property
    def active_mlp_params_per_layer(self) -> int:
        if not self.is_moe:
            return self.mlp_params_per_expert
        return self.experts_per_token * self.mlp_params_per_expert + self.hidden_size * self.num_experts

    @property
    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the LM head (shared when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def layer_params(self) -> int:
        return self.attn_params_per_layer + self.mlp_params_per_layer + self.norm_params_per_layer

    @property
    def total_params(self) -> int:
        return self.num_layers * self.layer_params + self.embedding_params + self.hidden_size

    @property
    def active_params(self) -> int:
        """Parameters a token touches in one forward pass (the matmul FLOPs count 2 x this per token)."""
        per_layer = self.attn_params_per_layer + self.active_mlp_params_per_layer
        return self.num_layers * per_layer + self.vocab_size * self.hidden_size  # LM head, not the lookup

    def shards_at(self, tp: int) -> bool:
        """Engines shard whole heads: TP divides the attention heads, and divides the KV heads or (replicating
        them) is a multiple of them."""
        kv = self.num_kv_heads
        return not self.num_attention_heads % tp and (not kv % tp if tp <= kv else not tp % kv)

    def kv_bytes_per_token(self, bytes_per_elem: float) -> float:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_elem


# ---------------------------------------------------------------------------------------------- hardware
class GPUSpec(Frozen):
    """One GPU type, from its datasheet. FLOPS are dense (no sparsity), in TFLOP/s."""

    name: str = Field(description="Canonical name, e.g. a100-80gb-sxm.")
    display_name: str = Field(description="Name as the vendor writes it.")
    smi_name: str | None = Field(default=None, description="Name as nvidia-smi reports it (NVIDIA H100 80GB HBM3); "
                                 "with spaces as dashes, the nvidia.com/gpu.product node label of NVIDIA's GPU "
                                 "Feature Discovery, which the Kubernetes manifests select nodes by.")

    @property
    def k8s_product_label(self) -> str | None:
        """The nvidia.com/gpu.product value GPU Feature Discovery gives this GPU's nodes."""
        return self.smi_name.replace(" ", "-") if self.smi_name else None
    aliases: tuple[str, ...] = Field(default=(), description="Short names that also select this GPU.")
    arch: Literal["ampere", "ada", "hopper", "blackwell"] = Field(description="GPU architecture generation.")
    compute_capability: float = Field(description="CUDA compute capability, e.g. 8.0, 8.9, 9.0.")
    memory_gib: float = Field(gt=0, description="Device memory in GiB.")
    hbm_bandwidth_gbs: float = Field(gt=0, description="Peak memory bandwidth, GB/s.")
    tflops: dict[str, float] = Field(description="Dense peak TFLOP/s (TOP/s for int) per dtype: bf16, fp16, "
                                                 "fp8 (only where the tensor cores have FP8), int8, int4.")
    interconnect: Literal["nvlink", "pcie"] = Field(description="Intra-node GPU-to-GPU link.")
    nvlink_generation: int | None = Field(default=None, description="NVLink generation, where the part has NVLink.")
    intra_node_bw_gbs: float = Field(gt=0, description="GPU-to-GPU bandwidth per direction, GB/s.")
    pcie_generation: int = Field(default=4, description="PCIe generation of the host link.")
    tdp_w: int | None = Field(default=None, description="Board power, W.")
    price_per_hour_usd: float = Field(gt=0, description="Typical on-demand cloud price per GPU-hour.")
    price_source: str = Field(default="", description="Where the price came from.")
    usable_memory_gib: float | None = Field(default=None, gt=0, description="What the CUDA runtime reports as "
                                            "total memory (torch.cuda.mem_get_info), which the engines' "
                                            "utilization fractions multiply: 79.2 GiB on an H100 80GB.")

    @property
    def memory_gb(self) -> float:
        return self.memory_gib * 1.073741824

    @property
    def usable_gib(self) -> float:
        """Memory the engines see; datasheet GiB less ~1% (ECC, driver) where not measured."""
        return self.usable_memory_gib or self.memory_gib * 0.99

    @property
    def has_fp8_tensor_cores(self) -> bool:
        return "fp8" in self.tflops

    @property
    def has_int8_tensor_cores(self) -> bool:
        return "int8" in self.tflops


class Inventory(Frozen):
    """The GPUs the model may use: one GPU type, nodes x GPUs per node."""

    gpu: GPUSpec = Field(description="The GPU type (one per inventory).")
    nodes: int = Field(default=1, ge=1, le=64, description="Machines.")
    gpus_per_node: int = Field(default=1, ge=1, le=16, description="GPUs in each machine.")
    inter_node_bw_gbs: float = Field(default=50.0, gt=0, description="Per-node network bandwidth, GB/s "
                                     "(50 = 400 Gb/s InfiniBand / RoCE).")
    nvlink_multicast: bool | None = Field(default=None, validate_default=True, description=(
        "NVLink multicast (NVLS) is usable on the nodes. Unset: what the GPU can have (Hopper or later on NVLink; "
        "an A100's NVSwitch has none); true on a GPU without it is read as false. false: the artifacts turn off "
        "what needs it (vLLM's FlashInfer all-reduce fusion, which crashes TP>1 without it, NCCL NVLS, symmetric "
        "memory)."))

    @field_validator("nvlink_multicast")
    @classmethod
    def _multicast_as_the_gpu_allows(cls, value: bool | None, info: ValidationInfo) -> bool:
        # Session 25: a TP2 INT8 plan for 2x A100 rendered with multicast on crashed in vLLM's memory profile on
        # two H200s without it (FlashInfer's mnnvl all-reduce, then a CUTLASS TMA error). An A100 never has it, so
        # its plans now carry the off switches (no-ops on Ampere, where vLLM does not pick that fusion).
        gpu = info.data.get("gpu")
        capable = gpu is not None and gpu.arch in ("hopper", "blackwell") and gpu.interconnect == "nvlink"
        return capable if value is None else (value and capable)

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        n = f"{self.nodes}x{self.gpus_per_node}" if self.nodes > 1 else f"{self.gpus_per_node}"
        return f"{n}x {self.gpu.display_name}"


# ---------------------------------------------------------------------------------------------- traffic
class LengthDist(Frozen):
    """A token-length distribution. Sampled deterministically through its quantiles."""

    kind: Literal["fixed", "uniform", "normal", "lognormal", "choice"] = Field(default="lognormal", description="Distribution family.")
    mean: float = Field(default=512, gt=0, description="Mean length in tokens (fixed: the length).")
    std: float = Field(default=0, ge=0, description="Standard deviation (normal, lognormal).")
    min: int = Field(default=1, ge=1, description="Lengths are clipped to at least this.")
    max: int = Field(default=32768, ge=1, description="Lengths are clipped to at most this.")
    values: tuple[int, ...] = Field(default=(), description="choice: the lengths.")
    weights: tuple[float, ...] = Field(default=(), description="choice: their relative weights.")

    @model_validator(mode="after")
    def _check(self) -> "LengthDist":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.kind != "choice" and not self.min <= self.mean <= self.max:
            raise ValueError(f"mean ({self.mean:g}) must lie within min..max ({self.min}..{self.max}): lengths are "
                             f"clipped to that range, so this traffic would not be what you asked for")
        if self.kind == "choice":
            if not self.values or (self.weights and len(self.weights) != len(self.values)):
                raise ValueError("a choice distribution needs values (and as many weights, if given)")
        return self

    def quantile(self, q: float) -> float:
        """Length at quantile q in (0, 1), clipped to [min, max]."""
        from statistics import NormalDist

        if self.kind == "fixed":
            x = self.mean
        elif self.kind == "uniform":
            half = math.sqrt(3) * self.std
            x = self.mean - half + 2 * half * q
        elif self.kind == "normal":
            x = NormalDist(self.mean, max(self.std, 1e-9)).inv_cdf(q)
        elif self.kind == "lognormal":
            sigma2 = math.log1p((self.std / self.mean) ** 2)
            mu = math.log(self.mean) - sigma2 / 2
            x = math.exp(mu + math.sqrt(sigma2) * NormalDist().inv_cdf(q))
        else:
            w = self.weights or tuple(1.0 for _ in self.values)
            pairs = sorted(zip(self.values, w))
            total, acc = sum(w), 0.0
            x = pairs[-1][0]
            for v, wi in pairs:
                acc += wi / total
                if q <= acc + 1e-12:
                    x = v
                    break
        return float(min(max(x, self.min), self.max))

    def grid(self, n: int) -> list[float]:
        """n lengths at evenly spaced quantiles: an equal-weight sample of the distribution."""
        return [self.quantile((i + 0.5) / n) for i in range(n)]

    @property
    def upper(self) -> int:
        """The longest length worth provisioning for (P99.9, or max for bounded kinds)."""
        return int(math.ceil(self.quantile(0.999)))


class Traffic(Frozen):
    """What the endpoint is asked to serve: lengths and load."""

    name: str = Field(default="custom", description="Preset name.")
    description: str = Field(default="", description="What this traffic is.")
    input_len: LengthDist = Field(description="Prompt lengths, tokens.")
    output_len: LengthDist = Field(description="Output lengths, tokens.")
    arrival: Literal["poisson", "constant", "bursty", "closed"] = Field(
        default="poisson", description="Arrival process; closed = a fixed number of concurrent clients.")
    rate_rps: float | None = Field(default=None, gt=0, description="Arrival rate, requests/s (open loop).")
    concurrency: int | None = Field(default=None, ge=1, description="Concurrent clients (closed loop).")
    burstiness: float = Field(default=1.0, gt=0, description="Gamma shape of inter-arrival times for "
                              "bursty arrivals: 1 = Poisson, below 1 burstier.")
    prefix_share: float = Field(default=0.0, ge=0, le=1, description="Share of prompt tokens that hit a "
                                "cached common prefix (system prompt).")

    @model_validator(mode="after")
    def _check(self) -> "Traffic":
        if self.arrival == "closed" and self.concurrency is None:
            raise ValueError("closed-loop traffic needs concurrency")
        if self.arrival != "closed" and self.rate_rps is None and self.concurrency is None:
            raise ValueError("traffic needs rate_rps (open loop) or concurrency (closed loop)")
        return self

    @property
    def is_closed_loop(self) -> bool:
        return self.arrival == "closed" or self.rate_rps is None

    def share_longer_than(self, tokens: int, n: int = 2000) -> float:
        """The share of requests whose prompt + output exceed `tokens`, over an n x n grid of the two (independent)
        length distributions, each length rounded as the simulation and the load generator send it. An engine
        refuses those against its max_model_len (vLLM: HTTP 400 when prompt + max_tokens exceeds it)."""
        outs = sorted(max(1, round(x)) for x in self.output_len.grid(n))
        over = sum(n - bisect.bisect_right(outs, tokens - max(1, round(i))) for i in self.input_len.grid(n))
        return over / (n * n)


# ---------------------------------------------------------------------------------------------- slo
class SLO(Frozen):
    """Latency and throughput targets; any field left empty is not a constraint."""

    ttft_p50_ms: float | None = Field(default=None, gt=0, description="TTFT P50 target, ms (none: no target).")
    ttft_p90_ms: float | None = Field(default=None, gt=0, description="TTFT P90 target, ms (none: no target).")
    ttft_p99_ms: float | None = Field(default=None, gt=0, description="TTFT P99 target, ms (none: no target).")
    tpot_p50_ms: float | None = Field(default=None, gt=0, description="TPOT P50 target, ms (none: no target).")
    tpot_p90_ms: float | None = Field(default=None, gt=0, description="TPOT P90 target, ms (none: no target).")
    tpot_p99_ms: float | None = Field(default=None, gt=0, description="TPOT P99 target, ms (none: no target).")
    e2e_p50_ms: float | None = Field(default=None, gt=0, description="E2E P50 target, ms (none: no target).")
    e2e_p90_ms: float | None = Field(default=None, gt=0, description="E2E P90 target, ms (none: no target).")
    e2e_p99_ms: float | None = Field(default=None, gt=0, description="E2E P99 target, ms (none: no target).")
    min_throughput_tok_s: float | None = Field(default=None, gt=0, description="Output tokens/s, all GPUs.")

    def latency_targets(self) -> list[tuple[str, str, float]]:
        """(metric, percentile, limit_ms) for every latency target set."""
        out = []
        for metric in ("ttft", "tpot", "e2e"):
            for p in ("p50", "p90", "p99"):
                v = getattr(self, f"{metric}_{p}_ms")
                if v is not None:
                    out.append((metric, p, v))
        return out

    @property
    def headline_percentile(self) -> Percentile:
        """The strictest percentile the SLO names (what the table shows)."""
        ps = [p for _, p, _ in self.latency_targets()]
        for p in ("p99", "p90", "p50"):
            if p in ps:
                return p  # type: ignore[return-value]
        return "p99"


# ---------------------------------------------------------------------------------------------- engine
class EngineConfig(Frozen):
    """Engine defaults that the memory and step-time models need. One YAML per engine in conf/engine/."""

    name: EngineName = Field(description="Engine: vllm, trtllm, sglang or tgi.")
    version: str = Field(description="The engine version the adapter renders for; one with a flag schema "
                         "(render/engines/schemas/). vLLM: 0.33.0 (default, the newest) or 0.26.0 (measured on GPUs).")
    image: str = Field(default="", description="Official container image at that version; `{version}` in it "
                       "stands for the version.")
    gpu_memory_utilization: float = Field(default=VLLM_GPU_MEMORY_UTILIZATION, gt=0, le=1, description="vLLM: share of GPU memory "
                                          "the engine may use; SGLang: mem_fraction_static; TRT-LLM: 1.0.")
    kv_free_memory_fraction: float = Field(default=0.9, gt=0, le=1, description="TRT-LLM: share of free "
                                           "memory after load given to the KV cache.")
    non_torch_memory_gb: float = Field(default=0.5, ge=0, description="CUDA context, NCCL buffers.")
    cuda_graph_memory_gb: float = Field(default=1.0, ge=0, description="CUDA graph pools at default capture.")
    activation_gb_per_1k_tokens: float = Field(default=0.12, ge=0, description="Peak activation memory "
                                               "per 1K batched tokens per 4K hidden (scaled by hidden size).")
    step_overhead_ms: float = Field(default=2.0, ge=0, description="Per-step CPU cost: scheduling, "
                                    "sampling, launch, detokenize, at small batch.")
    per_seq_overhead_us: float = Field(default=8.0, ge=0, description="Per-step CPU cost per running "
                                       "sequence (scheduler, sampler, output processing).")
    prefill_seq_overhead_ms: float = Field(default=0.3, ge=0, description="Per-step CPU cost of each "
                                           "prompt (chunk) in the step: admission, block allocation, input "
                                           "preparation.")
    max_stream_tok_s: float | None = Field(default=None, gt=0, description="Output tokens/s the engine's "
                                           "front end can detokenize and stream, whatever the GPU does (the "
                                           "API server is one process); unset: no limit.")
    request_overhead_ms: float = Field(default=8.0, ge=0, description="Per-request time outside the "
                                       "engine steps, added to TTFT: HTTP, admission, first-token "
                                       "detokenization and streaming (tokenization: tokenize_us_per_token).")
    tokenize_us_per_token: float = Field(default=0.0, ge=0, description="Front-end time per prompt token, "
                                         "added to TTFT: the API server tokenizes the prompt text before the "
                                         "engine sees it.")
    frontend_ms_per_ktok_s: float = Field(default=0.0, ge=0, description="TTFT added by a busy front end, "
                                          "per 1,000 tokens/s the replica's API server handles (prompt tokens "
                                          "tokenized + output tokens streamed): a request waits behind that "
                                          "work in the server's event loop, and the client's.")
    step_us_per_layer: float = Field(default=0.0, ge=0, description="GPU time of every step per layer on the "
                                     "GPU, beyond the bytes and FLOPs: a layer is a dozen short kernels (norms, "
                                     "rotary, activation, the GEMMs' ramp and tail), each a few us that no "
                                     "bandwidth covers; it is why a deeper model of the same bytes decodes slower.")
    act_quant_us_per_layer: float = Field(default=0.0, ge=0, description="More GPU time per layer and step "
                                          "for weights that quantize their activations (fp8, int8: W8A8): "
                                          "the quantization kernels in front of the GEMMs.")
    moe_layer_us: float = Field(default=0.0, ge=0, description="MoE models: GPU time per MoE layer and step "
                                "beyond the experts' bytes and FLOPs (routing, top-k, sorting the tokens by "
                                "expert, the fused kernel's launch).")
    moe_act_quant_us_per_layer: float = Field(default=0.0, ge=0, description="MoE models with weights that "
                                              "quantize their activations (fp8, int8: W8A8): more GPU time per MoE "
                                              "layer and step (quantizing the experts' inputs, the quantized "
                                              "grouped GEMMs' set-up).")
    moe_int8_compute_penalty: float = Field(default=1.0, ge=1, le=10, description="MoE models with INT8 W8A8 "
                                            "weights: their fused expert GEMMs take prompt chunks this many times "
                                            "slower than FP8's (vLLM 0.26.0 runs them in its Triton kernel with no "
                                            "tuned configuration). Used only where the calibration carries no "
                                            "measured INT8 MoE kernel table (moe_int8_kernel).")
    moe_w4a16_compute_penalty: float = Field(default=1.0, ge=1, le=10, description="MoE models with weight-only "
                                             "int4 weights (AWQ, GPTQ): their fused expert GEMMs take prompt chunks "
                                             "this many times slower than the dense W4A16 terms say (vLLM 0.26.0's "
                                             "Marlin WNA16 MoE kernel against Machete's dense GEMMs: like those "
                                             "terms, it holds on w4a16_archs only).")
    moe_compute_efficiency: float = Field(default=1.0, gt=0, le=2, description="MoE models: the share of the "
                                          "profile's GEMM rate the fused expert kernels reach when "
                                          "compute-bound (prompt chunks).")
    w4a16_bandwidth_penalty: float = Field(default=1.05, ge=1, le=4, description="Weight-only int4 (AWQ, GPTQ): "
                                           "the int4 kernels read their packed weights this much slower than a "
                                           "bf16 GEMM reads its own (group scales, dequantizing in the main loop).")
    w4a16_compute_penalty: float = Field(default=1.15, gt=0, le=4, description="Weight-only int4: the int4 "
                                         "kernels' compute-bound rate (prompt chunks) this much below a bf16 "
                                         "GEMM's.")
    w4a16_layer_us: float = Field(default=0.0, ge=0, description="Weight-only int4: more GPU time per layer and "
                                  "step (the int4 kernels' fixed cost per GEMM beyond their bytes).")
    w4a16_source: str = Field(default="", description="Where the w4a16_* terms were measured, as a plan's Sources "
                              "line names it; empty: the published Marlin numbers.")
    w4a16_archs: tuple[str, ...] = Field(default=(), description="GPU architectures the w4a16_* terms hold on (the "
                                         "engine's int4 kernel there was measured); on others the published "
                                         "Marlin numbers (these fields' defaults). Empty: every GPU.")
    w4a16_overlap: float = Field(default=1.0, ge=0, le=1, description="Weight-only int4: how much of the shorter "
                                 "of a linear layer's weight reads and its math the int4 kernels hide under the "
                                 "longer (1: all, as a dense GEMM: the step is the longer; 0: none, their sum). The "
                                 "kernels dequantize in their main loop, so a decode batch's math adds to its reads.")
    w4a16_zero_point: dict[str, float] = Field(default_factory=dict, description="Weight-only int4 checkpoints "
                                               "with zero points (AWQ's asymmetric weights), where they were measured "
                                               "apart: w4a16_* terms in place of those above (vLLM's Machete runs "
                                               "them as another kernel variant). Empty: the same terms as symmetric "
                                               "(GPTQ-style) checkpoints.")
    fp8_kv_convert_gbs: float = Field(default=0.0, ge=0, description="Decode attention over an FP8 KV cache "
                                      "converts every FP8 element it reads, at this rate (GB of FP8 elements per "
                                      "second, the GPU's compute, not its memory): time beside the read. 0: the "
                                      "read alone.")
    fp8_kv_seq_gbs: float = Field(default=0.0, ge=0, description="Decode attention over an FP8 KV cache, once "
                                  "the batch's sequences x KV heads per GPU reach fp8_kv_unsplit_from, gives each "
                                  "sequence's KV head to one block without splitting it: a batch whose longest "
                                  "context is far above its mean waits for that sequence, read at this rate (GB/s) "
                                  "per KV head. The step takes (longest - mean context) x bytes per token per KV "
                                  "head / rate more. 0: contexts' spread costs nothing.")
    fp8_kv_unsplit_from: float = Field(default=0.0, ge=0, description="Sequences x KV heads per GPU from which "
                                       "fp8_kv_seq_gbs applies: below it the attention splits each sequence's "
                                       "context across the GPU's SMs.")
    cudagraph_max_tokens: int = Field(default=0, ge=0, description="vLLM: CUDA graphs are captured for steps "
                                      "of up to min(2 x max_num_seqs, this, max_num_batched_tokens) tokens (0.26.0's "
                                      "default max_cudagraph_capture_size); a larger step (a prompt chunk beside "
                                      "the decodes) runs without them and costs eager_step_ms more. 0: no limit.")
    eager_step_ms: float = Field(default=0.0, ge=0, description="Extra time of a step too large for the CUDA "
                                 "graphs (see cudagraph_max_tokens); the calibration fits it.")
    idle_step_floor_ms: float = Field(default=0.0, ge=0, description="A step that starts on an idle engine "
                                      "(nothing running: its loop had blocked waiting for work) takes at least this "
                                      "long to its first token. vLLM 0.26 takes ~15 ms from scheduling a prompt of "
                                      "16-512 tokens alone to its first token, whatever its length, where one "
                                      "joining running decodes costs one ~9 ms step. 0: no floor.")
    eager_layer_us: float = Field(default=0.0, ge=0, description="A step too large for the CUDA graphs takes at "
                                  "least this much host time per layer: the CPU launching its kernels one by one. "
                                  "A floor, not an addition: a long prompt's GPU time hides it. 0: no floor.")
    eager_moe_layer_us: float = Field(default=0.0, ge=0, description="The same floor per MoE layer (the routing "
                                      "and the fused expert kernels launch more). 0: eager_layer_us.")
    async_scheduling: bool = Field(default=False, description="The engine schedules step k+1 while step k "
                                   "runs (vLLM: on by default): a request arriving during step k is admitted "
                                   "one step later than with synchronous scheduling.")
    first_token_after_launch: bool = Field(default=False, description="With async_scheduling: a prompt that "
                                           "finishes in step k gets its first token once step k+1 has launched; "
                                           "when step k+1 runs past the CUDA graphs, that launch takes the host "
                                           "floor of an eager step (eager_layer_us, eager_moe_layer_us).")
    weight_dtypes: tuple[WeightDtype, ...] = Field(default=ALL_WEIGHT_DTYPES, description="Weight precisions this engine serves.")
    kv_dtypes: tuple[KVDtype, ...] = Field(default=("auto", "fp8"), description="KV-cache dtypes this engine offers.")
    supports_pp: bool = Field(default=True, description="Pipeline parallelism available.")
    supports_chunked_prefill: bool = Field(default=True, description="Chunked prefill available.")
    kv_block_size: int = Field(default=16, description="Tokens per KV-cache block (the KV cache is whole blocks).")
    api_server_count: int | None = Field(default=None, ge=1, description="vLLM: API-server processes per replica "
                                         "(--api-server-count); unset: one per 4,000 output tokens/s the replica "
                                         "serves at capacity (planner/frontend.py).")
    ttft_guard: bool = Field(default=True, description="vLLM 0.33+: render --max-num-queued-tokens (SLO TTFT "
                             "target x predicted prefill tokens/s), so the server answers 503 instead of "
                             "queueing a prefill backlog it cannot clear within the target.")
    pin_kv_cache: bool = Field(default=True, description="vLLM: render the planned KV cache as "
                               "--kv-cache-memory-bytes, so that every boot gets the cache the plan shows. Without "
                               "it vLLM sizes the cache by profiling, and on a first boot (empty torch.compile "
                               "cache) it counts the compiler's temporaries as activation memory: 1.6 GiB less KV "
                               "cache for Llama-3.1-70B on one GPU, until a restart (vLLM issue #54122).")

    @model_validator(mode="after")
    def _zero_point_terms_known(self) -> "EngineConfig":
        """Its keys are w4a16_* terms, and its values within the bounds those fields hold the symmetric ones to."""
        unknown = sorted(set(self.w4a16_zero_point) - set(W4A16_TERM_NAMES))
        if unknown:
            raise ValueError(f"w4a16_zero_point: unknown term(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(W4A16_TERM_NAMES)}")
        for k, v in self.w4a16_zero_point.items():  # the same field's bounds, checked by the field itself
            try:
                type(self).__pydantic_validator__.validate_assignment(self.model_construct(), k, v)
            except ValidationError as e:
                raise ValueError(f"w4a16_zero_point.{k}: {e.errors()[0]['msg']} (got {v})") from None
        return self

    @model_validator(mode="after")
    def _api_servers_are_vllm(self) -> "EngineConfig":
        if self.api_server_count is not None and self.name != "vllm":
            raise ValueError(f"api_server_count is a vLLM setting (--api-server-count); {self.name} has no such flag")
        return self

    @model_validator(mode="before")
    @classmethod
    def _version_and_image(cls, data):  # noqa: ANN001, ANN206
        """conf/engine/*.yaml write the image as `...:v{version}`, so `engine.version=X` moves the image too. A
        version Hydra read as a number (`engine.version=0.26` is a float) is taken as the user wrote it, so the
        version check names the versions there are rather than asking for a string."""
        version = data.get("version") if isinstance(data, dict) else None
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            data = {**data, "version": str(version)}
        if isinstance(data, dict) and "{version}" in str(data.get("image") or ""):
            data = {**data, "image": str(data["image"]).replace("{version}", str(data.get("version", "")))}
        return data


# ---------------------------------------------------------------------------------------------- search
class SearchConfig(Frozen):
    """What the Optuna study searches and how."""

    n_trials: int = Field(default=1000, ge=1, le=100_000, description="Trial budget; a feasible space no "
                          "larger than this is examined whole.")
    seed: int = Field(default=0, description="Sampler seed: same request + seed = same plan.")
    sampler: Literal["auto", "grid", "staged", "tpe", "nsga2", "random"] = Field(
        default="auto", description="auto: grid when the feasible space fits the budget, else staged (NSGA-II "
        "for pareto).")
    objective: Literal["goodput_per_gpu", "cost", "latency"] = Field(
        default="goodput_per_gpu", description="goodput_per_gpu: max requests/s within SLO per GPU; cost: "
        "min $ per 1M tokens; latency: min SLO-percentile E2E latency.")
    pareto: bool = Field(default=False, description="Two objectives (throughput per GPU vs latency), "
                         "NSGA-II; reports the Pareto front.")
    storage: str | None = Field(default=None, description="Optuna storage URL (sqlite:///study.db) to "
                                "persist and resume the study.")
    study_name: str | None = Field(default=None, description="Optuna study name (default: derived from the request).")
    allowed_quant: tuple[WeightDtype, ...] = Field(default=ALL_WEIGHT_DTYPES, description="Weight precisions the search may pick.")
    allowed_kv_dtype: tuple[KVDtype, ...] = Field(default=("auto", "fp8"), description="KV-cache dtypes the search may pick.")
    max_quality_cost: float | None = Field(default=None, ge=0, description="Largest stated quality cost "
                                           "(approximate % perplexity increase) a quantization may carry.")
    tp: tuple[PositiveInt, ...] | None = Field(default=None, description="Restrict tensor-parallel sizes.")
    pp: tuple[PositiveInt, ...] | None = Field(default=None, description="Restrict pipeline-parallel sizes.")
    max_num_seqs: tuple[PositiveInt, ...] = Field(default=(16, 32, 64, 128, 256, 512), description="max_num_seqs values searched.")
    max_num_batched_tokens: tuple[PositiveInt, ...] = Field(default=(2048, 8192, 16384), description="max_num_batched_tokens values searched (chunked prefill).")
    chunked_prefill: tuple[bool, ...] = Field(default=(True, False), description="Chunked prefill on/off values searched.")
    use_all_gpus: bool = Field(default=False, description="Only layouts that use every GPU.")
    headroom: float = Field(default=0.2, ge=0.0, le=4.0, description="Capacity kept above the offered rate: the "
                            "winner should carry (1 + headroom) x the rate within the SLO, and the sizing counts "
                            "replicas for that. Predictions are good to ~10-25%, and near capacity a small error "
                            "decides between a stable queue and a growing one.")
    top_k: int = Field(default=5, ge=1, le=50, description="Candidates shown and written.")
    workers: int = Field(default=0, ge=0, le=256, description="Processes that simulate the finalists' capacity "
                         "at the SLO side by side (forked; Linux): 0 = the CPUs this process may use, 1 = none.")
    max_model_len: int | None = Field(default=None, ge=16, description="Context to provision; default: "
                                      "the traffic's longest prompt + output, rounded up.")


# ---------------------------------------------------------------------------------------------- request
class PlanRequest(Frozen):
    """Everything one plan answers, resolved."""

    model: ModelSpec = Field(description="The model to serve.")
    inventory: Inventory = Field(description="The GPUs it may use.")
    traffic: Traffic = Field(description="The load it must carry.")
    slo: SLO = Field(description="Latency and throughput targets.")
    search: SearchConfig = Field(description="How the space is searched.")
    engine: EngineConfig = Field(description="The engine and its defaults.")

    @property
    def max_model_len(self) -> int:
        if self.search.max_model_len:
            return self.search.max_model_len
        need = self.traffic.input_len.upper + self.traffic.output_len.upper
        rounded = 1 << max(10, math.ceil(math.log2(need)))
        return min(rounded, self.model.max_position_embeddings)


# ---------------------------------------------------------------------------------------------- checkpoint
CheckpointSource = Literal["base", "published", "user", "online", "needs_quantize"]
CheckpointFormat = Literal["hf", "compressed-tensors", "fp8", "awq", "gptq", "modelopt", "auto"]


class Checkpoint(Frozen):
    """The weights a candidate serves, and how the engine gets its precision from them.

    base: the model's own bf16 checkpoint; published: a pre-quantized checkpoint from conf/checkpoints.yaml;
    user: one you named (--checkpoint / model.checkpoints); online: the base checkpoint quantized by the engine
    while it loads (vLLM/SGLang `--quantization fp8`); needs_quantize: none exists yet, `quantize` makes it at
    `id` (a local path) with `quantize_method`.
    """

    id: str = Field(description="Hugging Face id or path the engine loads.")
    source: CheckpointSource = Field(description="Where the weights come from (see the class docstring).")
    format: CheckpointFormat = Field(default="hf", description="Serialization: hf = unquantized; the others "
                                     "are the quantization_config formats engines detect; auto = unknown "
                                     "(a checkpoint you named).")
    weight_dtype: WeightDtype = Field(description="The planned weight precision these weights serve.")
    base_id: str = Field(description="The model's own checkpoint id: what quantize starts from, and the name "
                         "clients ask for (--served-model-name), whatever weights serve it.")
    found: str = Field(default="", description="Where a published id was found.")
    quantize_method: str | None = Field(default=None, description="needs_quantize: the `quantize --method`.")

    @property
    def engine_quantizes(self) -> bool:
        """The engine quantizes bf16 weights at load time (it holds them unquantized first)."""
        return self.source == "online"

    def _missing_here(self) -> str:
        """A note for a local path that is not on this machine: a plan is often made away from the GPU host, so it
        is kept as given, but a typo should not pass unseen."""
        if self.id.startswith(("/", "./", "../", "~")) and not Path(self.id).expanduser().exists():
            return "; no such folder on this machine: the host that launches it must have it"
        return ""

    def describe(self) -> str:
        return {"base": f"{self.id} (unquantized)",
                "published": f"{self.id} ({self.format}, published)",
                "user": f"{self.id} (yours{self._missing_here()})",
                "online": f"{self.id} quantized to {self.weight_dtype} by the engine at load",
                "needs_quantize": f"{self.id} (needs quantize: `quantize --model {self.base_id} --method "
                                  f"{self.quantize_method} -o {self.id}`)"}[self.source]


# ---------------------------------------------------------------------------------------------- candidate
class Candidate(Frozen):
    """One engine configuration: the unit the planner scores and the launcher renders."""

    engine: EngineName = Field(default="vllm", description="Engine that serves it.")
    tp: int = Field(default=1, ge=1, description="Tensor-parallel size (GPUs sharing each layer).")
    pp: int = Field(default=1, ge=1, description="Pipeline-parallel stages (layers split across GPUs).")
    replicas: int = Field(default=1, ge=1, description="Independent copies behind a load balancer.")
    weight_dtype: WeightDtype = Field(default="bf16", description="Weight precision served.")
    kv_cache_dtype: KVDtype = Field(default="auto", description="KV-cache dtype (auto = activation dtype, fp8 = e4m3).")
    max_num_seqs: int = Field(default=256, ge=1, description="Most sequences in one batch (vLLM --max-num-seqs).")
    max_num_batched_tokens: int = Field(default=8192, ge=1, description="Token budget of one engine step (prefill chunk + decodes).")
    chunked_prefill: bool = Field(default=True, description="Split long prompts across steps so decodes keep running.")
    max_model_len: int = Field(default=8192, ge=16, description="Longest prompt + output a request may have.")
    gpu_memory_utilization: float = Field(default=VLLM_GPU_MEMORY_UTILIZATION, gt=0, le=1, description="Share of GPU memory the engine may use (vLLM; SGLang mem_fraction_static).")
    enable_prefix_caching: bool = Field(default=True, description="Reuse KV blocks of shared prompt prefixes.")
    checkpoint: Checkpoint | None = Field(default=None, description="The weights served; None: resolved from "
                                          "the model and weight_dtype when rendered.")
    max_cudagraph_capture_size: int | None = Field(default=None, ge=1, description="vLLM "
                                                   "--max-cudagraph-capture-size: steps of up to this many tokens "
                                                   "run in CUDA graphs (default: min(2 x max_num_seqs, 512)); a "
                                                   "larger size keeps steps with a prompt chunk out of eager mode, "
                                                   "for more graph memory.")
    api_server_count: int = Field(default=1, ge=1, description="vLLM --api-server-count: the processes that "
                                  "tokenize, detokenize and stream (planner/frontend.py: one per 4,000 output "
                                  "tokens/s the replica serves at capacity).")

    @model_validator(mode="after")
    def _vllm_settings_only_on_vllm(self) -> "Candidate":
        """The fields only vLLM has a flag for keep their engine-neutral default on another engine."""
        if self.engine != "vllm":
            for name in ("max_cudagraph_capture_size", "api_server_count"):
                if getattr(self, name) != type(self).model_fields[name].default:
                    raise ValueError(f"{name} is a vLLM setting; {self.engine} has no such flag")
        return self

    @property
    def needs_quantize(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.source == "needs_quantize"

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def total_gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    def label(self) -> str:
        kv = "" if self.kv_cache_dtype == "auto" else f" kv:{self.kv_cache_dtype}"
        par = f"TP{self.tp}" + (f" PP{self.pp}" if self.pp > 1 else "") + (
            f" x{self.replicas}" if self.replicas > 1 else "")
        cp = "chunked" if self.chunked_prefill else "no-chunk"
        nq = " (needs quantize)" if self.needs_quantize else ""
        graphs = f" graphs={self.max_cudagraph_capture_size}" if self.max_cudagraph_capture_size else ""
        api = f" api-servers={self.api_server_count}" if self.api_server_count > 1 else ""
        return (f"{par} {self.weight_dtype}{kv}{nq} seqs={self.max_num_seqs} "
                f"tokens={self.max_num_batched_tokens} {cp}{graphs}{api}")
