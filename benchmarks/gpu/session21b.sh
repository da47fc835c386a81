#!/usr/bin/env bash
# Session 21, second machine (one H200): session21.sh's V70A could not start. The 1xH100 plan (AutoAWQ 70B, FP8 KV
# cache) said --dtype float16, and vLLM 0.26.0's FlashAttention 3 refuses an FP8-cache attention with a float16
# output ("For FP8 input, output must have dtype BF16"). The plan now says bfloat16 (render/engines/vllm.py); this
# runs the regenerated plan alone through `serveplan verify --force`, its KV cache pinned at the H100 plan's 37.5 GB.
set -u
S=${S21:-/tmp/s21b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session21
force=--force; [ "$gpu" = h100-sxm ] && force=
verify_on V70A 0 8200 "$P/70b-1xh100" "$(model_folder /tmp/models-0 llama-3.1-70b awq)" $force
touch "$S/ALL_DONE"
