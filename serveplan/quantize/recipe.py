"""llm-compressor: importing it, each method's recipe (the modifiers), and applying it with `oneshot`, a
library failure told in one sentence."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from serveplan.errors import ConfigError, ServeplanError
from serveplan.quantize.methods import Method, QuantizeError, first_sentence

MISSING = "quantize needs llm-compressor: pip install 'serveplan[quantize]'"


def import_llmcompressor() -> Any:
    # llm-compressor logs (loguru) to stdout, from import time on; send that to stderr so that stdout holds only
    # our output (--json). Its LLM_COMPRESSOR_LOG_* environment variables still apply.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import llmcompressor  # noqa: F401
            from llmcompressor import oneshot  # noqa: F401
        except ImportError:
            raise QuantizeError(MISSING) from None
        if hasattr(llmcompressor, "configure_logger") and hasattr(llmcompressor, "LoggerConfig"):
            llmcompressor.configure_logger(llmcompressor.LoggerConfig())
    return llmcompressor


# Left in bf16 by every method: the LM head, and MoE routers (Qwen-MoE's mlp.gate and shared_expert_gate, Mixtral's
# block_sparse_moe.gate), as llm-compressor's own MoE examples and the published checkpoints leave them. vLLM builds
# Mixtral's router without the quantization config (no parameter for a quantized router's scales); a router is a
# tiny share of the weights and decides every token's experts.
IGNORE = ["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$", "re:.*block_sparse_moe.gate$"]


def build_recipe(method: Method) -> list:
    """The llm-compressor modifiers for a method (API of llm-compressor 0.14)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if method.name == "fp8":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=list(IGNORE))]
    if method.name == "gptq":
        return [GPTQModifier(targets="Linear", scheme="W4A16", ignore=list(IGNORE))]
    if method.name == "w8a8":
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(targets="Linear", scheme="W8A8", ignore=list(IGNORE))]
    if method.name == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both"),
                QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=list(IGNORE))]
    raise ConfigError(f"Unknown quantization method '{method.name}'.")


def apply_recipe(model: Any, method: Method, calibration: dict[str, Any], source: str) -> None:
    """Quantize the loaded model in place with the method's recipe and oneshot's calibration arguments."""
    from llmcompressor import oneshot

    try:
        with _cpu_safe_pinning():
            oneshot(model=model, recipe=build_recipe(method), **calibration)
    except ServeplanError:
        raise
    except Exception as e:  # noqa: BLE001 - a library failure: one sentence (SERVEPLAN_DEBUG=1: traceback)
        if os.environ.get("SERVEPLAN_DEBUG"):
            raise
        raise QuantizeError(f"llm-compressor failed to quantize {source} with {method.name}: "
                            f"{type(e).__name__}: {first_sentence(e)} (SERVEPLAN_DEBUG=1 shows the "
                            f"traceback).") from None


@contextlib.contextmanager
def _cpu_safe_pinning() -> Iterator[None]:
    """llm-compressor 0.14's AWQ pins cached activations (IntermediatesCache.pin_memory) unconditionally, which
    raises 'Cannot access accelerator device when none is available' on a CPU-only machine. Pinning only speeds
    host-to-device copies, so without an accelerator it is made a no-op for the duration of the run."""
    import torch

    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        yield
        return
    has_acc = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    if has_acc or not hasattr(IntermediatesCache, "pin_memory"):
        yield
        return
    original = IntermediatesCache.__dict__["pin_memory"]
    IntermediatesCache.pin_memory = lambda self, *a, **k: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]
