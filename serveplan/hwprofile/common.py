"""What every measurement shares: the shapes and sizes measured, the error, rounding."""

from __future__ import annotations

import math



from serveplan.errors import ServeplanError

TORCH_MISSING = "profile needs PyTorch with CUDA: pip install 'serveplan[profile]'"
DTYPES = ("bf16", "fp8", "int8")
HEAD_DIM = 128
MODELS: dict[str, dict[str, int]] = {
    "llama-8b": {"hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8},
    "llama-70b": {"hidden": 8192, "intermediate": 28672, "heads": 64, "kv_heads": 8},
    "qwen-32b": {"hidden": 5120, "intermediate": 27648, "heads": 64, "kv_heads": 8},
}
TP_SPLITS = (1, 2, 4, 8)
TOKENS = tuple(2 ** i for i in range(15))  # 1 .. 16384
PREFILL_SEQ = tuple(2 ** i for i in range(7, 15))  # 128 .. 16384
DECODE_BATCH = (1, 4, 16, 64, 256)
DECODE_CONTEXT = (512, 2048, 8192, 32768)
COLL_SIZES = tuple(4096 * 4 ** i for i in range(10))  # 4 KiB .. 1 GiB
ROTATE_BYTES = 256 * 2 ** 20  # weights/KV read per timed pass at least this much, so L2 (50 MB on Hopper) can't hold them
KV_BYTES_PER_TOKEN = 2 * 8 * HEAD_DIM * 2  # K and V, one layer, 8 KV heads, bf16
NO_MULTICAST_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}

class ProfileError(ServeplanError):
    """Profiling cannot run here (no PyTorch, no CUDA, unknown GPU)."""


def catalog_name(gpu_name: str) -> str | None:
    """The catalog name for an nvidia-smi / torch device name ('NVIDIA H100 80GB HBM3' -> 'h100-sxm'): the
    catalog's own matcher, so `find_profile` finds what `profile` names (None: pass --gpu)."""
    from serveplan.planner.catalog import gpu_for_device

    return gpu_for_device(gpu_name)


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x
