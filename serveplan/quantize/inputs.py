"""What a quantization reads, checked before anything heavy runs: the model (a local folder, a Hugging Face id
or a catalog name), whether this host has the memory and disk for it, then the model and tokenizer themselves."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from serveplan.errors import ConfigError
from serveplan.quantize.methods import Method, QuantizeError, first_sentence
from serveplan.quantize.sizes import GB, predicted_bytes

HOST_MEMORY_FACTOR = 1.2   # bf16 weights + calibration activations, Hessians, Python overhead
DISK_MARGIN = 1.10         # checkpoint + config/tokenizer files + filesystem slack
DISK_EXTRA = 50e6


# ---------------------------------------------------------------------------------------------- model source
def resolve_model(model: str) -> tuple[str, Path | None, Any]:
    """(what to load: a local folder or a HF id, the local folder if any, planner ModelSpec)."""
    from serveplan.planner import catalog

    local = Path(model).expanduser()
    if local.is_dir():
        return str(local.resolve()), local.resolve(), catalog.model_from_hf_config(local)
    if local.suffix == ".json" or model.startswith((".", "/", "~")):
        raise ConfigError(f"--model '{model}' is not a model folder (one holding config.json and the weights).")
    hf_id = model
    try:
        option = catalog.resolve("model", model, "model")
        hf_id = catalog.catalog_doc("model", option).get("hf_id") or model
    except ConfigError:
        pass
    try:
        from huggingface_hub import hf_hub_download

        cfg = hf_hub_download(hf_id, "config.json")
    except Exception as e:  # noqa: BLE001 - network, auth, unknown repo: one sentence
        raise QuantizeError(f"Cannot read config.json of '{hf_id}' from the Hugging Face Hub "
                            f"({type(e).__name__}: {first_sentence(e)}); give a local "
                            f"model folder or check the name and your HF_TOKEN.") from None
    return hf_id, None, catalog.model_from_hf_config(cfg)


def download(hf_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hf_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model",
                                                             "*.txt", "*.py"]))
    except Exception as e:  # noqa: BLE001
        raise QuantizeError(f"Cannot download '{hf_id}' ({type(e).__name__}); check the name, your HF_TOKEN "
                            f"and the network.") from None


# ---------------------------------------------------------------------------------------------- host checks
def mem_available_bytes(meminfo: str | Path = "/proc/meminfo") -> float | None:
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def preflight(spec: Any, method: Method, out: Path, *, mem_available: float | None = None,
              disk_free: float | None = None) -> dict[str, float | None]:
    """Refuse before loading anything when the host cannot hold the bf16 model or the disk the output."""
    bf16 = predicted_bytes(spec, "bf16")["total"]
    need_mem = bf16 * HOST_MEMORY_FACTOR
    avail = mem_available_bytes() if mem_available is None else mem_available
    if avail is not None and need_mem > avail:
        raise QuantizeError(f"{spec.name} needs about {need_mem / GB:.1f} GB of host memory to quantize (its bf16 "
                            f"weights are {bf16 / GB:.1f} GB), but only {avail / GB:.1f} GB is available; use a "
                            f"machine with more memory.")
    need_disk = predicted_bytes(spec, method.planner_dtype)["total"] * DISK_MARGIN + DISK_EXTRA
    if disk_free is None:
        parent = out.resolve().parent
        while not parent.exists():
            parent = parent.parent
        disk_free = shutil.disk_usage(parent).free
    if need_disk > disk_free:
        raise QuantizeError(f"the {method.name} checkpoint of {spec.name} needs about {need_disk / GB:.2f} GB on "
                            f"disk, but only {disk_free / GB:.2f} GB is free beside {out}; free space or choose "
                            f"another -o.")
    return {"host_memory_needed_gb": need_mem / GB, "host_memory_available_gb": None if avail is None else avail / GB,
            "disk_needed_gb": need_disk / GB, "disk_free_gb": disk_free / GB}


# ---------------------------------------------------------------------------------------------- loading
def load_tokenizer(local: Path, source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(local))
    except Exception as e:  # noqa: BLE001
        raise QuantizeError(f"Cannot load the tokenizer of {source} ({type(e).__name__}); the model folder "
                            f"needs tokenizer files.") from None


def load_model(path: str | Path, for_eval: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"dtype": "auto"}
    if for_eval and torch.cuda.is_available():
        kw["device_map"] = "auto"
    return AutoModelForCausalLM.from_pretrained(str(path), **kw)


def free_model(model: Any) -> None:
    import gc

    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
