"""On the GPU machine: write random bf16 safetensors for a make_folder folder, so that vLLM loads real files (the
default load format) instead of initialising dummy weights in place. Session 24 compares vLLM's "peak activation"
both ways on the same folder: session 23's Qwen2.5-32B read ~1.5 GiB at 2,048 batched tokens, about the size of one
vocab x hidden bf16 matrix, where the model's per-token activations come to ~0.4 GiB, and a dummy-weights artifact
would not be there with a real checkpoint.

    python3 benchmarks/gpu/random_weights.py FOLDER    # FOLDER/config.json from make_folder (unquantized)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(sys.argv[1])
    cfg = json.loads((folder / "config.json").read_text())
    if "quantization_config" in cfg:
        raise SystemExit(f"{folder}: random weights are written for unquantized folders only")
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))  # save_pretrained rewrote it: keep make_folder's
    n = sum(p.numel() for p in model.parameters())
    print(f"{folder}: {n / 1e9:.2f}B random bf16 parameters written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
