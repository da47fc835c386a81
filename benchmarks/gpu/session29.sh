#!/usr/bin/env bash
# Session 29 (prepared in session 28, run in session 29 on one H200: results/session29, docs/accuracy.md "Session 29"). Two questions session 28 left (docs/accuracy.md):
#   1. G27D: why Gemma-2-27B's plan fell behind at 8 req/s with its engine starved (170-190 running, none waiting).
#      The plan's flags again (W8A8 INT8, FP8 KV, 512 sequences, 16,384 tokens chunked, max-model-len 8,192, its
#      pinned KV bytes), with vLLM's per-request timings (FLAGS: --enable-per-request-metrics; bench splits TTFT into
#      engine queue, engine prefill and front end), the steps scraped and the server's processes' CPU sampled
#      (CPU=1: an API server near a full core is the front end holding requests back). Chat, prompts capped at
#      6,144 tokens as the plan's traffic, at 3 and 6 req/s.
#   2. Q3F, then Q25I: whether session 28's ~15% step shortfall on Qwen3-32B INT8 is INT8's, Qwen3's (64 query heads,
#      q/k norms) or a 32B's. The same flags on Qwen3-32B FP8 (Q3F) and on Qwen2.5-32B INT8 (Q25I), chat at 7 and 9.5
#      req/s, steps scraped (`open_loop_accuracy.py --steps` reads them against the model, held out). With every load
#      the GPU's SM clock, power and throttle reasons (CLOCKS=1). Session 28's sustained_gemm.py found dense GEMMs
#      power-capped from their first second with a flat rate over 55 s, so a slow decay under sustained load is
#      ruled out for GEMMs; the clocks of the mixed steps themselves are not yet recorded.
#   setsid nohup bash benchmarks/gpu/session29.sh > /tmp/s29/session29.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S29:-/tmp/s29}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session28
export SCRAPE=1 CPU=1 CLOCKS=1 LOAD_WARMUP=15 DEV=0 PORT=8000
kv_of() { grep -o 'kv-cache-memory-bytes [0-9]*' "$P/$1/launch.sh" | cut -d' ' -f2; }
plan_flags() {  # tag model format weight-dtype plan-folder [extra flags]: serve with session 28's plan flags
  local tag=$1 model=$2 fmt=$3 wd=$4 kvb; kvb=$(kv_of "$5"); shift 5
  local m; m=$(model_folder /tmp/models-0 "$model" "$fmt")
  tok=$(tokenizer_folder "$m")
  SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" \
    "$(meta_of "$model" "$wd" fp8 "\"max_num_seqs\": 512, \"enable_chunked_prefill\": true, \"kv_cache_memory_bytes\": $kvb$META_MORE")" \
    --max-num-seqs 512 --kv-cache-dtype fp8 --enable-chunked-prefill --kv-cache-memory-bytes "$kvb" "$@"
}
META_MORE=', "max_model_len": 8192'
if plan_flags G27D gemma-2-27b ct-int8 int8 gemma-2-27b-chat --max-model-len 8192; then
  for r in 3 6; do load G27D "chat-$r" "$tok" "$r" traffic.input_len.max=6144; done
fi
stop G27D
META_MORE=
if plan_flags Q3F qwen3-32b fp8 fp8 qwen3-32b-chat; then
  for r in 7 9.5; do load Q3F "chat-$r" "$tok" "$r"; done
fi
stop Q3F
if [ "$SECONDS" -lt "${LAST_BY:-1000}" ] && plan_flags Q25I qwen2.5-32b ct-int8 int8 qwen3-32b-chat; then
  for r in 7 9.5; do load Q25I "chat-$r" "$tok" "$r"; done
  stop Q25I
else echo "Q25I skipped at $SECONDS s" >> "$S/times.txt"; fi
touch "$S/ALL_DONE"
