"""vLLM adapter (`vllm serve`, image vllm/vllm-openai:v<version>), for every vLLM version with a flag schema.

`engine.version` picks the version (default 0.33.0, the newest with a schema; 0.26.0, the one measured on GPUs): flags
are checked against `schemas/vllm-<version>.json`, extracted from that version's `make_arg_parser`, and a version
with no schema is a ConfigError naming those that have one. What differs by version is read from the schema, not
from version numbers: `--max-num-queued-tokens` (a TTFT guard) is rendered where the parser has it (0.33.0).
Weights: the candidate's checkpoint (planner/checkpoints.py). A pre-quantized one (compressed-tensors, fp8, AWQ,
GPTQ, ModelOpt) declares its method and gets no --quantization (vLLM upgrades awq/gptq to the Marlin kernels
itself); an unquantized one planned at fp8 gets `--quantization fp8` (quantized while loading). TP>1 on nodes
without NVLink multicast turns the FlashInfer all-reduce fusion off (compilation pass + environment). On a multi-node inventory a replica
that spans nodes gets `--distributed-executor-backend ray`; one that fits a node keeps vLLM's default (mp), so a
single-machine launch never needs a Ray cluster (targets' ray/serve.sh adds the flag itself).
"""

from __future__ import annotations

import json
from functools import lru_cache

from serveplan.render.engines.base import (ReplicaLaunch, cuda_visible_devices, load_schema, local_host,
                                             multicast_off_env, online_quantization_args, parse_prometheus,
                                             pick_metrics, served_checkpoint, validate_flags)
from serveplan.errors import ConfigError
from serveplan.planner.capacity import prefill_tokens_per_s, ttft_target_s
from serveplan.planner.memory import pinned_kv_cache_bytes
from serveplan.planner.spec import Candidate, PlanRequest

VERSION = "0.33.0"  # the default (conf/engine/vllm.yaml): the newest with a schema; 0.26.0 is the one measured
# AWQ and GPTQ run in bf16 too: on the catalog's GPUs (SM 8.0+) vLLM serves them on Marlin/Machete, which take bf16
# activations. float16 cannot start with an FP8 KV cache: FlashAttention 3 quantizes the queries to FP8 and then
# requires a bf16 output ("For FP8 input, output must have dtype BF16"; session 21, the 1xH100 AWQ + FP8 KV plan).
_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16", "int8": "bfloat16",
          "awq": "bfloat16", "gptq": "bfloat16", "bnb-nf4": "bfloat16"}
_QUANTIZATION = {"bnb-nf4": "bitsandbytes"}  # load-time methods whose --quantization value differs
_METRICS = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "num_requests_running": ("vllm:num_requests_running",),
    "num_requests_waiting": ("vllm:num_requests_waiting",),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "generation_tokens_total": ("vllm:generation_tokens_total",),
}


def _pinned_kv_cache(c: Candidate, request: PlanRequest) -> list[str]:
    """`--kv-cache-memory-bytes` with the planned KV cache (EngineConfig.pin_kv_cache). vLLM 0.26.0 otherwise
    sizes it by profiling a forward pass, and on a first boot the torch.compile inside that pass is counted as
    activation memory: measured 2.04 GiB "peak activation" cold against 0.43 GiB warm for Llama-3.1-70B FP8 on
    one GPU, which is 35% fewer KV tokens on an 80 GB card until the server restarts (vLLM #54122,
    docs/launch-safety.md). The pinned size is the plan's budget minus weights, warm activations and non-torch
    memory, so the CUDA graphs keep the same headroom above gpu_memory_utilization as in vLLM's own sizing."""
    eng = request.engine
    if not eng.pin_kv_cache or eng.name != "vllm":
        return []
    kv = pinned_kv_cache_bytes(request.model, request.inventory.gpu, eng, c, request.traffic)
    return ["--kv-cache-memory-bytes", str(kv)] if kv > 0 else []


def _ttft_guard(c: Candidate, request: PlanRequest, schema: dict) -> list[str]:
    """`--max-num-queued-tokens` as a TTFT guard, sized as vLLM's SchedulerConfig docstring says: target TTFT x
    prefill throughput. The API server then answers HTTP 503 to a new request while the prompt tokens still in
    prefill reach the limit (it always admits into an empty backlog), i.e. while the backlog alone would take
    longer than the target to prefill, so a client or load balancer retries elsewhere instead of waiting.

    Rendered only where the version's parser has the flag (0.33.0, not 0.26.0) and the SLO sets a TTFT target;
    the target is the TTFT limit of the highest percentile set (the headline one when TTFT is among it). Prefill
    throughput is the planner's (`capacity.prefill_tokens_per_s`, with the calibration find_calibration gives:
    0.26.0's on an H100 for 0.33.0, none on a GPU without one): one prefill-only step of max_num_batched_tokens
    prompt tokens, prompts of the traffic's mean length (causal work tokens x length / 2), per replica (each
    replica has its own API server). A pure prefill step is the fastest this replica prefills, so the limit is
    generous: it turns away only a backlog that could not be cleared within the target even with no decode
    sharing the steps (vLLM counts a partly prefilled prompt whole, which makes it reject a little earlier).
    engine.ttft_guard=false leaves it out."""
    if "--max-num-queued-tokens" not in schema["flags"] or not request.engine.ttft_guard:
        return []
    target_s = ttft_target_s(request.slo)
    if target_s is None:
        return []
    limit = int(target_s * prefill_tokens_per_s(request, c))
    return ["--max-num-queued-tokens", str(limit)] if limit >= 1 else []


class VLLMAdapter:
    name = "vllm"
    oom_patterns = (
        r"CUDA out of memory",
        r"torch\.(cuda\.)?OutOfMemoryError",
        r"No available memory for the cache blocks",
        r"KV cache is needed, which is larger than the available KV cache memory",
        r"CUDA error: out of memory",
    )
    # A worker's exception: vLLM's API server stays up with its workers spinning (they may ignore SIGTERM) and
    # /health never answers, so a launch would wait out its whole health timeout (session 25: 7 minutes).
    crash_patterns = (
        r"WorkerProc hit an exception",
        r"EngineCore failed to start",
        r"Engine core initialization failed",
        r"EngineCore encountered a fatal error",
    )
    crash_hints = (
        (r"flashinfer allreduce backend: mnnvl",
         "vLLM picked FlashInfer's mnnvl all-reduce, which needs NVLink multicast (session 25: a TP2 INT8 launch on "
         "two H200s without it failed in its memory profile); where the nodes lack it, plan again with "
         "hardware.nvlink_multicast=false, which turns that fusion and NCCL NVLS off."),
    )

    # vLLM's JIT monitor, once per server: a Triton kernel (the fused MoE one) compiled for a batch shape met while
    # serving. Session 26: a fresh Mixtral server's first ~25 s of load stalled on it (verify's warm-up is for it).
    compile_stall_patterns = (r"JIT compilation during inference",)

    def __init__(self, version: str = VERSION):
        self.schema = load_schema(self.name, version)  # a version with no schema: ConfigError naming those with one
        self.version = version
        self.image = f"vllm/vllm-openai:v{version}"

    def render(self, candidate: Candidate, request: PlanRequest, *, replica: int, gpus: list[int],
               port: int, host: str = "0.0.0.0", model: str | None = None, served_model_name: str | None = None,
               extra_args: tuple[str, ...] = ()) -> ReplicaLaunch:
        c = candidate
        if request.engine.name == self.name and request.engine.version != self.version:
            raise ValueError(f"the vLLM {self.version} adapter was given a vLLM {request.engine.version} request; "
                             f"get_adapter('vllm', {request.engine.version!r}) renders for it")
        ckpt = served_checkpoint(c, request)
        quant = online_quantization_args(ckpt, names=_QUANTIZATION)
        if quant and quant[1] not in self.schema.get("known_values", {}).get("--quantization", [quant[1]]):
            raise ConfigError(f"vLLM {self.version} has no --quantization {quant[1]}, so it cannot serve "
                              f"{c.weight_dtype} weights; plan with engine.version=0.26.0 or another precision.")
        model = model or ckpt.id
        argv = ["vllm", "serve", model,
                "--tensor-parallel-size", str(c.tp),
                "--pipeline-parallel-size", str(c.pp),
                "--max-num-seqs", str(c.max_num_seqs),
                "--max-num-batched-tokens", str(c.max_num_batched_tokens),
                "--max-model-len", str(c.max_model_len),
                "--gpu-memory-utilization", f"{c.gpu_memory_utilization:g}",
                *_pinned_kv_cache(c, request),
                "--dtype", _DTYPE[c.weight_dtype],
                "--kv-cache-dtype", c.kv_cache_dtype,
                "--enable-chunked-prefill" if c.chunked_prefill else "--no-enable-chunked-prefill",
                "--enable-prefix-caching" if c.enable_prefix_caching else "--no-enable-prefix-caching",
                *_ttft_guard(c, request, self.schema)]
        if c.max_cudagraph_capture_size:
            argv += ["--max-cudagraph-capture-size", str(c.max_cudagraph_capture_size)]
        if c.api_server_count > 1:  # planner/frontend.py: one process streams ~6,000 output tokens/s at most
            argv += ["--api-server-count", str(c.api_server_count)]
        argv += quant
        env_off = multicast_off_env(request, c)
        if env_off:
            argv += ["--compilation-config", json.dumps({"pass_config": {"fuse_allreduce_rms": False}},
                                                        separators=(",", ":"))]
        inv = request.inventory
        if inv.nodes > 1 and c.gpus_per_replica > inv.gpus_per_node:  # a replica spanning nodes runs on Ray
            argv += ["--distributed-executor-backend", "ray"]
        argv += ["--host", host, "--port", str(port), "--served-model-name", served_model_name or model]
        argv += list(extra_args)
        env = {"CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpus), **env_off}
        return ReplicaLaunch(replica=replica, argv=argv, env=env, port=port, gpus=list(gpus))

    def validate(self, argv: list[str]) -> list[str]:
        if argv[:2] != ["vllm", "serve"]:
            return [f"expected 'vllm serve ...', got {' '.join(argv[:2])!r}"]
        # `vllm serve` takes one positional (model_tag); FlexibleArgumentParser accepts --foo_bar for --foo-bar.
        return validate_flags(argv[2:], self.schema, normalize_underscores=True, max_positionals=1)

    def health_url(self, host: str, port: int) -> str:
        return f"http://{local_host(host)}:{port}/health"

    def parse_metrics(self, text: str) -> dict[str, float]:
        return pick_metrics(parse_prometheus(text), _METRICS)


ADAPTER = VLLMAdapter()


@lru_cache(maxsize=None)
def adapter_for(version: str) -> VLLMAdapter:
    """The adapter for `version` (base.get_adapter's way in); ConfigError where no schema exists for it."""
    return ADAPTER if version == ADAPTER.version else VLLMAdapter(version)
