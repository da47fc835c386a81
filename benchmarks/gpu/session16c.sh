#!/usr/bin/env bash
# Issue 14, session 16 (the second machine, an H200, after session16b.sh): session16.sh's part B on an H200, FP8 only,
# at five batches: the 20-layer 70B-shaped Llama, compressed-tensors FP8 + FP8 KV (H20F), bursts of C prompts of
# 1,024 tokens for C in 16, 24, 32, 48, 64. It ran as one inline command in the `run` call with the device minutes
# left (~5); this file is that command, unchanged but for the line breaks.
#
#   setsid nohup bash benchmarks/gpu/session16c.sh > /tmp/s16c.log 2>&1 < /dev/null &   # then poll /tmp/s16c/DONE
set -u
S=/tmp/s16c; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
mf=$(cut_layers "$(model_folder /tmp/s16-models llama-3.1-70b ct-fp8)" 20)   # /tmp/s16-models/llama-3.1-70b-ct-fp8-l20
tok=$(tokenizer_folder "$mf")
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-h serve H20F "$mf" "$tok" "$(meta_of llama-3.1-70b fp8 fp8 "\"num_layers\": 20")" \
    --kv-cache-dtype fp8; then
  for c in 16 24 32 48 64; do burst H20F "$tok" "$c" 1024; done
fi
stop H20F
touch "$S/DONE"
