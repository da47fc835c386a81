"""The quantization methods `serveplan quantize` offers, which planner weight dtype each checkpoint is, and
whether a serving GPU runs it; QuantizeError, the error family of the whole command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serveplan.errors import ConfigError, ServeplanError


class QuantizeError(ServeplanError):
    """A quantization cannot start or did not finish; nothing was written to OUT."""


@dataclass(frozen=True)
class Method:
    name: str
    planner_dtype: str        # conf/quantization.yaml key the planner uses for this checkpoint
    scheme: str               # compressed-tensors preset scheme
    calibrated: bool          # needs calibration data
    algorithm: str


METHODS: dict[str, Method] = {
    "awq": Method("awq", "awq", "W4A16_ASYM", True, "AWQ scaling + 4-bit asymmetric weights, group 128"),
    "gptq": Method("gptq", "gptq", "W4A16", True, "GPTQ 4-bit symmetric weights, group 128"),
    "fp8": Method("fp8", "fp8", "FP8_DYNAMIC", False,
                  "FP8 e4m3 weights per channel, dynamic per-token FP8 activations"),
    "w8a8": Method("w8a8", "int8", "W8A8", True,
                   "SmoothQuant + GPTQ INT8 weights per channel, dynamic per-token INT8 activations"),
}
ALIASES = {"int8": "w8a8"}  # the planner's weight dtype name (plan launch suggests `--method int8`)


def resolve_method(name: str) -> Method:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in METHODS:
        raise ConfigError(f"Unknown quantization method '{name}'; valid: {', '.join(METHODS)} "
                          f"(int8 is an alias of w8a8).")
    return METHODS[key]


def check_gpu(method: Method, gpu: Any) -> list[str]:
    """Whether the serving GPU (a planner GPUSpec) runs the method's kernels; notes, or QuantizeError."""
    notes = []
    if gpu.compute_capability < 8.0 and method.name in ("awq", "gptq", "fp8"):
        raise QuantizeError(f"{method.name} checkpoints run on vLLM's Marlin/FP8 kernels, which need compute "
                            f"capability 8.0 or newer; the {gpu.display_name} has {gpu.compute_capability:g}.")
    if method.name == "fp8" and not gpu.has_fp8_tensor_cores:
        notes.append(f"the {gpu.display_name} has no FP8 tensor cores: vLLM runs this checkpoint weight-only "
                     f"(FP8 Marlin, W8A16), so it saves the memory but not the FP8 compute")
    if method.name == "w8a8" and not gpu.has_int8_tensor_cores:
        raise QuantizeError(f"w8a8 needs INT8 tensor cores, which the {gpu.display_name} lacks; use fp8, gptq "
                            f"or awq for it.")
    return notes


def gpu_spec(name: str) -> Any:
    """The planner's GPUSpec for a catalog name or alias (A100, h100-sxm, 2xL40S)."""
    from serveplan.planner import catalog

    option, _, _ = catalog.parse_gpus(name)
    return catalog.gpu_spec(option)


def first_sentence(e: BaseException, limit: int = 200) -> str:
    """A library exception's first sentence, for a QuantizeError that stays one sentence."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text.split(". ")[0].rstrip(".")[:limit]
