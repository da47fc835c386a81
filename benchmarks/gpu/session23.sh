#!/usr/bin/env bash
# Prepared in session 22, not run yet. Issue 14: does the longest context's wait (fp8_kv_seq_gbs) apply below
# fp8_kv_unsplit_from (sequences x KV heads < 106, where the model lets FlashAttention 3 split the KV)?
#   Session 22's Qwen2.5-32B summarize verify run (session22b.sh, VQ32S) decoded at inter-token gaps of 17.6 ms (P50)
#   with ~10 sequences of 500-27,000 FP8-cached tokens, where the model steps in 13.5 ms; with the wait it would be
#   ~17 ms. Session 15b's unequal bursts, which solved the term, had 32 and 64 sequences.
#   One server: Qwen2.5-32B INT8 W8A8 + FP8 KV with the plan's flags (max_model_len 32768 for the long prompts).
#   Bursts of C prompts at once (256 tokens out, fixed; decode_steps.py reads their last 128 gaps) for C in 8, 10, 12,
#   16 (16 x 8 KV heads = 128: above the threshold, the check): equal prompts of 6,000 tokens (burst-cC-l6000) and
#   prompts of the summarize preset's lognormal lengths, mean 6,000 (sburst-cC-l6000, bench's default seed). If the
#   unequal bursts at 8-12 decode slower than the equal ones by what fp8_kv_seq_gbs says, the threshold goes; the
#   session-22 run stays held out either way.
#   setsid nohup bash benchmarks/gpu/session23.sh > /tmp/s23.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S23:-/tmp/s23}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=16384; MAX_LEN=32768   # the plan's batching, for prompts up to 27k tokens (engine_timings.sh reads them)
source benchmarks/gpu/engine_timings.sh
sburst() {  # tag tokenizer concurrency: C prompts at once of the summarize preset's lengths, 256 tokens out
  bench "$1" "sburst-c$3-l6000" "$2" --traffic summarize --concurrency "$3" --num-requests "$3" \
    traffic.output_len.kind=fixed traffic.output_len.mean=256 traffic.output_len.max=256
}
m=$(model_folder /tmp/s23-models qwen2.5-32b ct-int8); tok=$(tokenizer_folder "$m")
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-s23 DEV=0 PORT=8000 serve U32 "$m" "$tok" "$(meta_of qwen2.5-32b int8 fp8)" \
    --kv-cache-dtype fp8; then
  for c in 8 10 12 16; do PORT=8000 burst U32 "$tok" "$c" 6000; PORT=8000 sburst U32 "$tok" "$c"; done
fi
stop U32
touch "$S/ALL_DONE"
