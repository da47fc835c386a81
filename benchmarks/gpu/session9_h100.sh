#!/usr/bin/env bash
# Issue 14 and the launch proof, session 9, on one H100 (nvidia-h100-x1): the planner's 70B FP8 plan for ONE 80 GB
# card launched for real (session 8 wrote this part for a four-H100 machine, and four H200s came), then an A/B of the
# KV-cache dtype under an open loop.
#   L1. `serveplan verify` of benchmarks/gpu/plans/session8/70b-1xh100-fp8 with a published-format
#       (compressed-tensors FP8) folder: the plan's own flags, KV cache pinned, its traffic at its planned 2 req/s;
#   L2. the same plan with a bf16 folder, which vLLM quantizes to FP8 while loading (online FP8), at 3 req/s (a
#       second load for the same configuration): does it load on an 80 GB card, and what peak does nvidia-smi see
#       (sampled every 0.5 s; the planner takes FP8 weights + two bf16 layers, 71.7 GiB measured on an H200);
#   KF/KA. Llama-3.1-8B FP8 weights with FP8 KV (KF) and with bf16 KV (KA), chat at the same rate (K_RATES): every open loop
#       with FP8 weights and FP8 KV (sessions 5-8) predicts TPOT 4-44% too low and the bf16 ones do not; this
#       separates the KV dtype from the model and the weights. Skipped when the lease is running short.
# Nothing here is fitted: benchmarks/open_loop_accuracy.py reports these runs as held out.
#
#   setsid nohup bash benchmarks/gpu/session9_h100.sh > /tmp/s9.log 2>&1 &   # then poll /tmp/s9/DONE
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S9:-/tmp/s9}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
K_BY=${K_BY:-800}   # seconds into the script after which the KV A/B is skipped (the lease would not hold it)
K_RATES=${K_RATES:-12}

if [ "$gpu" = h100-sxm ]; then
  plan=benchmarks/gpu/plans/session8/70b-1xh100-fp8
  verify_on L1 0 8200 "$plan" "$(model_folder /tmp/s9-models llama-3.1-70b ct-fp8)"
  verify_on L2 0 8300 "$plan" "$(model_folder /tmp/s9-models llama-3.1-70b hf)" --rate 3
else
  echo "L1, L2 skipped: the GPU is $gpu, not an 80 GB card" >> "$S/times.txt"
fi

m8=$(model_folder /tmp/s9-models llama-3.1-8b ct-fp8)
kvs="fp8 auto"
if [ "$SECONDS" -gt "$K_BY" ]; then echo "KF, KA skipped: $SECONDS s > $K_BY s" >> "$S/times.txt"; kvs=; fi
for kv in $kvs; do
  tag=K$([ "$kv" = fp8 ] && echo F || echo A)
  if serve "$tag" "$m8" "$m8" "$(meta_of llama-3.1-8b fp8 "$kv")" --kv-cache-dtype "$kv"; then
    for r in $K_RATES; do load "$tag" "chat-$r" "$m8" "$r"; done
  fi
  stop "$tag"
done
touch "$S/DONE"
