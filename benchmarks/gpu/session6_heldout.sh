#!/usr/bin/env bash
# Issue 14, session 6, second machine: the open-loop predictions where nothing was fitted, alone on the host and
# with vLLM's per-request engine timings. The session-5 70B and Mixtral configurations (their open loops are the
# planner's worst: 15-41% optimistic on TTFT P50 on a shared host), each alone on one GPU:
#   E. Llama-3.1-70B FP8 + FP8 KV: TTFT at concurrency 1 (128, 1024, 8192 tokens), chat at 2 and 4 req/s;
#   F. Mixtral-8x7B FP8 + FP8 KV: the same lengths, chat at 4 and 10 req/s.
# Nothing here is fitted: benchmarks/open_loop_accuracy.py reports these runs as held out.
#
#   setsid nohup bash benchmarks/gpu/session6_heldout.sh > /tmp/s6b.log 2>&1 &   # then poll /tmp/s6b/DONE
# Results: /tmp/s6b/{E,F}/{server.log,meta.json,c1-LEN.json,open-*.json,open-*.txt,metrics-*.txt}.
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S6B:-/tmp/s6b}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
m70=$(model_folder /tmp/s6-models llama-3.1-70b ct-fp8)
if serve E "$m70" "$m70" "$(meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8; then
  c1_sweep E "$m70" 128 1024 8192
  load E chat-2 "$m70" 2
  load E chat-4 "$m70" 4
fi
stop E
mx=$(model_folder /tmp/s6-models mixtral-8x7b ct-fp8); tokx=$(tokenizer_folder "$mx")
if serve F "$mx" "$tokx" "$(meta_of mixtral-8x7b fp8 fp8)" --kv-cache-dtype fp8; then
  c1_sweep F "$tokx" 128 1024 8192
  load F chat-4 "$tokx" 4
  load F chat-10 "$tokx" 10
fi
stop F
touch "$S/DONE"
