"""The linear layers' GEMMs by M (tokens in the step), with the kernels vLLM 0.26.0 runs and the ones the hardware
profile times, on the GPU this runs on (issue 14, session 16).

The 70B FP8's decode step is 18-37% longer than the model's at batches of 24-40 and within 4% at 16 and 48-64
(session 11b's L, session 12's H2 at TP=2, session 15b's SE: `benchmarks/decode_steps.py`). The model reads the
weights of a step under 256 tokens at the profile's copy bandwidth, flat in M. vLLM 0.26.0 runs FP8 linear layers
through its own CUTLASS kernel (`Selected CutlassFP8ScaledMMLinearKernel` in every FP8 server log), whose tile
config changes with M; the profile times `torch._scaled_mm`. Per shape and M this times, each in a CUDA graph over
weights rotated past L2 (serveplan's profile clock):
  bf16           torch.mm(a, w.t())                           (vLLM's bf16 linear: cuBLAS)
  fp8-torch      torch._scaled_mm, per-tensor scales          (the hardware profile's FP8 curve)
  fp8-cutlass-t  vLLM cutlass_scaled_mm, per-tensor scales    (online `--quantization fp8`)
  fp8-cutlass-tc vLLM cutlass_scaled_mm, per-token x per-channel scales (compressed-tensors FP8_DYNAMIC)
  quant-t/-tok   vLLM scaled_fp8_quant of the activations, dynamic per tensor / per token (one per GEMM input)
and, asked for with --kernels (session 17: INT8 W8A8 had never been timed against the profile's int8 curve),
  int8-torch     torch._int_mm                                (the hardware profile's int8 curve; refuses M <= 16)
  int8-cutlass-tc vLLM cutlass_scaled_mm on int8, per-token x per-channel scales (compressed-tensors W8A8 int8)
  quant-int8-tok vLLM scaled_int8_quant of the activations, dynamic per token
and writes one JSON row per (shape, kernel, M) to --out.

    python3 benchmarks/gpu/fp8_gemm_by_m.py --out /tmp/s16/gemm.jsonl     # needs vLLM (vllm_env.sh) and a GPU
    python3 benchmarks/gpu/fp8_gemm_by_m.py --out g.jsonl --m 129,144,...  # other M (the table has four points
                                                                           # between 129 and 511)
    python3 benchmarks/gpu/fp8_gemm_by_m.py --out i.jsonl --kernels int8-torch,int8-cutlass-tc,quant-int8-tok
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from serveplan.hwprofile.common import MODELS  # noqa: E402
from serveplan.hwprofile.gemm import _random, linear_shapes  # noqa: E402
from serveplan.hwprofile.timing import _Clock  # noqa: E402

M_VALUES = (1, 2, 4, 8, 12, 16, 17, 20, 24, 28, 32, 36, 40, 48, 56, 64, 65, 72, 80, 96, 112, 128, 129, 160, 192,
            256, 384, 512, 1024, 2048, 4096, 8192)
SETS = (("llama-70b", 1), ("llama-70b", 2), ("llama-8b", 1), ("qwen-32b", 1))
GEMM_KERNELS = ("bf16", "fp8-torch", "fp8-cutlass-t", "fp8-cutlass-tc", "int8-torch", "int8-cutlass-tc")
QUANT_KERNELS = ("quant-t", "quant-tok", "quant-int8-tok")
DEFAULT_KERNELS = ("bf16", "fp8-torch", "fp8-cutlass-t", "fp8-cutlass-tc", "quant-t", "quant-tok")  # session 16's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda:0", help="cpu: a dry run of the script's logic (tests)")
    ap.add_argument("--budget-s", type=float, default=0.03, help="timing budget per measurement")
    ap.add_argument("--m", default=",".join(map(str, M_VALUES)),
                    help="comma-separated M values (default: session 16's 32)")
    ap.add_argument("--kernels", default=",".join(DEFAULT_KERNELS),
                    help=f"comma-separated, of {', '.join(GEMM_KERNELS + QUANT_KERNELS)} (default: session 16's)")
    args = ap.parse_args()
    m_values = tuple(sorted({int(x) for x in args.m.split(",") if x.strip()}))
    chosen = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(GEMM_KERNELS + QUANT_KERNELS))
    if unknown:
        ap.error(f"unknown kernel(s) {', '.join(unknown)}; known: {', '.join(GEMM_KERNELS + QUANT_KERNELS)}")
    import torch
    from vllm import _custom_ops as ops

    dev = args.device
    clock = _Clock(torch, dev)
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else dev
    shapes = [s for s in linear_shapes({m: MODELS[m] for m in {m for m, _ in SETS}}, (1, 2))
              if (s["model"], s["tp"]) in SETS]
    one = torch.ones((), dtype=torch.float32, device=dev)
    one1 = torch.ones((1, 1), dtype=torch.float32, device=dev)
    int8 = any(name.startswith("int8") for name in chosen)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        def emit(row: dict) -> None:
            f.write(json.dumps({"gpu": gpu, **row}) + "\n")
            f.flush()

        for sh in shapes:
            n, k = sh["n"], sh["k"]
            rot = clock.rotations(n * k)  # the FP8 copies; bf16's are twice the bytes, rotated the same
            w8 = _random(torch, (rot, n, k), torch.float8_e4m3fn, dev)
            w16 = _random(torch, (rot, n, k), torch.bfloat16, dev)
            x16 = _random(torch, (max(m_values), k), torch.bfloat16, dev)
            x8 = x16.to(torch.float8_e4m3fn)
            sa_tok = torch.rand((max(m_values), 1), dtype=torch.float32, device=dev) + 0.5
            sb_ch = torch.rand((n, 1), dtype=torch.float32, device=dev) + 0.5
            w_i8 = _random(torch, (rot, n, k), torch.int8, dev) if int8 else None
            x_i8 = _random(torch, (max(m_values), k), torch.int8, dev) if int8 else None
            kernels = {
                "bf16": lambda i, m: torch.mm(x16[:m], w16[i].t()),
                "fp8-torch": lambda i, m: torch._scaled_mm(x8[:m], w8[i].t(), scale_a=one, scale_b=one,
                                                           out_dtype=torch.bfloat16),
                "fp8-cutlass-t": lambda i, m: ops.cutlass_scaled_mm(x8[:m], w8[i].t(), one1, one1, torch.bfloat16),
                "fp8-cutlass-tc": lambda i, m: ops.cutlass_scaled_mm(x8[:m], w8[i].t(), sa_tok[:m], sb_ch,
                                                                     torch.bfloat16),
                "int8-torch": lambda i, m: torch._int_mm(x_i8[:m], w_i8[i].t()),
                "int8-cutlass-tc": lambda i, m: ops.cutlass_scaled_mm(x_i8[:m], w_i8[i].t(), sa_tok[:m], sb_ch,
                                                                      torch.bfloat16),
            }
            for name in (k for k in GEMM_KERNELS if k in chosen):
                op = kernels[name]
                for m in m_values:
                    try:
                        res = clock.measure(lambda i, m=m, op=op: op(i, m), rotations=rot, budget_s=args.budget_s)
                    except Exception as e:  # noqa: BLE001 - record what refused, go on
                        clock.sync()
                        emit({**sh, "kernel": name, "m": m, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                        continue
                    wbytes = n * k * (2 if name == "bf16" else 1)  # FP8 and INT8: one byte a weight
                    emit({**sh, "kernel": name, "m": m, "us": res["s"] * 1e6, "timing": res["timing"],
                          "tflops": 2 * m * n * k / res["s"] / 1e12, "weight_gbs": wbytes / res["s"] / 1e9})
            print(f"{sh['model']} tp{sh['tp']} {sh['layer']} done at {time.perf_counter() - t0:.0f} s", flush=True)
        # the activations' quantization, once per distinct K (a GEMM's input)
        for k in sorted({s["k"] for s in shapes}):
            x = _random(torch, (max(m_values), k), torch.bfloat16, dev)
            quants = {"quant-t": lambda m: ops.scaled_fp8_quant(x[:m]),
                      "quant-tok": lambda m: ops.scaled_fp8_quant(x[:m], use_per_token_if_dynamic=True),
                      "quant-int8-tok": lambda m: ops.scaled_int8_quant(x[:m])}
            for name in (q for q in QUANT_KERNELS if q in chosen):
                for m in m_values:
                    try:
                        res = clock.measure(lambda i, m=m, q=quants[name]: q(m), budget_s=args.budget_s)
                    except Exception as e:  # noqa: BLE001
                        clock.sync()
                        emit({"k": k, "kernel": name, "m": m, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                        continue
                    emit({"k": k, "kernel": name, "m": m, "us": res["s"] * 1e6, "timing": res["timing"]})
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
