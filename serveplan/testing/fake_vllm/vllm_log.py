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


def log(msg: str, *, level: str = "INFO", where: str = "api_server.py:1870", err: bool = False,
        proc: str = "") -> None:
    """A log line in vLLM's format: `INFO 07-15 10:11:12 [api_server.py:1870] message`; with `proc`, the
    process tag a multi-process engine puts first: `(Worker_TP0 pid=7853) ERROR 11-29 00:06:03 [...] ...`."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    tag = f"({proc}) " if proc else ""
    print(f"{tag}{level} {stamp} [{where}] {msg}", file=sys.stderr if err else sys.stdout, flush=True)


def worker_crash_lines(pid: int) -> None:
    """What vLLM 0.26.0 wrote when a TP=2 worker failed in its memory profile (session 25, two H200s without NVLink
    multicast; benchmarks/gpu/results/session25/T2S/server.log.gz): the worker's traceback, the engine core's, then
    a teardown error, after which the API server stayed up and /health never answered."""
    for rank in (0, 1):
        log("Auto-selected flashinfer allreduce backend: mnnvl", where="flashinfer_all_reduce.py:121",
            proc=f"Worker_TP{rank} pid={pid + 1 + rank}")
    print("Error: Failed to initialize the TMA descriptor 700", flush=True)
    for rank in (1, 0):
        proc = f"Worker_TP{rank} pid={pid + 1 + rank}"
        for line in ("WorkerProc hit an exception.", "Traceback (most recent call last):",
                     '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_worker.py", line 465, '
                     'in determine_available_memory', "    self.model_runner.profile_run()",
                     "RuntimeError: cutlass_gemm_caller, /workspace/csrc/libtorch_stable/quantization/w8a8/"
                     "cutlass/c3x/cutlass_gemm_caller.cuh:62, Error Internal"):
            log(line, level="ERROR", where="multiproc_executor.py:1007", proc=proc, err=True)
    for line in ("EngineCore failed to start.", "Traceback (most recent call last):",
                 "Exception: WorkerProc initialization failed"):
        log(line, level="ERROR", where="core.py:1330", proc=f"EngineCore pid={pid + 3}", err=True)
    print("Exception raised from ~AllocationRef at /pytorch/torch/csrc/distributed/c10d/symm_mem/"
          "CUDASymmetricMemory.cu:51 (most recent call first):", file=sys.stderr, flush=True)


def uvicorn(msg: str) -> None:
    print(f"INFO:     {msg}", flush=True)


def traceback_lines(frames: list[tuple[str, int, str]], last: str) -> None:
    print("Traceback (most recent call last):", file=sys.stderr)
    for path, line, fn in frames:
        print(f'  File "{path}", line {line}, in {fn}', file=sys.stderr)
    print(last, file=sys.stderr, flush=True)
