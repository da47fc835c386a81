"""NCCL all-reduce / all-gather times across the visible GPUs, NVLink multicast off."""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import statistics
import tempfile
import time




from serveplan.hwprofile.common import COLL_SIZES, NO_MULTICAST_ENV, _sig
from serveplan.hwprofile.gemm import _random
from serveplan.hwprofile.timing import _Clock


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_sizes(world: int) -> list[int]:
    out = [n for n in (2, 4, 8, 16, 32, 64) if n <= world]
    return out + ([world] if world not in out and world > 1 else [])


def _collective_worker(rank: int, world: int, port: int, sizes: list[int], out_file: str, backend: str,
                       device_type: str) -> None:
    """One rank: time all-reduce and all-gather of bf16 buffers in groups of the first n ranks."""
    os.environ.update(NO_MULTICAST_ENV)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch
    import torch.distributed as dist

    cuda = device_type == "cuda"
    device = f"cuda:{rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=_dt.timedelta(minutes=5),
                            **({"device_id": torch.device(device)} if cuda else {}))
    clock = _Clock(torch, device)
    flag = torch.ones(1, device=device)
    all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13
    results: dict[str, dict[str, dict]] = {"allreduce": {}, "allgather": {}}
    for n in _group_sizes(world):
        group = dist.new_group(list(range(n)))
        if rank < n:
            for op in ("allreduce", "allgather"):
                times = []
                for size in sizes:
                    nel = size // 2
                    if op == "allreduce":
                        buf = _random(torch, (nel,), torch.bfloat16, device)
                        call = lambda: dist.all_reduce(buf, group=group)  # noqa: E731
                    else:
                        out = torch.empty(nel - nel % n, dtype=torch.bfloat16, device=device)
                        inp = _random(torch, (out.numel() // n,), torch.bfloat16, device)
                        call = lambda: all_gather(out, inp, group=group)  # noqa: E731
                    iters = 20 if size <= 16 * 2 ** 20 else 5
                    for _ in range(3):
                        call()
                    reps = []
                    for _ in range(3):
                        dist.all_reduce(flag, group=group)  # line the ranks up
                        clock.sync()

                        def run() -> None:
                            for _ in range(iters):
                                call()
                        reps.append(clock.time(run) / iters)
                    t = torch.tensor([statistics.median(reps)], dtype=torch.float64, device=device)
                    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)  # a collective ends on its slowest rank
                    times.append(_sig(float(t.item()) * 1e6))
                    del call
                results[op][str(n)] = {"bytes": list(sizes), "time_us": times}
        dist.barrier()
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


def measure_collectives(world: int, sizes: tuple[int, ...] = COLL_SIZES, *, backend: str = "nccl",
                        device_type: str = "cuda", timeout_s: float = 600.0) -> dict:
    """Spawn one process per GPU on a free localhost port; returns {allreduce: {"n": curve}, allgather: ...}."""
    import torch.multiprocessing as mp

    os.environ.update(NO_MULTICAST_ENV)  # children inherit it; NVLink multicast stays off
    with tempfile.TemporaryDirectory(prefix="serveplan-coll-") as d:
        out_file = os.path.join(d, "collectives.json")
        ctx = mp.spawn(_collective_worker, args=(world, _free_port(), list(sizes), out_file, backend, device_type),
                       nprocs=world, join=False)
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(f"collectives did not finish in {timeout_s:.0f} s")
        with open(out_file) as f:
            return json.load(f)
