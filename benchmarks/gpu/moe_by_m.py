"""vLLM 0.26.0's fused MoE expert kernel by M (tokens in the step), per weight format, on the GPU this runs on
(issue 14, session 27).

Mixtral INT8's open loops read ~20% below vLLM's capacity (session 26). The scraped steps' least squares put the
model's decode part x1.08-1.15 low and its prompt part x0.72-0.82 high: one constant `moe_int8_compute_penalty`
(3.61, solved on bursts of 1,024-token prompts, 16,384 tokens a step) prices a step of ~1,000 tokens as it prices one
of 16,384. The server logs say why a constant cannot hold: a compressed-tensors W8A8 INT8 checkpoint's experts have
no static activation scale, so vLLM 0.26.0 runs them as `int8_w8a16` (weight-only: INT8 weights dequantized to bf16
inside Triton's fused_moe_kernel, bf16 MMA) with its default tile config ("Config file not found ...
dtype=int8_w8a16.json"), while FP8 experts run `fp8_w8a8` with a tuned config for the H200. Both configs change
with M. This times the kernel vLLM calls (`fused_experts`, moe_align + two grouped GEMMs + the activation), with
the routing and weight layouts the servers have:
  bf16        unquantized experts (the bf16 Mixtral / Qwen3 servers; tuned config where vLLM ships one)
  fp8_w8a8    FP8 weights, one scale per expert, activations quantized per tensor on the fly (online --quantization
              fp8, the MXF servers)
  int8_w8a16  INT8 weights, per-channel scales, bf16 activations (a compressed-tensors W8A8 INT8 checkpoint with
              dynamic activations: the MXI servers)
  int8_w8a8   INT8 weights and a static per-tensor activation scale (what a checkpoint with static activation
              scales would get; for the record)
and writes one JSON row per (shape, kind, M) to --out, with the Triton config vLLM picks.

    source /tmp/vsite/env.sh; python3 benchmarks/gpu/moe_by_m.py --out /tmp/s27/moe.jsonl
    python3 benchmarks/gpu/moe_by_m.py --out moe-tp.jsonl --kinds fp8_w8a8,int8_w8a16 \
        --shapes mixtral-8x7b/tp2,mixtral-8x22b,...     # session 27b: the shapes a plan shards the experts to
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from serveplan.hwprofile.timing import _Clock  # noqa: E402

# experts, hidden, intermediate per GPU, experts per token: the two MoE models served (Mixtral-8x7B, Qwen3-30B-A3B),
# and (session 27b, --shapes) the catalog's MoE models at each tensor-parallel size a plan may shard their experts to
SHAPES = {"mixtral-8x7b": (8, 4096, 14336, 2), "qwen3-30b-a3b": (128, 2048, 768, 8),
          "mixtral-8x7b/tp2": (8, 4096, 7168, 2), "mixtral-8x7b/tp4": (8, 4096, 3584, 2),
          "mixtral-8x7b/tp8": (8, 4096, 1792, 2), "mixtral-8x22b": (8, 6144, 16384, 2),
          "mixtral-8x22b/tp2": (8, 6144, 8192, 2), "mixtral-8x22b/tp4": (8, 6144, 4096, 2),
          "mixtral-8x22b/tp8": (8, 6144, 2048, 2), "qwen3-30b-a3b/tp2": (128, 2048, 384, 8),
          "qwen3-30b-a3b/tp4": (128, 2048, 192, 8)}
DEFAULT_SHAPES = ("mixtral-8x7b", "qwen3-30b-a3b")  # session 27's run
M_VALUES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072,
            4096, 6144, 8192, 12288, 16384)
KINDS = ("bf16", "fp8_w8a8", "int8_w8a16", "int8_w8a8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=0.05, help="timing budget per measurement")
    ap.add_argument("--m", default=",".join(map(str, M_VALUES)))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES), help=f"of {', '.join(SHAPES)}")
    args = ap.parse_args()
    m_values = tuple(sorted({int(x) for x in args.m.split(",") if x.strip()}))
    kinds = [k for k in args.kinds.split(",") if k]
    import torch
    from vllm.model_executor.layers.fused_moe import fused_experts
    from vllm.model_executor.layers.fused_moe import config as mc
    from vllm.model_executor.layers.fused_moe.fused_moe import try_get_optimal_moe_config

    try:  # some vLLM helpers read the current config; a default one stands in outside an engine
        from vllm.config import VllmConfig, set_current_vllm_config
        ctx = set_current_vllm_config(VllmConfig())
        ctx.__enter__()
    except Exception as e:  # noqa: BLE001
        print(f"no vLLM config context: {e}", flush=True)

    dev = "cuda:0"
    clock = _Clock(torch, dev)
    gpu = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    f = out.open("w")

    def emit(row: dict) -> None:
        f.write(json.dumps({"gpu": gpu, **row}) + "\n")
        f.flush()

    for shape in [s for s in args.shapes.split(",") if s]:
        E, H, inter, topk = SHAPES[shape]
        x_all = torch.randn((max(m_values), H), dtype=torch.bfloat16, device=dev) * 0.1
        logits = torch.randn((max(m_values), E), dtype=torch.float32, device=dev)
        topk_w_all, topk_ids_all = torch.topk(torch.softmax(logits, dim=-1), topk, dim=-1)
        topk_ids_all = topk_ids_all.to(torch.int32)
        for kind in kinds:
            w1 = torch.randn((E, 2 * inter, H), dtype=torch.bfloat16, device=dev) * 0.02
            w2 = torch.randn((E, H, inter), dtype=torch.bfloat16, device=dev) * 0.02
            if kind == "bf16":
                qc, wbytes = None, 2
            elif kind == "fp8_w8a8":
                w1, w2 = w1.to(torch.float8_e4m3fn), w2.to(torch.float8_e4m3fn)
                s1 = torch.full((E,), 0.02, dtype=torch.float32, device=dev)
                qc, wbytes = mc.fp8_w8a8_moe_quant_config(w1_scale=s1, w2_scale=s1.clone()), 1
            else:
                w1 = torch.randint(-16, 16, w1.shape, dtype=torch.int8, device=dev)
                w2 = torch.randint(-16, 16, w2.shape, dtype=torch.int8, device=dev)
                if kind == "int8_w8a16":
                    s1 = torch.full((E, 2 * inter), 0.002, dtype=torch.float32, device=dev)
                    s2 = torch.full((E, H), 0.002, dtype=torch.float32, device=dev)
                    qc = mc.int8_w8a16_moe_quant_config(w1_scale=s1, w2_scale=s2)
                else:
                    s1 = torch.full((E,), 0.002, dtype=torch.float32, device=dev)
                    a = torch.full((1,), 0.01, dtype=torch.float32, device=dev)
                    qc = mc.int8_w8a8_moe_quant_config(w1_scale=s1, w2_scale=s1.clone(), a1_scale=a,
                                                       a2_scale=a.clone())
                wbytes = 1
            config_name = qc.config_name(torch.bfloat16) if qc is not None else None
            for m in m_values:
                x, tw, ti = x_all[:m].contiguous(), topk_w_all[:m].contiguous(), topk_ids_all[:m].contiguous()
                try:
                    cfg = try_get_optimal_moe_config(w1.size(), w2.size(), topk, config_name, m)
                except Exception as e:  # noqa: BLE001
                    cfg = {"error": str(e)[:120]}
                try:
                    res = clock.measure(lambda i, x=x, tw=tw, ti=ti, w1=w1, w2=w2, qc=qc:
                                        fused_experts(x, w1, w2, tw, ti, quant_config=qc),
                                        budget_s=args.budget_s, max_inner=8)
                except Exception as e:  # noqa: BLE001 - record what refused, go on
                    clock.sync()
                    emit({"shape": shape, "experts": E, "intermediate": inter, "kind": kind, "m": m,
                          "config_name": config_name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                    continue
                flops = 2 * m * topk * 3 * H * inter  # gate, up and down projections of each routed token
                touched = E * (1 - (1 - topk / E) ** m)  # experts a step of m tokens reads (uniform routing)
                emit({"shape": shape, "experts": E, "intermediate": inter, "kind": kind, "m": m,
                      "config_name": config_name, "config": cfg,
                      "us": res["s"] * 1e6, "timing": res["timing"], "n_inner": res["n_inner"],
                      "tflops": flops / res["s"] / 1e12,
                      "weight_gbs": touched * 3 * H * inter * wbytes / res["s"] / 1e9})
            del w1, w2
            torch.cuda.empty_cache()
            print(f"{shape} {kind} done at {time.perf_counter() - t0:.0f} s", flush=True)
    f.close()
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
