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
# Sessions 30-31's C1/C2 runs stay held out.
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
touch "$S/ALL_DONE"
