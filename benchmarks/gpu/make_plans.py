"""Write the fixed-configuration plans the GPU runs launch (Llama-3-8B shape on one H100, vLLM 0.26.0):
bf16, and FP8 weights + FP8 KV cache. Each is a normal plan folder (plan.yaml + launch files) with the one
candidate, so `plan launch` starts exactly it and its predictions are the planner's for that config.

    python benchmarks/gpu/make_plans.py benchmarks/gpu/plans
"""

import sys
from pathlib import Path

from serveplan.planner.config import build_request
from serveplan.planner.estimate import estimate
from serveplan.planner.report import write_outdir
from serveplan.planner.result import Plan, SearchStats
from serveplan.planner.spec import Candidate

CONFIGS = {
    "h100-8b-bf16": dict(weight_dtype="bf16", kv_cache_dtype="auto"),
    "h100-8b-fp8": dict(weight_dtype="fp8", kv_cache_dtype="fp8"),
}


def main(out: Path) -> None:
    req = build_request(model="llama-3.1-8b", gpus="1xH100", overrides=[
        "traffic.arrival=closed", "traffic.concurrency=16", "traffic.rate_rps=null",
        "traffic.input_len.kind=fixed", "traffic.input_len.mean=512",
        "traffic.output_len.kind=fixed", "traffic.output_len.mean=256", "search.max_model_len=4096",
        "engine.version=0.26.0"])  # the GPU machine's vLLM (the default, 0.33.0, is not installed there)
    for name, kw in CONFIGS.items():
        cand = Candidate(engine="vllm", tp=1, max_num_seqs=256, max_num_batched_tokens=8192,
                         chunked_prefill=True, max_model_len=4096, gpu_memory_utilization=0.92,
                         enable_prefix_caching=False, **kw)
        est = estimate(req, cand)
        plan = Plan(request=req, ranked=(est,), why="fixed configuration for GPU measurement",
                    stats=SearchStats(sampler="fixed", space_size=1, memory_feasible=1, trials=1,
                                      examined_fraction=1.0, seconds=0.0))
        from serveplan.render.targets import render_artifacts
        write_outdir(plan, out / name, extra_files=render_artifacts)
        print(out / name, f"KV {est.memory.kv_cache_gb:.2f} GB = {est.memory.kv_tokens:,} tokens")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/gpu/plans"))
