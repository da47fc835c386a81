"""Which checkpoint serves a planned weight precision on an engine (data: conf/checkpoints.yaml).

The order, for a model x weight method x engine:
  1. a checkpoint you named for that method (`--checkpoint` / `model.checkpoints.awq=...`);
  2. the first published pre-quantized checkpoint whose format the engine loads;
  3. fp8 on vLLM/SGLang/TGI, bnb-nf4 on vLLM 0.26/TGI: the base checkpoint, quantized by the engine while it loads
     (`--quantization fp8` / `bitsandbytes`),
     which holds the unquantized weights first (memory.load_peak_bytes checks that they fit);
  4. int8/awq/gptq on vLLM/SGLang/TGI: `needs_quantize`: `quantize` (llm-compressor, compressed-tensors) makes it;
  5. otherwise None: the engine cannot serve that precision of this model, and the planner does not offer it
     (TensorRT-LLM reads its precision from a ModelOpt checkpoint, which serveplan does not make).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from serveplan.errors import ConfigError
from serveplan.fileio import yaml_load
from serveplan.planner.spec import Checkpoint, ModelSpec

CONF_FILE = Path(__file__).resolve().parent.parent / "conf" / "checkpoints.yaml"

# Formats each engine detects from a checkpoint's quantization_config, per weight method (sources: the notes
# at the end of conf/checkpoints.yaml). vLLM loads them all; SGLang 0.5 loads compressed-tensors for FP8 and
# INT8 W8A8 but not its 4-bit W4A16 (llm-compressor issue #1330); TensorRT-LLM 1.2's PyTorch backend reads
# ModelOpt FP8 (hf_quant_config.json), its ModelOpt W4A16-AWQ path is unconfirmed, so it is not offered.
_ALL = frozenset({"compressed-tensors", "fp8", "awq", "gptq", "modelopt"})
ENGINE_FORMATS: dict[str, dict[str, frozenset[str]]] = {
    "vllm": {"fp8": _ALL, "int8": _ALL, "awq": _ALL, "gptq": _ALL},
    "sglang": {"fp8": frozenset({"compressed-tensors", "fp8", "modelopt"}),
               "int8": frozenset({"compressed-tensors"}),
               "awq": frozenset({"awq"}), "gptq": frozenset({"gptq"})},
    "trtllm": {"fp8": frozenset({"modelopt"})},
    # TGI 3.3.7 reads quant_method fp8 / awq / gptq and compressed-tensors FP8, INT8 W8A8 and INT W4A16 (symmetric
    # or not: server/text_generation_server/layers/compressed_tensors/loader.py); no ModelOpt loader.
    "tgi": {"fp8": frozenset({"compressed-tensors", "fp8"}), "int8": frozenset({"compressed-tensors"}),
            "awq": frozenset({"awq", "compressed-tensors"}), "gptq": frozenset({"gptq", "compressed-tensors"})},
}
# Engines that quantize an unquantized checkpoint to this precision while loading it.
ONLINE = {"vllm": frozenset({"fp8", "bnb-nf4"}), "sglang": frozenset({"fp8"}), "tgi": frozenset({"fp8", "bnb-nf4"})}
# Engine versions whose parser has bitsandbytes load-time quantization (vLLM's `--quantization bitsandbytes`,
# TGI's `--quantize bitsandbytes-nf4`): vLLM 0.33.0 dropped the value. tests/test_quantization_bnb.py checks this
# table against the flag schemas (the planner may not read render/'s schemas itself).
BNB_NF4_VERSIONS = {"vllm": ("0.26.0",), "tgi": ("3.3.7",)}
# The quantize method per precision; `quantize` writes compressed-tensors, which an engine loads where
# ENGINE_FORMATS says so.
QUANTIZE_METHOD = {"fp8": "fp8", "int8": "w8a8", "awq": "awq", "gptq": "gptq"}
UNQUANTIZED = ("bf16", "fp16")


@lru_cache(maxsize=None)
def published_table() -> dict[str, dict[str, tuple[dict, ...]]]:
    """model name -> weight method -> published checkpoints (id, format, found), best first."""
    with open(CONF_FILE) as f:
        doc = yaml_load(f) or {}
    return {m: {w: tuple(v or ()) for w, v in (methods or {}).items()} for m, methods in doc.items()}


def loads(engine: str, weight_dtype: str) -> frozenset[str]:
    """Checkpoint formats `engine` serves `weight_dtype` from."""
    return ENGINE_FORMATS.get(engine, {}).get(weight_dtype, frozenset())


def published(model: ModelSpec, weight_dtype: str) -> tuple[dict, ...]:
    return published_table().get(model.name, {}).get(weight_dtype, ())


def base_id(model: ModelSpec) -> str:
    return model.hf_id or model.name


def local_quantized_path(model: ModelSpec, weight_dtype: str) -> str:
    """Where the quantize step writes a missing checkpoint (relative to the plan folder / model volume)."""
    return f"checkpoints/{model.name}-{QUANTIZE_METHOD[weight_dtype]}"


def _folder_config(path: str | Path) -> dict | None:
    """A local checkpoint folder's config.json, or None when there is none to read (an HF id, say)."""
    try:
        cfg = json.loads((Path(path).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def detect_format(path: str | Path) -> tuple[str | None, str]:
    """(weight method, format) a local checkpoint folder declares in its config.json; (None, 'hf') when it
    declares no quantization, (None, 'auto') when it cannot be read (an HF id, say)."""
    cfg = _folder_config(path)
    if cfg is None:
        return None, "auto"
    q = cfg.get("quantization_config")
    if not isinstance(q, dict):
        return (None, "hf")
    method = str(q.get("quant_method", "")).lower()
    if method in ("awq", "gptq", "fp8"):
        return method, method
    if method == "modelopt":
        algo = str(q.get("quant_algo", "")).upper()
        return ("fp8" if "FP8" in algo else "awq" if "AWQ" in algo else None), "modelopt"
    if method == "compressed-tensors":
        return _compressed_tensors_method(q), "compressed-tensors"
    return None, "auto"


def gptq_layers_unfindable(path: str | Path) -> bool:
    """A local AutoGPTQ folder in which vLLM cannot tell which layers are quantized: its quantization_config lists no
    modules_in_block_to_quantize and it holds no *.safetensors. vLLM (0.26.0's AutoGPTQConfig.maybe_update_config)
    reads the quantized layers from the safetensors' dtypes when the list is absent; with none it quantizes no layer,
    so dummy weights run in bf16 (session 19) and real .bin weights do not load into the bf16 layers."""
    q = (_folder_config(path) or {}).get("quantization_config")
    if not isinstance(q, dict) or str(q.get("quant_method", "")).lower() != "gptq" \
            or q.get("modules_in_block_to_quantize"):
        return False
    return not any(Path(path).expanduser().glob("*.safetensors"))


def _compressed_tensors_method(q: dict) -> str | None:
    for group in (q.get("config_groups") or {}).values():
        w = (group or {}).get("weights") or {}
        a = (group or {}).get("input_activations") or {}
        bits, typ = w.get("num_bits"), w.get("type")
        if bits == 8 and typ == "float":
            return "fp8"
        if bits == 8 and typ == "int":
            return "int8" if a else None
        if bits == 4 and typ == "int":
            return "awq" if not w.get("symmetric", True) else "gptq"
    return None


def bnb_nf4_servable(engine: str, version: str) -> bool:
    """The engine at this version quantizes a bf16 checkpoint to bitsandbytes NF4 while loading it."""
    return version in BNB_NF4_VERSIONS.get(engine, ())


def checkpoint_for(model: ModelSpec, weight_dtype: str, engine: str) -> Checkpoint | None:
    """The checkpoint that serves `weight_dtype` of `model` on `engine` (see the module docstring)."""
    base = base_id(model)
    if weight_dtype in UNQUANTIZED:
        return Checkpoint(id=base, source="base", format="hf", weight_dtype=weight_dtype, base_id=base)
    mine = model.checkpoints.get(weight_dtype)
    if mine:
        return user_checkpoint(mine, weight_dtype, model)
    for entry in published(model, weight_dtype):
        if entry.get("format") in loads(engine, weight_dtype):
            return Checkpoint(id=entry["id"], source="published", format=entry["format"],
                              weight_dtype=weight_dtype, base_id=base, found=entry.get("found", ""))
    if weight_dtype in ONLINE.get(engine, ()):
        return Checkpoint(id=base, source="online", format="hf", weight_dtype=weight_dtype, base_id=base)
    if weight_dtype in QUANTIZE_METHOD and "compressed-tensors" in loads(engine, weight_dtype):
        return Checkpoint(id=local_quantized_path(model, weight_dtype), source="needs_quantize",
                          format="compressed-tensors", weight_dtype=weight_dtype, base_id=base,
                          quantize_method=QUANTIZE_METHOD[weight_dtype])
    return None


def user_checkpoint(path_or_id: str, weight_dtype: str, model: ModelSpec) -> Checkpoint:
    """A checkpoint you named (`--checkpoint`, `model.checkpoints`, `plan launch --model`) for a planned
    precision. A local folder must declare that precision: an unquantized one serves fp8 by the engine's
    load-time quantization, and is refused for int8/awq/gptq, which would otherwise run unquantized."""
    local = Path(path_or_id).expanduser()
    ident = str(local.resolve()) if local.exists() else path_or_id
    method, fmt = detect_format(ident)
    base = base_id(model)
    if weight_dtype in UNQUANTIZED:
        if fmt not in ("hf", "auto"):
            raise ConfigError(f"The checkpoint {ident} is {method or fmt}-quantized, but the plan serves "
                              f"{weight_dtype} weights; name an unquantized checkpoint, or plan with "
                              f"search.allowed_quant=[{method or weight_dtype}].")
        return Checkpoint(id=ident, source="base", format="hf", weight_dtype=weight_dtype, base_id=base)
    if fmt == "hf":
        if weight_dtype in ("fp8", "bnb-nf4"):
            return Checkpoint(id=ident, source="online", format="hf", weight_dtype=weight_dtype, base_id=base)
        raise ConfigError(f"The checkpoint {ident} is not quantized (its config.json has no quantization_config), "
                          f"but the plan serves {weight_dtype} weights: make one with `quantize --model {ident} "
                          f"--method {QUANTIZE_METHOD[weight_dtype]} -o ./ckpt` and name that.")
    if method is not None and method != weight_dtype and not {method, weight_dtype} <= {"awq", "gptq"}:
        raise ConfigError(f"The checkpoint {ident} is {method}-quantized, but the plan serves {weight_dtype} "
                          f"weights; name a {weight_dtype} checkpoint, or re-plan with "
                          f"search.allowed_quant=[{method}].")
    return Checkpoint(id=ident, source="user", format=fmt, weight_dtype=weight_dtype, base_id=base)
