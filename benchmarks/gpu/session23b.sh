#!/usr/bin/env bash
# Session 23, issue 14: the first AWQ MoE server. The planner's second answer for Mixtral-8x7B on one A100 is AWQ with an
# FP8 KV cache (0.8% behind FP8 at SLO), and no W4A16 MoE had been served: the model prices AWQ experts with the dense
# W4A16 terms (w4a16_compute_penalty on the fused expert kernels' rate). One dummy-weight Mixtral AWQ folder (AutoAWQ's
# quantization_config, router left bf16) on GPU ${DEV_AWQ:-1}, engine_timings.sh's flags: the kernel lines vLLM logs,
# chat at 4 and 10 req/s (60 s each), bursts of 16/32/64 prompts of 1,024 tokens. Nothing is fitted on it: held out.
#   setsid nohup bash benchmarks/gpu/session23b.sh > /tmp/s23b.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S23B:-/tmp/s23b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=0
served MXA "${DEV_AWQ:-1}" 8001 mixtral-8x7b awq awq fp8 "4 10" ""
touch "$S/ALL_DONE"
