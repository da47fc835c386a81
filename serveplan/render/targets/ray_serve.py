"""ray/serve_llm.py: the winner as a Ray Serve LLM application (`serve run ray/serve_llm.py:app`), for vLLM plans.

LLMConfig(model_loading_config, engine_kwargs, deployment_config, accelerator_type, runtime_env) and
build_openai_app({"llm_configs": [...]}) as ray 2.60.0 defines them (ray/serve/llm/__init__.py,
ray/llm/_internal/serve/core/configs/llm_config.py); tests check every field name used against names extracted
from that wheel, and every engine_kwargs key against the plan's vLLM flag schema (--foo-bar -> foo_bar).
ray[llm]==2.60.0 itself pins vllm 0.29.0: the engine kwargs are the plan's vLLM version's (see the file's note).
"""

from __future__ import annotations

import json
import pprint

from serveplan.render.targets.cloud import RAY_ACCELERATORS, vllm_env, vllm_options
from serveplan.render.targets.common import Deployment, header

RAY_VERSION = "2.60.0"
RAY_PINNED_VLLM = "0.29.0"  # ray[llm]==2.60.0's Requires-Dist


def _value(flag: str, value: str | None, flags: dict) -> object:
    """A flag's value as the engine argument's Python value: bare flags True (--no-x: x False), numbers as
    numbers, JSON (e.g. --compilation-config) as dicts."""
    if value is None:
        return True
    kind = flags[flag]["type"]
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "json_or_str" and value.startswith("{"):
        return json.loads(value)
    return value


def engine_kwargs(dep: Deployment) -> dict[str, object]:
    """The vLLM engine arguments of the winner, keyed as AsyncEngineArgs fields (--foo-bar -> foo_bar)."""
    flags = dep.adapter.schema["flags"]  # type: ignore[attr-defined]
    out: dict[str, object] = {}
    for flag, value in vllm_options(dep):
        name = flag[2:]
        if value is None and name.startswith("no-") and f"--{name[3:]}" in flags:
            out[name[3:].replace("-", "_")] = False
            continue
        out[name.replace("-", "_")] = _value(flag, value, flags)
    return out


def serve_llm_py(dep: Deployment) -> str:
    c = dep.candidate
    gpu = dep.request.inventory.gpu.name
    accel = RAY_ACCELERATORS.get(gpu)
    config: dict[str, object] = {
        "model_loading_config": {"model_id": dep.served_model_name, "model_source": dep.model},
        "engine_kwargs": engine_kwargs(dep),
        "deployment_config": {"num_replicas": c.replicas},
    }
    if accel:
        config["accelerator_type"] = accel
    env = vllm_env(dep)
    if env:
        config["runtime_env"] = {"env_vars": env}
    body = pprint.pformat(config, sort_dicts=False, width=110)  # Python literals: True/False, not JSON
    accel_note = ("" if accel else
                  f"# accelerator_type is left out: Ray names no accelerator type for {gpu}; Ray places the "
                  "replicas on any GPU.\n")
    local = ("# model_source is a local folder: it must exist at this path on every node (or name a copy "
             "there).\n" if dep.local_checkpoint else "")
    return (header(dep) +
            f"# Ray Serve LLM (ray {RAY_VERSION}): serve run ray/serve_llm.py:app  (OpenAI API on port 8000)\n"
            f"# {c.replicas} replica(s) of TP={c.tp} x PP={c.pp}; Ray places each replica's {c.gpus_per_replica} "
            "GPU worker(s).\n"
            f"# engine_kwargs are vLLM {dep.adapter.version}'s engine arguments, checked against its flag schema; "
            f"ray[llm]=={RAY_VERSION} pins vllm {RAY_PINNED_VLLM},\n"
            f"# so install vllm=={dep.adapter.version} on the cluster (pip install 'ray[serve]=={RAY_VERSION}' "
            f"vllm=={dep.adapter.version}) or re-plan with engine.version matching your vLLM.\n"
            + accel_note + local +
            "from ray.serve.llm import LLMConfig, build_openai_app\n\n"
            f"llm_config = LLMConfig(**{body})\n\n"
            'app = build_openai_app({"llm_configs": [llm_config]})\n')
