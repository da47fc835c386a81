#!/usr/bin/env bash
# Session 28's third part, run by hand after session28.sh: its Q3S step was gated on SERVE_BY=1000 s and the two
# verifies had taken 1,006 s, so it was skipped. This is that step as it ran (the default torch.compile cache, which
# the verify's server had filled, so the server was healthy in 125 s): Qwen3-32B served with the plan's flags, steps
# scraped, chat at 9.5 req/s and rag at 3.2 (0.88 of the 3.65 `plan estimate` gives rag there), 15 s of warm-up each.
# rag at 2.5 was left out for the device time left.
#   setsid nohup bash benchmarks/gpu/session28b.sh > /tmp/s28/q3s.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S28:-/tmp/s28}; mkdir -p "$S"; rm -f "$S/ALL_DONE"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind)
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session28
q=$(model_folder /tmp/models-0 qwen3-32b ct-int8)
export SCRAPE=1 LOAD_WARMUP=15 DEV=0 PORT=8000
tok=$(tokenizer_folder "$q")
kvb=$(grep -o 'kv-cache-memory-bytes [0-9]*' "$P/qwen3-32b-chat/launch.sh" | cut -d' ' -f2)
if serve Q3S "$q" "$tok" \
    "$(meta_of qwen3-32b int8 fp8 "\"max_num_seqs\": 512, \"enable_chunked_prefill\": true, \"kv_cache_memory_bytes\": $kvb")" \
    --max-num-seqs 512 --kv-cache-dtype fp8 --enable-chunked-prefill --kv-cache-memory-bytes "$kvb"; then
  load Q3S chat-9.5 "$tok" 9.5
  if [ "$SECONDS" -lt 420 ]; then LOAD_TRAFFIC=rag load Q3S rag-3.2 "$tok" 3.2
  else echo "Q3S rag-3.2 skipped at $SECONDS s" >> "$S/times.txt"; fi
fi
stop Q3S
touch "$S/ALL_DONE"
