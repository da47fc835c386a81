"""Output in the format vLLM and uvicorn write it, so that log watchers meet the lines they meet in production."""

from __future__ import annotations

import sys
import time

VERSION = "0.26.0"
OOM_LINE = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
            "capacity of 79.19 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has "
            "78.16 GiB memory in use. Of the allocated memory 76.40 GiB is allocated by PyTorch, and 1.11 GiB "
            "is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


def log(msg: str, *, level: str = "INFO", where: str = "api_server.py:1870", err: bool = False) -> None:
    """A log line in vLLM's format: `INFO 07-15 10:11:12 [api_server.py:1870] message`."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [{where}] {msg}", file=sys.stderr if err else sys.stdout, flush=True)


def uvicorn(msg: str) -> None:
    print(f"INFO:     {msg}", flush=True)


def traceback_lines(frames: list[tuple[str, int, str]], last: str) -> None:
    print("Traceback (most recent call last):", file=sys.stderr)
    for path, line, fn in frames:
        print(f'  File "{path}", line {line}, in {fn}', file=sys.stderr)
    print(last, file=sys.stderr, flush=True)
