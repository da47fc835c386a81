#!/usr/bin/env bash
# Issue 14, session 15 (third machine, ~9 device minutes left): do unequal contexts slow a bf16 KV cache's decode too?
#   session15b.sh measured it with FP8 caches (the 70B and the 8B: 3-28% slower than equal prompts at the same batch),
#   and fp8_kv_seq_gbs models it for FP8 caches only. SA: the 8B FP8 weights with a bf16 KV cache, the same bursts as
#   15b's SF (C of 32 and 64, prompts all 1,024 tokens against the chat preset's lengths, 256 tokens out).
# Nothing is fitted here unless the bf16 pairs say the term applies there too.
#
#   setsid nohup bash benchmarks/gpu/session15c.sh > /tmp/s15c.log 2>&1 < /dev/null &   # then poll /tmp/s15c/DONE
set -u
S=${S15C:-/tmp/s15c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh

m8=$(model_folder /tmp/s15-models llama-3.1-8b ct-fp8); tok8=$(tokenizer_folder "$m8")
if serve SA "$m8" "$tok8" "$(meta_of llama-3.1-8b fp8 auto)" --kv-cache-dtype auto; then
  for c in 32 64; do
    burst SA "$tok8" "$c" 1024
    bench SA "hburst-c$c-l1024" "$tok8" --traffic chat --concurrency "$c" --num-requests "$c" \
      traffic.output_len.kind=fixed traffic.output_len.mean=256 traffic.output_len.max=256
  done
fi
stop SA
touch "$S/DONE"
