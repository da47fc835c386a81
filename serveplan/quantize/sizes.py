"""Checkpoint sizes: what the planner's memory model predicts for the weights, and what is on disk."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

GB = 1e9


def predicted_bytes(spec: Any, planner_dtype: str) -> dict[str, float]:
    """The planner's weight bytes at TP1/PP1: all weights, and the linear layers alone."""
    from serveplan.planner.catalog import quant_method
    from serveplan.planner.memory import linear_params_per_gpu_per_layer, weight_bytes_per_gpu

    total = weight_bytes_per_gpu(spec, 1, 1, planner_dtype)
    linear = spec.num_layers * linear_params_per_gpu_per_layer(spec, 1) * quant_method(planner_dtype).bytes_per_weight
    return {"total": total, "linear": linear}


def safetensors_sizes(folder: Path) -> dict[str, int]:
    """Bytes of tensor data in a folder's *.safetensors (from their headers), split into linear layers
    (projections with their scales/zero points) and the rest (embeddings, LM head, norms)."""
    out = {"total": 0, "linear": 0, "other": 0, "files": 0}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        out["files"] += 1
        for name, t in header.items():
            if name == "__metadata__":
                continue
            size = t["data_offsets"][1] - t["data_offsets"][0]
            other = any(k in name for k in ("embed_tokens", "lm_head", "norm", "wte", "wpe"))
            out["other" if other else "linear"] += size
            out["total"] += size
    return out
