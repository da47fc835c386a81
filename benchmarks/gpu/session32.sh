#!/usr/bin/env bash
# Session 32 (prepared in session 31, not run yet), one H200. Session 31 left one blocker for the FP8 cache's eager
# term (docs/accuracy.md, "Session 31"): with it the 8B plan's capacity rose to 31 req/s, past what vLLM served on
# any host, because near capacity the 8B is bound by its engine core's CPU (sessions 30-31: ~90% of a core at P90 at
# 24-27 req/s on a 2.1 GHz host), which the model does not have. This measures that bound as fitting points:
#   E2: the 8B FP8 plan server (CS's flags, --api-server-count 2 as plans render) at chat 8, 16, 22 and 28 req/s,
#       its processes' CPU sampled every second (CPU=1): engine-core CPU seconds per step, per request and per output
#       token, by load, and where it saturates. Steps are not scraped (two API servers each count a step).
#   E1: the same with one API server at 16 and 22 (the API server's share, the engine core's unchanged).
#   host-speed.txt: one core's speed (a fixed pure-Python loop, as vLLM's engine core is), so a term per host can be
#       scaled; host-cpu.txt as before.
#   If time is left, Q25D: the large dense models' shortfall, common to both caches (session 31). Qwen2.5-32B INT8's
#       decode-only bursts of equal 1,024-token prompts read within 2% of the model at 16-64 sequences (session 17's
#       Q32), while its open loops' steps are 5-9% slower at 64+ running (Q25B, bf16 cache). Bursts at 64, 128 and 192
#       of equal prompts (burst) and of chat-length ones with the same mean (hburst) with the 32B plan's flags and a
#       bf16 cache: do its decode steps slow beyond 64 sequences, or with unequal contexts (a wait the model gives
#       only an FP8 cache, fp8_kv_seq_gbs)? `python benchmarks/decode_steps.py` reads them once listed there.
# Sessions 30-31's C1/C2 runs and the 32B's open loops stay held out.
#   setsid nohup bash benchmarks/gpu/session32.sh > /tmp/s32/session32.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S32:-/tmp/s32}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=8192; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
export SCRAPE=0 CLOCKS=1 CPU=1 LOAD_WARMUP=15 DEV=0 PORT=8000
for i in 1 2 3; do  # seconds for 2e7 additions in one Python thread, three times (the spread says how steady)
  python3 -c "import time; t = time.perf_counter(); s = 0
for i in range(20_000_000): s += i
print(f'{time.perf_counter() - t:.3f}')"
done > "$S/host-speed.txt" 2>&1
m8=$(model_folder /tmp/models-0 llama-3.1-8b fp8); tok8=$(tokenizer_folder "$m8")
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c8 serve E2 "$m8" "$tok8" \
    "$(meta_of llama-3.1-8b fp8 auto "\"max_num_seqs\": 512, \"api_server_count\": 2")" \
    --max-num-seqs 512 --max-num-batched-tokens 8192 --api-server-count 2; then
  for r in 8 16 22 28; do load E2 "chat-$r" "$tok8" "$r"; done
fi
stop E2
if [ "$SECONDS" -lt "${LAST_E1_BY:-1150}" ]; then
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c8 serve E1 "$m8" "$tok8" \
      "$(meta_of llama-3.1-8b fp8 auto "\"max_num_seqs\": 512")" \
      --max-num-seqs 512 --max-num-batched-tokens 8192; then
    for r in 16 22; do SCRAPE=1 load E1 "chat-$r" "$tok8" "$r"; done
  fi
  stop E1
else echo "E1 skipped at $SECONDS s" >> "$S/times.txt"; fi
if [ "$SECONDS" -lt "${LAST_Q_BY:-1250}" ]; then
  MAX_BATCHED=16384  # the 32B plan's (session 28), for meta_of; the flag below overrides FLAGS' 8,192
  kvb=$(grep -o 'kv-cache-memory-bytes [0-9]*' benchmarks/gpu/plans/session28/qwen3-32b-chat/launch.sh | cut -d' ' -f2)
  m32=$(model_folder /tmp/models-0 qwen2.5-32b ct-int8); tok32=$(tokenizer_folder "$m32")
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-q25 serve Q25D "$m32" "$tok32" \
      "$(meta_of qwen2.5-32b int8 auto "\"max_num_seqs\": 512, \"enable_chunked_prefill\": true, \"kv_cache_memory_bytes\": $kvb")" \
      --max-num-seqs 512 --max-num-batched-tokens 16384 --enable-chunked-prefill --kv-cache-memory-bytes "$kvb"; then
    for c in 64 128 192; do
      burst Q25D "$tok32" "$c" 1024
      bench Q25D "hburst-c$c-l1024" "$tok32" --traffic chat --concurrency "$c" --num-requests "$c" \
        traffic.output_len.kind=fixed traffic.output_len.mean=256 traffic.output_len.max=256
    done
  fi
  stop Q25D
else echo "Q25D skipped at $SECONDS s" >> "$S/times.txt"; fi
touch "$S/ALL_DONE"
