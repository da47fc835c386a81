#!/usr/bin/env bash
# Session 31 (prepared in session 30, not run yet), one H200. Session 30 left two leads (docs/accuracy.md, "Session 30"):
#   1. An FP8 KV cache makes vLLM's mixed steps (decodes + prompt chunks) 3-4 ms slower over the model than a bf16
#      one on Qwen2.5-32B INT8 (prompt factor 1.16 against 1.07), while prompts alone and decode-only bursts read the
#      same with either cache. A term for it must be solved on points other than the 32B's held-out open loops: here
#      the 8B FP8 (CS's flags) with a bf16 (K8A) and an FP8 (K8F) cache, open loops at chat 10 and 16 req/s (under
#      ~4,000 output tokens/s, so one API server is not the limit), steps scraped, the same host. If the 8B shows the
#      same FP8 excess in its mixed steps, its runs are the fitting points and the 32B's stay held out.
#   2. The 8B near capacity is bound by one core's speed: its API server first (C1), then its engine core (C2 at 90%
#      of a core at P90). C2 again (--api-server-count 2, what plans now render) at chat 24 and 27 req/s with the CPU
#      sampled, on a host whose CPU is recorded (host-cpu.txt, gpu_kind): set beside session 30's host and session 24's.
#   setsid nohup bash benchmarks/gpu/session31.sh > /tmp/s31/session31.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S31:-/tmp/s31}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=8192; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
export SCRAPE=1 CLOCKS=1 LOAD_WARMUP=15 DEV=0 PORT=8000
m8=$(model_folder /tmp/models-0 llama-3.1-8b fp8); tok8=$(tokenizer_folder "$m8")
for kv in auto fp8; do
  tag=K8A; [ "$kv" = fp8 ] && tag=K8F
  [ "$SECONDS" -lt "${LAST_KV_BY:-700}" ] || { echo "$tag skipped at $SECONDS s" >> "$S/times.txt"; continue; }
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c8 serve "$tag" "$m8" "$tok8" \
      "$(meta_of llama-3.1-8b fp8 "$kv" "\"max_num_seqs\": 512")" \
      --max-num-seqs 512 --max-num-batched-tokens 8192 --kv-cache-dtype "$kv"; then
    for r in 10 16; do load "$tag" "chat-$r" "$tok8" "$r"; done
  fi
  stop "$tag"
done
if [ "$SECONDS" -lt "${LAST_C2_BY:-1250}" ]; then
  if CPU=1 SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c8 serve C2 "$m8" "$tok8" \
      "$(meta_of llama-3.1-8b fp8 auto "\"max_num_seqs\": 512, \"api_server_count\": 2")" \
      --max-num-seqs 512 --max-num-batched-tokens 8192 --api-server-count 2; then
    for r in 24 27; do CPU=1 SCRAPE=0 load C2 "chat-$r" "$tok8" "$r"; done  # its steps double-count (session 30)
  fi
  stop C2
else echo "C2 skipped at $SECONDS s" >> "$S/times.txt"; fi
touch "$S/ALL_DONE"
