#!/usr/bin/env bash
# Issue 14, session 7, on one H100 (nvidia-h100-x1): the H100 calibration (fitted on the Llama-3.1-8B alone) on a
# model it never saw, Qwen2.5-14B bf16 at TP=1, alone on its host with per-request engine timings:
# TTFT at concurrency 1 (128, 1024, 8192 tokens), chat at 5 req/s, and the closed grid (vllm_grid.py).
# Nothing here is fitted.
#
#   setsid nohup bash benchmarks/gpu/session7_h100.sh > /tmp/s7h.log 2>&1 &   # then poll /tmp/s7h/DONE
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S7H:-/tmp/s7h}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
m14=$(model_folder /tmp/s7-models qwen2.5-14b hf); tok14=$(tokenizer_folder "$m14")
if serve H "$m14" "$tok14" "$(meta_of qwen2.5-14b bf16 auto)"; then
  c1_sweep H "$tok14" 128 1024 8192
  load H chat-5 "$tok14" 5
  grid H "$tok14"
fi
stop H
touch "$S/DONE"
