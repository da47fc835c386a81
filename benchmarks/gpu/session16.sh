#!/usr/bin/env bash
# Issue 14, session 16, on one GPU (H100 or H200, whichever comes): is the 70B FP8's decode bump vLLM's FP8 GEMM?
#   The 70B FP8's lockstep decode step is 18-37% longer than the model's at batches of 24-40 and within 4% at 16 and
#   48-64 (session 11b's L at TP=1, session 12's H2 at TP=2, session 15b's SE), and its open loops are 19-38%
#   optimistic on TPOT where their batches sit there. The model reads a decode step's weights at a bandwidth flat in
#   the batch.
#   A: fp8_gemm_by_m.py: the linear layers' GEMMs of the 70B (TP 1 and 2), 8B and 32B by M, with vLLM's CUTLASS FP8
#      kernel (per-tensor and per-token x per-channel scales), torch._scaled_mm (the profile's) and bf16 cuBLAS.
#   B: the same batches through a whole vLLM server: a 70B-shaped Llama cut to 20 layers (every linear shape the
#      70B's, a quarter of its weights, so it fits an H100 with room for a batch of 64), compressed-tensors FP8 with
#      FP8 KV (B20F) and bf16 (B20A), bursts of C prompts of 1,024 tokens for C in 8-64 (decode_steps.py reads them).
#   C (H100 only, if time is left): the 14B bf16's prompts alone, 12 requests each at 64-1,024 tokens (session 15's
#      floor-and-hold question; session 7's H100 14B ran 6).
# Whatever term A and B suggest is solved on A and on B's bursts; every open loop and earlier burst stays held out.
#
#   setsid nohup bash benchmarks/gpu/session16.sh > /tmp/s16.log 2>&1 < /dev/null &   # then poll /tmp/s16/DONE
set -u
S=${S16:-/tmp/s16}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
C_BY=${C_BY:-900}   # seconds into the script after which C is skipped

t0=$SECONDS
python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm.jsonl" > "$S/gemm.log" 2>&1
echo "A rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"

mf=$(cut_layers "$(model_folder /tmp/s16-models llama-3.1-70b ct-fp8)" 20); tokf=$(tokenizer_folder "$mf")
ma=$(cut_layers "$(model_folder /tmp/s16-models llama-3.1-70b hf)" 20); toka=$(tokenizer_folder "$ma")
for spec in "B20F:$mf:$tokf:fp8:fp8" "B20A:$ma:$toka:bf16:auto"; do
  IFS=: read -r tag m tok wd kv <<< "$spec"
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" \
      "$(meta_of llama-3.1-70b "$wd" "$kv" '"num_layers": 20')" --kv-cache-dtype "$kv"; then
    for c in 8 16 20 24 28 32 40 48 56 64; do burst "$tag" "$tok" "$c" 1024; done
  fi
  stop "$tag"
done

if [ "$gpu" = h100-sxm ] && [ "$SECONDS" -lt "$C_BY" ]; then
  m14=$(model_folder /tmp/s16-models qwen2.5-14b hf); tok14=$(tokenizer_folder "$m14")
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-c14 serve C14 "$m14" "$tok14" "$(meta_of qwen2.5-14b bf16 auto)"; then
    for len in 64 128 256 512 1024; do
      bench C14 "c1-$len" "$tok14" --traffic chat --concurrency 1 --num-requests 12 traffic.input_len.kind=fixed \
        "traffic.input_len.mean=$len" "traffic.input_len.max=$len" traffic.output_len.kind=fixed \
        traffic.output_len.mean=16 traffic.output_len.max=16
    done
  fi
  stop C14
else
  echo "C skipped: GPU $gpu, $SECONDS s" >> "$S/times.txt"
fi
touch "$S/DONE"
