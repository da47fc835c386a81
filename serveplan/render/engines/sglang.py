"""SGLang adapter, pinned to SGLang 0.5.23 (newest on PyPI when written; image lmsysorg/sglang:v0.5.23).

`python -m sglang.launch_server`; flags checked against `schemas/sglang-0.5.23.json`, extracted from
`ServerArgs.add_cli_args` of the 0.5.23 wheel. Replicas are separate processes (no --dp). Notes from that schema:
tensor parallelism is `--tp-size` (alias `--tensor-parallel-size`; there is no `--tp`), the FP8 KV cache is
`fp8_e4m3` (no plain `fp8`), and `--chunked-prefill-size -1` disables chunked prefill. Weights: the candidate's
checkpoint; SGLang reads a pre-quantized checkpoint's method from its config (no --quantization), and an
unquantized one planned at fp8 gets `--quantization fp8`.
"""

from __future__ import annotations

from serveplan.render.engines.base import (ReplicaLaunch, cuda_visible_devices, load_schema, local_host,
                                             multicast_off_env, online_quantization_args, parse_prometheus,
                                             pick_metrics, served_checkpoint, validate_flags)
from serveplan.planner.spec import Candidate, PlanRequest

VERSION = "0.5.23"
# AWQ and GPTQ in bf16, as for vLLM (render/engines/vllm.py): Marlin takes bf16 activations on SM 8.0+, and
# FlashAttention 3 over an FP8 cache needs a bf16 output (measured in vLLM 0.26.0; SGLang's FA3 backend is the same
# kernel family, not run here).
_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16", "int8": "bfloat16",
          "awq": "bfloat16", "gptq": "bfloat16"}
_KV = {"auto": "auto", "fp8": "fp8_e4m3"}
_METRICS = {
    "kv_cache_usage": ("sglang:token_usage",),
    "num_requests_running": ("sglang:num_running_reqs",),
    "num_requests_waiting": ("sglang:num_queue_reqs",),
    "prompt_tokens_total": ("sglang:prompt_tokens_total",),
    "generation_tokens_total": ("sglang:generation_tokens_total",),
}


class SGLangAdapter:
    name = "sglang"
    version = VERSION
    image = f"lmsysorg/sglang:v{VERSION}"
    oom_patterns = (
        r"CUDA out of memory",
        r"torch\.(cuda\.)?OutOfMemoryError",
        r"Not enough memory\. Please try to increase --mem-fraction-static",
        r"CUDA error: out of memory",
    )
    # SGLang's scheduler logs this, then takes the server down (its exit is caught anyway; the line names the cause)
    crash_patterns = (r"Scheduler hit an exception",)
    crash_hints: tuple[tuple[str, str], ...] = ()
    compile_stall_patterns: tuple[str, ...] = ()

    @property
    def schema(self) -> dict:
        return load_schema(self.name, self.version)

    def render(self, candidate: Candidate, request: PlanRequest, *, replica: int, gpus: list[int],
               port: int, host: str = "0.0.0.0", model: str | None = None, served_model_name: str | None = None,
               extra_args: tuple[str, ...] = ()) -> ReplicaLaunch:
        c = candidate
        ckpt = served_checkpoint(c, request)
        model = model or ckpt.id
        argv = ["python", "-m", "sglang.launch_server",
                "--model-path", model,
                "--tp-size", str(c.tp),
                "--pp-size", str(c.pp),
                "--max-running-requests", str(c.max_num_seqs),
                "--chunked-prefill-size", str(c.max_num_batched_tokens if c.chunked_prefill else -1),
                "--max-prefill-tokens", str(c.max_num_batched_tokens),
                "--mem-fraction-static", f"{c.gpu_memory_utilization:g}",
                "--context-length", str(c.max_model_len),
                "--dtype", _DTYPE[c.weight_dtype],
                "--kv-cache-dtype", _KV[c.kv_cache_dtype]]
        argv += online_quantization_args(ckpt)
        if not c.enable_prefix_caching:
            argv.append("--disable-radix-cache")
        argv += ["--host", host, "--port", str(port), "--served-model-name", served_model_name or model]
        argv += list(extra_args)
        env = {"CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpus), **multicast_off_env(request, c)}
        return ReplicaLaunch(replica=replica, argv=argv, env=env, port=port, gpus=list(gpus))

    def validate(self, argv: list[str]) -> list[str]:
        if argv[:3] != ["python", "-m", "sglang.launch_server"] and argv[:3] != ["python3", "-m", "sglang.launch_server"]:
            return [f"expected 'python -m sglang.launch_server ...', got {' '.join(argv[:3])!r}"]
        return validate_flags(argv[3:], self.schema)

    def health_url(self, host: str, port: int) -> str:
        return f"http://{local_host(host)}:{port}/health"

    def parse_metrics(self, text: str) -> dict[str, float]:
        return pick_metrics(parse_prometheus(text), _METRICS)


ADAPTER = SGLangAdapter()
