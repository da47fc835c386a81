"""CUDA-event timing with warmup, median of repetitions, inner loops captured in CUDA graphs."""

from __future__ import annotations

import math
import statistics
import time

from typing import Any, Callable


from serveplan.hwprofile.common import ROTATE_BYTES


class _Clock:
    """Times device work: CUDA events on a GPU, perf_counter around a synchronize elsewhere."""

    def __init__(self, torch: Any, device: str):
        self.torch, self.device = torch, device
        self.cuda = device.startswith("cuda")
        self.rotate_bytes = ROTATE_BYTES if self.cuda else 2 ** 20  # CPU runs are tests: keep them small

    def rotations(self, nbytes: int, cap: int = 64) -> int:
        """Copies of an operand of nbytes to rotate among so that one pass reads >= rotate_bytes."""
        return max(1, min(cap, math.ceil(self.rotate_bytes / max(nbytes, 1))))

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, run: Callable[[], None]) -> float:
        """Seconds that one call of run() takes on the device."""
        if self.cuda:
            a, b = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            a.record()
            run()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    def measure(self, fn: Callable[[int], Any], *, rotations: int = 1, budget_s: float = 0.02,
                min_reps: int = 3, max_reps: int = 20, target_s: float = 2e-4, max_inner: int = 64,
                warmup: int = 2, graph: bool = True) -> dict:
        """Median seconds of one fn(i) (i picks the rotation copy). Small ops run n_inner at a time,
        captured in a CUDA graph where possible, and the pass is divided by n_inner."""
        for i in range(warmup):
            fn(i % rotations)
        self.sync()
        est = max(self.time(lambda: fn(0)), 1e-7)
        n_inner = max(min(max_inner, math.ceil(target_s / est)), min(rotations, max_inner), 1)
        if n_inner > rotations:
            n_inner -= n_inner % rotations  # every copy equally often

        def loop() -> None:
            for i in range(n_inner):
                fn(i % rotations)

        run, how = loop, "eager"
        if graph and self.cuda:
            torch = self.torch
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    fn(0)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    loop()
                g.replay()
                self.sync()
                run, how = g.replay, "cuda_graph"
            except Exception:  # noqa: BLE001 - capture unsupported for this op: time eager launches
                self.sync()
                run, how = loop, "eager"
        run()
        self.sync()
        pass_s = max(self.time(run), 1e-9)
        reps = max(min_reps, min(max_reps, int(budget_s / pass_s)))
        times = [self.time(run) / n_inner for _ in range(reps)]
        return {"s": statistics.median(times), "reps": reps, "n_inner": n_inner, "timing": how}
