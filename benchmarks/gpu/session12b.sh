#!/usr/bin/env bash
# Issue 14, session 12, second run (one lent GPU, vLLM 0.26.0, dummy weights, session 5's flags): the 70B FP8 + FP8 KV
# decode step at the batches its open loops run at. Those loops (chat at 4-8 req/s) decode 60-190 requests at once at
# 1-2k tokens of context; per-request regressions put their decode step 15-20% above the model's, where the bursts
# measured so far stop at batch 64 (session 10, session 11b).
#   L2: decode bursts (C prompts at once, 256 tokens out; benchmarks/decode_steps.py reads the last 128 gaps) of
#       64, 96, 128 and 192 at 1,024 tokens and 256 at 512 (the KV cache holds ~330k tokens).
# Nothing here is fitted.
#
#   setsid nohup bash benchmarks/gpu/session12b.sh > /tmp/s12b.log 2>&1 < /dev/null &   # then poll $S/DONE
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S12B:-/tmp/s12b}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh

m70=$(model_folder /tmp/s12-models llama-3.1-70b ct-fp8)
if serve L2 "$m70" "$m70" "$(meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8; then
  for c in 64 96 128 192; do burst L2 "$m70" "$c" 1024; done
  burst L2 "$m70" 256 512
fi
stop L2
touch "$S/DONE"
