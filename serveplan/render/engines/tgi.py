"""Text Generation Inference adapter, pinned to TGI 3.3.7 (the last release; the upstream repository is archived;
image ghcr.io/huggingface/text-generation-inference:3.3.7).

`text-generation-launcher`, flags checked against `schemas/tgi-3.3.7.json`, extracted by
`scripts/extract_engine_flags.py` (static_tgi) from the `#[clap(long ...)]` fields of `struct Args` in the
v3.3.7 `launcher/src/main.rs`. What each knob becomes, as that source reads them:

- TP: `--num-shard` (one process per shard on the GPUs of CUDA_VISIBLE_DEVICES). TGI has no pipeline
  parallelism: a PP>1 candidate is refused (conf/engine/tgi.yaml says supports_pp: false, so the search never
  proposes one).
- max_num_seqs: `--max-batch-size` (the router's batch cap; the queue's `next_batch(max_size)`).
  `--max-concurrent-requests` is an admission limit, not a batch size: past it TGI answers HTTP 429. The planner
  models a queue, so it is set to 4 x max_num_seqs (at least TGI's default 128), above what a planned load queues.
- max_num_batched_tokens: `--max-batch-prefill-tokens`. TGI 3 chunks prefill itself wherever its attention
  supports it (flashinfer / flashdecoding: Ampere and newer, head dim 64/128/256) and has no switch for it; a
  candidate without chunked prefill carries a budget >= max_model_len, so every prompt fits one prefill whole.
- max_model_len: `--max-total-tokens`, with `--max-input-tokens` one below it (the launcher requires <).
- Weights: the candidate's checkpoint. Pre-quantized ones declare their method (TGI reads `quant_method`;
  AWQ/GPTQ go to Marlin kernels itself) and get no flag; an unquantized checkpoint planned at fp8 gets
  `--quantize fp8`, at bnb-nf4 `--quantize bitsandbytes-nf4` (both quantized while loading). `--dtype` only for
  unquantized weights (the source: "cannot be used with `--quantize`").
- KV cache: `--kv-cache-dtype fp8_e4m3fn` for fp8 (auto: the model's dtype, no flag). Its size is TGI's own: after
  a warmup prefill of max_batch_prefill_tokens, free memory minus (1 - TGI_WIGGLE_ROOM) x total, in the
  `warmup` of flash_causal_lm.py; `--max-batch-total-tokens` is ignored for flash-attention models ("deprecated
  for Flash Attention models", backends/v3/src/lib.rs), so it is not rendered. The candidate's
  gpu_memory_utilization is given as TGI_WIGGLE_ROOM (default 0.90), which makes that rule vLLM 0.26's:
  utilization x total - weights - peak activation - non-torch (planner/memory.py).
- Prefix caching off: `PREFIX_CACHING=0` (the launcher's environment switch; on, TGI's default, nothing is set).
- Several replicas on one host: each gets its own `--shard-uds-path`, `--master-port` and `--prometheus-port`
  (defaults /tmp/text-generation-server, 29500 and 9000 would collide; the launcher deletes a stale socket of
  the same name at start).
TGI has no served-model-name flag: its OpenAI routes answer whatever model name is asked for.
"""

from __future__ import annotations

from serveplan.errors import ConfigError
from serveplan.render.engines.base import (ReplicaLaunch, cuda_visible_devices, load_schema, local_host,
                                             multicast_off_env, online_quantization_args, parse_prometheus,
                                             served_checkpoint, validate_flags)
from serveplan.planner.spec import Candidate, PlanRequest

VERSION = "3.3.7"
_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
_KV = {"fp8": "fp8_e4m3fn"}
_QUANTIZE = {"fp8": "fp8", "bnb-nf4": "bitsandbytes-nf4"}  # online (load-time) methods -> --quantize values
ADMISSION_FACTOR = 4  # --max-concurrent-requests = this x max_num_seqs, at least TGI's default
TGI_DEFAULT_MAX_CONCURRENT = 128
MASTER_PORT = 29500
PROMETHEUS_PORT_OFFSET = 1000  # the router's separate Prometheus listener: serving port + this


class TGIAdapter:
    name = "tgi"
    version = VERSION
    image = f"ghcr.io/huggingface/text-generation-inference:{VERSION}"
    oom_patterns = (
        r"CUDA out of memory",
        r"torch\.(cuda\.)?OutOfMemoryError",
        r"Not enough memory to handle \d+ prefill tokens",
        r"Not enough memory to handle `max_total_tokens=\d+`",
        r"CUDA error: out of memory",
    )
    crash_patterns: tuple[str, ...] = ()  # its processes exit on a fatal error, which the supervisor sees
    crash_hints: tuple[tuple[str, str], ...] = ()
    compile_stall_patterns: tuple[str, ...] = ()

    @property
    def schema(self) -> dict:
        return load_schema(self.name, self.version)

    def render(self, candidate: Candidate, request: PlanRequest, *, replica: int, gpus: list[int],
               port: int, host: str = "0.0.0.0", model: str | None = None, served_model_name: str | None = None,
               extra_args: tuple[str, ...] = ()) -> ReplicaLaunch:
        c = candidate
        if c.pp > 1:
            raise ConfigError(f"TGI has no pipeline parallelism, so {c.label()} cannot run on it; plan with "
                              f"engine=tgi (which proposes PP1 only) or another engine.")
        if not 0 < c.gpu_memory_utilization < 1:
            raise ConfigError(f"TGI sizes its KV cache with TGI_WIGGLE_ROOM, which must be below 1; "
                              f"gpu_memory_utilization {c.gpu_memory_utilization:g} cannot be given to it.")
        ckpt = served_checkpoint(c, request)
        model = model or ckpt.id
        argv = ["text-generation-launcher", "--model-id", model,
                "--num-shard", str(c.tp),
                "--max-batch-size", str(c.max_num_seqs),
                "--max-concurrent-requests", str(max(TGI_DEFAULT_MAX_CONCURRENT, ADMISSION_FACTOR * c.max_num_seqs)),
                "--max-batch-prefill-tokens", str(c.max_num_batched_tokens),
                "--max-input-tokens", str(c.max_model_len - 1),
                "--max-total-tokens", str(c.max_model_len)]
        if c.weight_dtype in _DTYPE:
            argv += ["--dtype", _DTYPE[c.weight_dtype]]
        argv += online_quantization_args(ckpt, flag="--quantize", names=_QUANTIZE)
        if c.kv_cache_dtype in _KV:
            argv += ["--kv-cache-dtype", _KV[c.kv_cache_dtype]]
        argv += ["--shard-uds-path", f"/tmp/text-generation-server-{port}",
                 "--master-port", str(MASTER_PORT + replica),
                 "--prometheus-port", str(port + PROMETHEUS_PORT_OFFSET),
                 "--hostname", host, "--port", str(port)]
        argv += list(extra_args)
        env = {"CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpus), "TGI_WIGGLE_ROOM": f"{c.gpu_memory_utilization:g}",
               **{k: v for k, v in multicast_off_env(request, c).items() if not k.startswith("VLLM_")}}
        if not c.enable_prefix_caching:
            env["PREFIX_CACHING"] = "0"
        return ReplicaLaunch(replica=replica, argv=argv, env=env, port=port, gpus=list(gpus))

    def validate(self, argv: list[str]) -> list[str]:
        if argv[:1] != ["text-generation-launcher"]:
            return [f"expected 'text-generation-launcher ...', got {argv[:1]!r}"]
        return validate_flags(argv[1:], self.schema)

    def health_url(self, host: str, port: int) -> str:
        return f"http://{local_host(host)}:{port}/health"

    def parse_metrics(self, text: str) -> dict[str, float]:
        """TGI's router metrics (backends/v3, router/src/server.rs). It has no KV-usage gauge; the share of the
        KV budget the running batch may grow into (tgi_batch_current_max_tokens / tgi_batch_max_total_tokens)
        stands in for it. Token totals are the sums of the input-length and generated-tokens histograms."""
        s = parse_prometheus(text)
        out = {}
        pairs = {"num_requests_running": "tgi_batch_current_size", "num_requests_waiting": "tgi_queue_size",
                 "prompt_tokens_total": "tgi_request_input_length_sum",
                 "generation_tokens_total": "tgi_request_generated_tokens_sum"}
        for key, metric in pairs.items():
            if metric in s:
                out[key] = s[metric]
        if s.get("tgi_batch_max_total_tokens") and "tgi_batch_current_max_tokens" in s:
            out["kv_cache_usage"] = s["tgi_batch_current_max_tokens"] / s["tgi_batch_max_total_tokens"]
        return out


ADAPTER = TGIAdapter()
