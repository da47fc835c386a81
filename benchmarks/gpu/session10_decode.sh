#!/usr/bin/env bash
# Issue 14, session 10: what a decode step costs as the context grows, with FP8 and with bf16 KV cache.
# Every open loop with FP8 KV (sessions 5-9) predicts TPOT 8-36% too low, the bf16-KV ones do not, and session 9's
# A/B (8B, H100, 12 req/s) found FP8 KV only 4% faster where the model says 17%. This measures the decode step
# directly: a closed burst of C prompts of L tokens (num-requests = C, 256 tokens out each) prefills together and
# then decodes in lockstep at batch C and context L..L+256, so the last 128 gaps between tokens of every request are
# pure decode steps. Per server: C in 32/128 at L 256 and 2,048, C in 32/64 at L 6,144; and concurrency 1 at 64-1,024
# prompt tokens (12 requests each, 16 out; the worst closed-loop points are short prompts at concurrency 1).
#   D8F / D8A: Llama-3.1-8B FP8 weights, FP8 KV / bf16 KV (any GPU).
#   D70F / D70A: Llama-3.1-70B FP8 weights, FP8 KV / bf16 KV (H200 only: an H100 holds too little KV for the sweep),
#                C in 32/64 at L 256 and 2,048, C 32 at L 4,096; skipped once D_BY seconds have passed.
# The 8B pair is the fit set of any term drawn from it; the 70B pair and every open loop stay held out.
#
#   setsid nohup bash benchmarks/gpu/session10_decode.sh > /tmp/s10.log 2>&1 &   # then poll /tmp/s10/DONE
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S10:-/tmp/s10}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
D_BY=${D_BY:-700}   # seconds into the script after which the 70B pair is skipped
D_C1=${D_C1:-1}     # 0: no concurrency-1 sweep
D8_BURSTS=${D8_BURSTS:-"32:256 128:256 32:2048 128:2048 32:6144 64:6144"}   # concurrency:prompt-len
# The H100 rerun of the 8B pair (a GPU the term was not solved on): S10=/tmp/s10h D_C1=0 D8_BURSTS="32:256 32:2048 32:6144 64:6144"


m8=$(model_folder /tmp/s10-models llama-3.1-8b ct-fp8)
for kv in fp8 auto; do
  tag=D8$([ "$kv" = fp8 ] && echo F || echo A)
  if serve "$tag" "$m8" "$m8" "$(meta_of llama-3.1-8b fp8 "$kv")" --kv-cache-dtype "$kv"; then
    [ "$D_C1" = 1 ] && c1_sweep "$tag" "$m8" 512 64 128 256 1024
    for cl in $D8_BURSTS; do burst "$tag" "$m8" "${cl%%:*}" "${cl##*:}"; done
  fi
  stop "$tag"
done

if [ "$gpu" = h200 ]; then
  m70=$(model_folder /tmp/s10-models llama-3.1-70b ct-fp8)
  for kv in fp8 auto; do
    if [ "$SECONDS" -gt "$D_BY" ]; then echo "70B $kv skipped: $SECONDS s > $D_BY s" >> "$S/times.txt"; continue; fi
    tag=D70$([ "$kv" = fp8 ] && echo F || echo A)
    if serve "$tag" "$m70" "$m70" "$(meta_of llama-3.1-70b fp8 "$kv")" --kv-cache-dtype "$kv"; then
      c1_sweep "$tag" "$m70" 128
      for cl in 32:256 64:256 32:2048 64:2048 32:4096; do burst "$tag" "$m70" "${cl%%:*}" "${cl##*:}"; done
    fi
    stop "$tag"
  done
else
  echo "70B pair skipped: the GPU is $gpu" >> "$S/times.txt"
fi
touch "$S/DONE"
