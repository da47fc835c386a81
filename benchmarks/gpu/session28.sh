#!/usr/bin/env bash
# Session 28, one H200 (no multi-GPU kind lent). Two models no run has served, each as the planner answers for it
# (benchmarks/gpu/plans/session28, `serveplan --model M --gpus 1xH200 engine.version=0.26.0`), held out: nothing is
# fitted on them.
#   1. VQ3: `serveplan verify` of Qwen3-32B's plan (W8A8 INT8, FP8 KV, 512 sequences, 16,384 tokens chunked; dense,
#      q/k-norm, 64 layers) at 7 req/s of chat, 0.71 of the 9.79 the plan gives it at SLO, 120 s after 30 s warm-up.
#   2. VG27: the same for Gemma-2-27B's plan (the same flags at max-model-len 8,192: its context; chat's prompts
#      capped at 6,144 so prompt + output fit) at 8 req/s (0.74 of 10.88). A 256k vocabulary, GeGLU, logit
#      soft-capping and every other layer a 4,096-token sliding window: vLLM's KV tokens against the plan's (the
#      memory model counts every layer at full context) and its attention backend with soft-capping.
#   3. Q3S: Qwen3-32B served again with the plan's flags, steps scraped, near its capacity: chat at 9.5 req/s, rag at
#      2.5 and 3.2 (0.68 and 0.88 of the 3.65 `plan estimate` gives rag there), 15 s of warm-up each.
#   setsid nohup bash benchmarks/gpu/session28.sh > /tmp/s28/session28.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S28:-/tmp/s28}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session28
q=$(model_folder /tmp/models-0 qwen3-32b ct-int8)
g=$(model_folder /tmp/models-0 gemma-2-27b ct-int8)
VERIFY_S=120 verify_on VQ3 0 8200 "$P/qwen3-32b-chat" "$q" --rate 7
VERIFY_S=120 verify_on VG27 0 8200 "$P/gemma-2-27b-chat" "$g" --rate 8
export SCRAPE=1 LOAD_WARMUP=15 DEV=0 PORT=8000
tok=$(tokenizer_folder "$q")
kvb=$(grep -o 'kv-cache-memory-bytes [0-9]*' "$P/qwen3-32b-chat/launch.sh" | cut -d' ' -f2)
if [ "$SECONDS" -lt "${SERVE_BY:-1000}" ] && SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-Q3S serve Q3S "$q" "$tok" \
    "$(meta_of qwen3-32b int8 fp8 "\"max_num_seqs\": 512, \"enable_chunked_prefill\": true, \"kv_cache_memory_bytes\": $kvb")" \
    --max-num-seqs 512 --kv-cache-dtype fp8 --enable-chunked-prefill --kv-cache-memory-bytes "$kvb"; then
  load Q3S chat-9.5 "$tok" 9.5
  LOAD_TRAFFIC=rag load Q3S rag-2.5 "$tok" 2.5
  if [ "$SECONDS" -lt "${LAST_BY:-1250}" ]; then LOAD_TRAFFIC=rag load Q3S rag-3.2 "$tok" 3.2
  else echo "Q3S rag-3.2 skipped at $SECONDS s" >> "$S/times.txt"; fi
  stop Q3S
fi
touch "$S/ALL_DONE"
