#!/usr/bin/env bash
# Issue 14, session 15, on a two-GPU machine (asked as nvidia-h100-x2; sessions 8 and 12-14 got H200s for that kind).
# On H100s: session12.sh as it is (the pair's NCCL profile, the 70B FP8 at TP=2 with FP8 KV), its open loops scraped.
# On H200s: what an engine step costs inside an open loop, by running batch and by the tokens it carries.
#   The 70B's open loops are 13-38% optimistic on TPOT where its closed decode bursts are within 4-23% (sessions
#   5-14), and the committed /metrics before and after each run show vLLM took 6% fewer steps than the model for the
#   same tokens (EA at 2 and 4 req/s): its steps were longer. Which ones, the /metrics totals cannot say.
#   scrape_steps (engine_timings.sh) samples vLLM's step counter, token sum, step-size histogram and running /
#   waiting gauges every SCRAPE_S seconds during each open loop; benchmarks/open_loop_accuracy.py --steps reads it.
#   SE (GPU 0): session 6's E at new rates: Llama-3.1-70B FP8 + FP8 KV, TP=1, session 5's flags; chat at 3 and 5 req/s
#               (E ran at 2 and 4; 5 is past the model's capacity for it).
#   SR (GPU 1): session 7's R0 at new rates: Qwen2.5-14B bf16, TP=1 (its open loops are 18-22% pessimistic on TTFT,
#               the 70B's optimistic); chat at 5 and 9 req/s.
# Whatever term the scrapes suggest is solved on these runs; every earlier open loop stays held out.
#
#   setsid nohup bash benchmarks/gpu/session15.sh > /tmp/s15.log 2>&1 < /dev/null &   # then poll /tmp/s15/DONE
set -u
S=${S15:-/tmp/s15}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export SCRAPE=1 SCRAPE_S=${SCRAPE_S:-0.25}  # both servers are GPU-bound at these rates: a scrape costs them little
gpu=$(gpu_kind "$S/nvidia-smi.txt")
if [ "$gpu" = h100-sxm ]; then
  S12=$S bash benchmarks/gpu/session12.sh
  exit
fi
export PYTHONUNBUFFERED=1
source benchmarks/gpu/engine_timings.sh

m70=$(model_folder /tmp/s15-models llama-3.1-70b ct-fp8); tok70=$(tokenizer_folder "$m70")
m14=$(model_folder /tmp/s15-models qwen2.5-14b hf); tok14=$(tokenizer_folder "$m14")
(
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-sr DEV=1 PORT=8001 serve SR "$m14" "$tok14" "$(meta_of qwen2.5-14b bf16 auto)"
  then
    for r in 5 9; do PORT=8001 load SR "chat-$r" "$tok14" "$r"; done
  fi
  stop SR
) > "$S/SR.out" 2>&1 &
sr=$!
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-se DEV=0 PORT=8000 serve SE "$m70" "$tok70" \
    "$(meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8; then
  for r in 3 5; do PORT=8000 load SE "chat-$r" "$tok70" "$r"; done
fi
stop SE
wait "$sr"
touch "$S/DONE"
