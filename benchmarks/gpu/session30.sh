#!/usr/bin/env bash
# Session 30 (prepared in session 29, not run yet), one H200. Session 29 left the large dense models' open-loop step
# shortfall (steps 3-17% slower than the model on Qwen3-32B INT8 and FP8, Qwen2.5-32B INT8 and Gemma-2-27B INT8, all
# with an FP8 KV cache and 16,384-token steps; the GPU at full clock) with two candidates (docs/accuracy.md,
# "Session 29"); this separates them on one host:
#   1. Q25B: Qwen2.5-32B INT8 with session 28's Qwen3-32B plan flags but a bf16 KV cache (--kv-cache-dtype auto, the
#      same pinned KV bytes: half the tokens, still ~1.4x what chat at 9.5 req/s holds), chat 7 and 9.5 req/s, steps
#      scraped, clocks sampled. If its steps match the model where session 29's Q25I (FP8 cache) read x1.09-1.10
#      decode, the FP8 cache's attention in mixed steps is the gap.
#   2. Q25I again (FP8 cache) at chat 9.5 on this host: the same-host control for 1.
#   3. On each, prompts alone at 256, 512, 768, 1,024 and 2,048 tokens (c1_sweep; `open_loop_accuracy.py
#      --ttft-parts` reads them): past 512 tokens a step leaves vLLM's CUDA graphs, and the calibration's eager-step
#      cost is one constant fitted on 32-layer models. The 512 -> 768 jump on a 64-layer model against the model's
#      says whether that cost grows with layers.
#   4. If time is left: session 24's 8B FP8 plan server (CS's flags) at chat 27 req/s, just under its ~27.5 req/s
#      capacity, with one API server (C1) and with `--api-server-count 2` (C2), the processes' CPU sampled. Session
#      29's bench note found TTFT's part before the scheduler at 260 ms (27 req/s) and 5,221 ms (30) at P90 on that
#      server: if a second API server removes it, the 8B's measured capacity is partly its front end's.
#   setsid nohup bash benchmarks/gpu/session30.sh > /tmp/s30/session30.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S30:-/tmp/s30}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session28
export SCRAPE=1 CLOCKS=1 LOAD_WARMUP=15 DEV=0 PORT=8000
kv_of() { grep -o 'kv-cache-memory-bytes [0-9]*' "$P/$1/launch.sh" | cut -d' ' -f2; }
plan_flags() {  # tag model format weight-dtype kv-dtype plan-folder: serve with session 28's plan flags
  local tag=$1 model=$2 fmt=$3 wd=$4 kv=$5 kvb; kvb=$(kv_of "$6")
  local m; m=$(model_folder /tmp/models-0 "$model" "$fmt")
  tok=$(tokenizer_folder "$m")
  SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-q25 serve "$tag" "$m" "$tok" \
    "$(meta_of "$model" "$wd" "$kv" "\"max_num_seqs\": 512, \"enable_chunked_prefill\": true, \"kv_cache_memory_bytes\": $kvb")" \
    --max-num-seqs 512 --kv-cache-dtype "$kv" --enable-chunked-prefill --kv-cache-memory-bytes "$kvb"
}
if plan_flags Q25B qwen2.5-32b ct-int8 int8 auto qwen3-32b-chat; then
  for r in 7 9.5; do load Q25B "chat-$r" "$tok" "$r"; done
  c1_sweep Q25B "$tok" 256 512 768 1024 2048
fi
stop Q25B
if [ "$SECONDS" -lt "${LAST_BY:-1100}" ] && plan_flags Q25I qwen2.5-32b ct-int8 int8 fp8 qwen3-32b-chat; then
  load Q25I chat-9.5 "$tok" 9.5
  c1_sweep Q25I "$tok" 256 512 768 1024 2048
  stop Q25I
else echo "Q25I skipped at $SECONDS s" >> "$S/times.txt"; fi
if [ "$SECONDS" -lt "${LAST_8B_BY:-1350}" ]; then
  MAX_BATCHED=8192  # CS's batching; FLAGS was set with 16,384 when sourced, so the flag is passed again (the last wins)
  m8=$(model_folder /tmp/models-0 llama-3.1-8b fp8); tok8=$(tokenizer_folder "$m8")
  for api in 1 2; do
    [ "$SECONDS" -lt "${LAST_8B_BY:-1350}" ] || { echo "C$api skipped at $SECONDS s" >> "$S/times.txt"; break; }
    if CPU=1 SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c8 serve "C$api" "$m8" "$tok8" \
        "$(meta_of llama-3.1-8b fp8 auto "\"max_num_seqs\": 512, \"api_server_count\": $api")" \
        --max-num-seqs 512 --max-num-batched-tokens 8192 --api-server-count "$api"; then
      CPU=1 load "C$api" chat-27 "$tok8" 27
    fi
    stop "C$api"
  done
else echo "C1, C2 skipped at $SECONDS s" >> "$S/times.txt"; fi
touch "$S/ALL_DONE"
