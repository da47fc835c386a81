"""Session 28, on the last ~4 minutes of one H200's lease: does the GPU hold its GEMM rate under a sustained load?
A large model's open loops read 9-15% slower per step than the short closed-loop points fitted (docs/accuracy.md,
session 28); if a minute of dense GEMMs pulls the SM clock down at the power limit, that would be it. Runs 8192^3
GEMMs back to back for SECONDS each in bf16 and then FP8 (torch._scaled_mm, per-tensor scales), and prints the
achieved TFLOP/s for every second; run it beside `nvidia-smi ... -lms 500` for the clocks and power.

    python3 benchmarks/gpu/sustained_gemm.py [SECONDS] > gemm.tsv
"""
import sys
import time

import torch


def run(kind: str, seconds: float) -> None:
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    if kind == "fp8":
        a, b = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn).t().contiguous().t()
        one = torch.ones((), device="cuda")
        mm = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
    else:
        mm = lambda: a @ b  # noqa: E731
    for _ in range(5):
        mm()
    torch.cuda.synchronize()
    t0 = time.time()
    while time.time() - t0 < seconds:
        t1, k = time.time(), 0
        while time.time() - t1 < 1.0:
            for _ in range(10):
                mm()
            torch.cuda.synchronize()
            k += 10
        dt = time.time() - t1
        print(f"{kind}\t{t1 - t0:.1f}\t{k * 2 * n ** 3 / dt / 1e12:.1f}", flush=True)


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 45
    print("dtype\tt_s\ttflops", flush=True)
    run("bf16", secs)
    run("fp8", secs)
