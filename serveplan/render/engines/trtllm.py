"""TensorRT-LLM adapter, pinned to TensorRT-LLM 1.2.1 (newest on PyPI when written; image
nvcr.io/nvidia/tensorrt-llm/release:1.2.1), PyTorch backend.

`trtllm-serve MODEL --backend pytorch ...` with the LLM-API options in a YAML file (`--extra_llm_api_options`),
carried in ReplicaLaunch.files and referenced by its relative name: the run directory must be the process's
working directory. Flags are checked against `schemas/trtllm-1.2.1.json` and the option keys against its
`options_file_keys` (see that file's `caveat`: the flags come from the newest serve.py the code index holds, not
from the v1.2.1 tag, which could not be fetched). Quantization is not a flag: TRT-LLM reads it from the
checkpoint (ModelOpt `hf_quant_config.json`): the candidate's checkpoint is a published ModelOpt one (fp8); the
planner offers no other quantized precision for this engine.
`--served_model_name` does not exist in that schema, so the served name is the model argument.
"""

from __future__ import annotations

import yaml

from serveplan.render.engines.base import (ReplicaLaunch, cuda_visible_devices, load_schema, local_host,
                                             multicast_off_env, parse_prometheus, pick_metrics, served_checkpoint,
                                             validate_flags)
from serveplan.planner.spec import Candidate, PlanRequest

VERSION = "1.2.1"
_METRICS = {
    "kv_cache_usage": ("trtllm_kv_cache_utilization", "trtllm:kv_cache_utilization", "kv_cache_utilization"),
    "num_requests_running": ("trtllm_num_requests_running", "trtllm:num_requests_running"),
    "num_requests_waiting": ("trtllm_num_requests_waiting", "trtllm:num_requests_waiting"),
    "prompt_tokens_total": ("trtllm_prompt_tokens_total", "trtllm:prompt_tokens_total"),
    "generation_tokens_total": ("trtllm_generation_tokens_total", "trtllm:generation_tokens_total"),
}


def options_file_name(replica: int) -> str:
    return f"trtllm-options-r{replica}.yaml"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class TRTLLMAdapter:
    name = "trtllm"
    version = VERSION
    image = f"nvcr.io/nvidia/tensorrt-llm/release:{VERSION}"
    oom_patterns = (
        r"CUDA out of memory",
        r"torch\.(cuda\.)?OutOfMemoryError",
        r"CUDA error: out of memory",
        r"cudaErrorMemoryAllocation",
        r"\[TensorRT-LLM\]\[ERROR\].*[Oo]ut of memory",
    )
    crash_patterns: tuple[str, ...] = ()  # its processes exit on a fatal error, which the supervisor sees
    crash_hints: tuple[tuple[str, str], ...] = ()
    compile_stall_patterns: tuple[str, ...] = ()

    @property
    def schema(self) -> dict:
        return load_schema(self.name, self.version)

    def options(self, candidate: Candidate, request: PlanRequest) -> dict:
        frac = request.engine.kv_free_memory_fraction if request.engine.name == "trtllm" else 0.9
        return {
            "kv_cache_config": {"free_gpu_memory_fraction": float(frac), "dtype": candidate.kv_cache_dtype,
                                "enable_block_reuse": candidate.enable_prefix_caching},
            "enable_chunked_prefill": candidate.chunked_prefill,
        }

    def render(self, candidate: Candidate, request: PlanRequest, *, replica: int, gpus: list[int],
               port: int, host: str = "0.0.0.0", model: str | None = None, served_model_name: str | None = None,
               extra_args: tuple[str, ...] = ()) -> ReplicaLaunch:
        c = candidate
        model = model or served_checkpoint(c, request).id
        opts = self.options(c, request)
        fname = options_file_name(replica)
        argv = ["trtllm-serve", model,
                "--backend", "pytorch",
                "--tp_size", str(c.tp),
                "--pp_size", str(c.pp),
                "--max_batch_size", str(c.max_num_seqs),
                "--max_num_tokens", str(c.max_num_batched_tokens),
                "--max_seq_len", str(c.max_model_len),
                "--kv_cache_free_gpu_memory_fraction", f"{opts['kv_cache_config']['free_gpu_memory_fraction']:g}",
                "--host", host, "--port", str(port),
                "--extra_llm_api_options", fname]
        argv += list(extra_args)
        env = {"CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpus), **multicast_off_env(request, c)}
        return ReplicaLaunch(replica=replica, argv=argv, env=env, port=port, gpus=list(gpus),
                             files={fname: yaml.safe_dump(opts, sort_keys=False)})

    def validate(self, argv: list[str]) -> list[str]:
        if argv[:1] != ["trtllm-serve"]:
            return [f"expected 'trtllm-serve ...', got {argv[:1]!r}"]
        return validate_flags(argv[1:], self.schema, max_positionals=1)

    def validate_options(self, text: str) -> list[str]:
        """Problems with an options YAML vs the LlmArgs keys recorded in the schema; [] if valid."""
        known = self.schema.get("options_file_keys", {})
        problems = []
        for key, value in _flatten(yaml.safe_load(text) or {}).items():
            spec = known.get(key)
            if spec is None:
                problems.append(f"options key {key} not checked against TensorRT-LLM {self.version}'s LlmArgs")
            elif spec.get("choices") and value not in spec["choices"]:
                problems.append(f"options key {key}={value!r}: not one of {spec['choices']}")
            elif spec["type"] == "bool" and not isinstance(value, bool):
                problems.append(f"options key {key}={value!r}: not a bool")
            elif spec["type"] in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(f"options key {key}={value!r}: not a number")
        return problems

    def health_url(self, host: str, port: int) -> str:
        return f"http://{local_host(host)}:{port}/health"

    def parse_metrics(self, text: str) -> dict[str, float]:
        return pick_metrics(parse_prometheus(text), _METRICS)


ADAPTER = TRTLLMAdapter()
