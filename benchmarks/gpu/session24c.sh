#!/usr/bin/env bash
# Session 24, one H200 (no two-GPU kind was lent for session24b.sh): why the plan over-predicts TPOT near capacity.
# Session 24's CAP server (the 8B FP8 plan for one H200: seqs 512, 8,192 tokens chunked, max_model_len 16,384, bf16 KV)
# read TPOT 13.3 / 17.3 ms at 24 / 27 req/s where the model said 28.5 / 47.3: its simulated batch grew to ~2x vLLM's.
# The same server again, its engine steps scraped every 0.5 s (SCRAPE=1; `open_loop_accuracy.py --steps` compares each
# 1-s window's mean step with the model's for the batch that ran), chat at 12, 20 and 25 req/s for 60 s each.
#   setsid nohup bash benchmarks/gpu/session24c.sh > /tmp/s24c.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S24C:-/tmp/s24c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=8192; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
m=$(model_folder /tmp/s24c-models llama-3.1-8b fp8); tok=$(tokenizer_folder "$m")
export DEV=0 PORT=8000 SCRAPE=1
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-cs serve CS "$m" "$tok" "$(meta_of llama-3.1-8b fp8 auto '"max_num_seqs": 512')" \
    --max-num-seqs 512; then
  for r in 12 20 25; do load CS "chat-$r" "$tok" "$r"; done
fi
stop CS
touch "$S/ALL_DONE"
