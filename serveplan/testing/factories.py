"""Specs for tests and notebooks, built from the catalog (conf/) rather than by hand: a model, a GPU, an
inventory, an engine config, each with field overrides. One place, so that a catalog change reaches every
test that builds one."""

from __future__ import annotations

from typing import Any

from serveplan.planner import catalog
from serveplan.planner.spec import EngineConfig, GPUSpec, Inventory, ModelSpec


def model(name: str = "llama-3.1-8b", **override: Any) -> ModelSpec:
    """A catalog model by name or alias (llama-8b), with fields overridden."""
    option = catalog.resolve("model", name, "model")
    return ModelSpec(**{**catalog.catalog_doc("model", option), **override})


def gpu(name: str = "h100-sxm", **override: Any) -> GPUSpec:
    """A catalog GPU by name or alias (H100, a100), with fields overridden."""
    spec = catalog.gpu_spec(catalog.resolve("hardware", name, "GPU"))
    return spec.model_copy(update=override) if override else spec


def inventory(gpu_name: str = "h100-sxm", gpus_per_node: int = 1, nodes: int = 1, **gpu_override: Any) -> Inventory:
    return Inventory(gpu=gpu(gpu_name, **gpu_override), gpus_per_node=gpus_per_node, nodes=nodes)


def engine(name: str = "vllm", **override: Any) -> EngineConfig:
    """An engine's conf (conf/engine/NAME.yaml), with fields overridden."""
    return EngineConfig(**{**catalog.catalog_doc("engine", name), **override})
