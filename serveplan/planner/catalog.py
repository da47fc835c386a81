"""The built-in catalogs (models, GPUs, traffic presets, quantization methods), read from `conf/`.

Names resolve through each file's `aliases`, case-insensitively. A local Hugging Face config.json (or a
model folder holding one) also makes a ModelSpec.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from serveplan.errors import ConfigError, UnknownName
from dataclasses import dataclass

from serveplan.fileio import yaml_load
from serveplan.planner.spec import GPUSpec, ModelSpec

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@lru_cache(maxsize=None)
def _group(group: str) -> dict[str, dict]:
    """option name -> YAML document, for one config group."""
    out = {}
    for f in sorted((CONF_DIR / group).glob("*.yaml")):
        with open(f) as fh:
            out[f.stem] = yaml_load(fh) or {}
    return out


def options(group: str) -> list[str]:
    return list(_group(group))


def _aliases(group: str) -> dict[str, str]:
    """lowercased name or alias -> option name."""
    out: dict[str, str] = {}
    for name, doc in _group(group).items():
        entry = doc.get("gpu", doc) if group == "hardware" else doc
        out[name.lower()] = name
        for a in entry.get("aliases", ()) or ():
            out.setdefault(str(a).lower(), name)
        for key in ("display_name", "hf_id"):
            if entry.get(key):
                out.setdefault(str(entry[key]).lower(), name)
    return out


def resolve(group: str, name: str, what: str) -> str:
    """Catalog option for a name or alias, or UnknownName listing close matches."""
    found = _aliases(group).get(name.strip().lower())
    if found is None:
        raise UnknownName(what, name, options(group))
    return found


def catalog_doc(group: str, option: str) -> dict:
    return _group(group)[option]


# ---------------------------------------------------------------------------------------------- GPUs
_GPUS_RE = re.compile(r"^\s*(?:(\d+)\s*[xX*]\s*)?(?:(\d+)\s*[xX*]\s*)?([A-Za-z][\w.\-]*)\s*$")


def parse_gpus(text: str) -> tuple[str, int, int]:
    """'2xA100' -> (a100-80gb-sxm, nodes=1, gpus_per_node=2); '2x8xH100' -> (h100-sxm, 2, 8); 'L4' -> 1 GPU."""
    m = _GPUS_RE.match(text)
    if not m:
        raise ConfigError(f"Cannot read --gpus '{text}': write COUNTxGPU or NODESxCOUNTxGPU, "
                          f"e.g. 2xA100, 8xH100, 2x8xH100, 1xRTX4090.")
    a, b, name = m.groups()
    if b is not None:
        nodes, per_node = int(a), int(b)
    else:
        nodes, per_node = 1, int(a) if a else 1
    if nodes < 1 or per_node < 1:
        raise ConfigError(f"--gpus '{text}' asks for no GPUs: counts must be at least 1.")
    if per_node > 16:
        raise ConfigError(f"--gpus '{text}': {per_node} GPUs per node is more than a node holds "
                          f"(at most 16); for several nodes write NODESxCOUNTxGPU, e.g. 2x8xH100.")
    return resolve("hardware", name, "GPU"), nodes, per_node


# ---------------------------------------------------------------------------------------------- device names
_SKIP = {"nvidia", "geforce", "tesla", "quadro", "generation", "graphics", "gpu", "tensor", "core"}


@dataclass(frozen=True)
class _Sig:
    family: str | None
    memory_gb: int | None
    form: str | None  # sxm | pcie | nvl


def _signature(text: str) -> _Sig:
    """Family (h100, a100, l40s, rtx4090), memory tag (80) and form factor of a GPU name, if named."""
    toks = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]
    family = memory = form = hbm = None
    i = 0
    while i < len(toks):
        t = toks[i]
        if m := re.fullmatch(r"(\d+)gb?", t):
            memory = memory or int(m.group(1))
        elif re.fullmatch(r"sxm\d*", t):
            form = "sxm"
        elif re.fullmatch(r"pcie?\d*", t):
            form = "pcie"
        elif t == "nvl":
            form = "nvl"
        elif re.fullmatch(r"hbm\d*e?", t):
            hbm = t
        elif t in _SKIP:
            pass
        elif family is None and t in ("rtx", "gtx", "titan") and i + 1 < len(toks) and toks[i + 1][:1].isdigit():
            family = t + toks[i + 1]
            i += 1
        elif family is None and re.fullmatch(r"[a-z]{1,3}\d{1,4}[a-z]?", t):
            family = t
        i += 1
    if family == "h100" and form is None and hbm == "hbm3":
        form = "sxm"  # nvidia-smi calls the SXM part "H100 80GB HBM3"; the others say PCIe / NVL
    return _Sig(family, memory, form)


def gpu_matches(plan_gpu, smi_name: str) -> bool:
    """Whether an nvidia-smi name is the plan's GPUSpec: same family; memory and form factor agree where
    both say. "NVIDIA H100 80GB HBM3" ~ h100-sxm; "NVIDIA A100-SXM4-80GB" ~ a100-80gb-sxm; "NVIDIA H100 PCIe"
    is not h100-sxm."""
    got = _signature(smi_name)
    if got.family is None:
        return False
    names = [plan_gpu.name, plan_gpu.display_name, *plan_gpu.aliases]
    sigs = [_signature(n) for n in names]
    if got.family not in {s.family for s in sigs if s.family}:
        return False
    want_mem = next((s.memory_gb for s in sigs[:2] if s.memory_gb), None)
    if want_mem and got.memory_gb and abs(want_mem - got.memory_gb) > 2:
        return False
    want_form = next((s.form for s in sigs[:2] if s.form), None)
    if want_form and got.form and want_form != got.form:
        return False
    return True


@lru_cache(maxsize=None)
def gpu_spec(option: str) -> GPUSpec:
    """The GPUSpec of a catalog GPU option (h100-sxm); the one place that builds one from conf/hardware."""
    return GPUSpec(**catalog_doc("hardware", option)["gpu"])


def gpu_for_device(device_name: str) -> str | None:
    """The catalog option for an nvidia-smi / torch device name ('NVIDIA H100 80GB HBM3' -> 'h100-sxm'), by
    the same rule `plan launch` checks GPUs with (gpu_matches); None when none or several match."""
    found = [o for o in options("hardware") if gpu_matches(gpu_spec(o), device_name)]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------- quantization
class QuantMethod(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    bytes_per_weight: float
    quality_cost_pct: float
    note: str = ""


@lru_cache(maxsize=None)
def _quant_table() -> dict[str, QuantMethod]:
    with open(CONF_DIR / "quantization.yaml") as f:
        doc = yaml_load(f)
    return {k: QuantMethod(name=k, **v) for k, v in doc["methods"].items()}


def quant_method(name: str) -> QuantMethod:
    table = _quant_table()
    if name not in table:
        raise UnknownName("quantization method", name, list(table))
    return table[name]


# ---------------------------------------------------------------------------------------------- HF configs
def model_from_hf_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a local Hugging Face config.json, or a folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(f"No Hugging Face config.json at '{path}': give a catalog model name or a path "
                          f"to config.json or a folder holding one.")
    from serveplan.fileio import read_document

    cfg = read_document(p, "model config")
    if "num_hidden_layers" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]
    need = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ConfigError(f"'{p}' lacks {', '.join(missing)}: serveplan reads decoder-only transformer "
                          f"configs (Llama, Mistral, Qwen, Gemma, Phi, Mixtral).")
    heads = cfg["num_attention_heads"]
    if not isinstance(heads, int) or not isinstance(cfg["hidden_size"], int) or heads <= 0:
        raise ConfigError(f"'{p}' gives num_attention_heads {heads!r} and hidden_size {cfg['hidden_size']!r}: "
                          f"both must be positive whole numbers.")
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    n_exp = cfg.get("num_local_experts") or cfg.get("num_experts") or 0
    inter = cfg.get("moe_intermediate_size") if n_exp and cfg.get("moe_intermediate_size") else \
        cfg.get("intermediate_size") or 4 * cfg["hidden_size"]
    arch = (cfg.get("architectures") or ["LlamaForCausalLM"])[0]
    from pydantic import ValidationError

    from serveplan.errors import validation_sentence

    try:
        return _model_spec(p, cfg, heads, head_dim, n_exp, inter, arch)
    except (ValidationError, TypeError, ZeroDivisionError) as e:
        why = (validation_sentence(e).removeprefix("Invalid configuration: ") if isinstance(e, ValidationError)
               else "its sizes are not positive whole numbers")
        raise ConfigError(f"'{p}' does not describe a model serveplan can plan: {why}") from None


def _model_spec(p: Path, cfg: dict, heads, head_dim, n_exp, inter, arch) -> ModelSpec:  # noqa: ANN001
    return ModelSpec(
        name=p.parent.name or "local-model", hf_id=str(p.parent), architecture=arch,
        num_layers=cfg["num_hidden_layers"], hidden_size=cfg["hidden_size"], intermediate_size=inter,
        num_attention_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=head_dim, vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        num_experts=n_exp, experts_per_token=cfg.get("num_experts_per_tok", 0) if n_exp else 0,
        qkv_bias=bool(cfg.get("attention_bias", arch.startswith("Qwen2"))),
        max_position_embeddings=cfg.get("max_position_embeddings", 8192),
    )


def looks_like_path(name: str) -> bool:
    return name.endswith(".json") or "/" in name or name.startswith(".") or Path(name).is_dir()
