#!/usr/bin/env bash
# Issue 14, session 17, on a two-GPU machine (asked as nvidia-h100-x2; one GPU works too, with less done).
# The plans the planner prefers most often are quantized, and vLLM has run only its bf16 and FP8 ones so far: the
# INT8 W8A8 and W4A16 (GPTQ, Marlin) predictions rest on torch._int_mm and on two assumed penalties (session 16's
# perf.py constants). It ran on two H200s (the second branch below), then session17b.sh on the same machine. Afterwards
# benchmarks/w4a16.py solved vLLM's W4A16 terms on the 70B's bursts and the 8B's concurrency-1 training points;
# accuracy.py, decode_steps.py and open_loop_accuracy.py report the rest as held out (docs/accuracy.md, session 17).
#   A  (GPU 1, or 0 alone): fp8_gemm_by_m.py at 27 more M between 129 and 1,023 (session 16 had four there, and
#      steps carrying a prompt chunk read 7-28% above the model on the 70B FP8), and the INT8 kernels at every M:
#      vLLM's cutlass_scaled_mm on int8 against torch._int_mm (the profile's), with the per-token quantization.
#   On H100s first (TP>1 never ran on H100s: sessions 12-14 asked and got H200s): session12.sh as it is, the pair's
#      NCCL profile and the 70B FP8 + FP8 KV at TP=2 (H2: concurrency 1, bursts, chat at 3 and 5.5 req/s, grid).
#   Q8 / G4 (GPU 0): Llama-3.1-8B compressed-tensors INT8 W8A8 / W4A16 (GPTQ-style, group 128, Marlin), dummy
#      weights, session 5's flags: the closed grid, bursts of 16/32/64 at 1,024 tokens, chat at 8 and 15 req/s
#      (the planner's capacity for either: ~19-20 req/s).
#   I70 (GPU 1, H200s only): Llama-3.1-70B INT8 W8A8 at TP=1, bf16 KV: the same loads at 1.5 and 3 req/s
#      (capacity ~3.6), then the grid.
#   Each server starts only while enough of the lease is left (*_BY, seconds into the script).
#
#   setsid nohup bash benchmarks/gpu/session17.sh > /tmp/s17.log 2>&1 < /dev/null &   # then poll /tmp/s17/ALL_DONE
set -u
S=${S17:-/tmp/s17}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
Q_BY=${Q_BY:-1000}     # the last second at which an 8B server may start (start ~150-250 s, its loads ~600 s)
I70_BY=${I70_BY:-700}  # the 70B INT8 (start ~300 s, loads and grid ~600 s)
FINE_M=129,136,144,152,160,176,192,208,224,240,255,256,257,272,288,320,352,384,416,448,480,511,512,513,576,640,704,768,832,896,960,1023,1024
GEMM_DEV=$(( n_gpus > 1 ? 1 : 0 ))

gemm() {
  local t0=$SECONDS
  CUDA_VISIBLE_DEVICES=$GEMM_DEV python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm-fine.jsonl" --m "$FINE_M" \
    --kernels bf16,fp8-torch,fp8-cutlass-t,fp8-cutlass-tc > "$S/gemm-fine.log" 2>&1
  echo "A fine rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
  t0=$SECONDS
  CUDA_VISIBLE_DEVICES=$GEMM_DEV python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm-int8.jsonl" \
    --m "1,2,4,8,12,16,17,20,24,28,32,36,40,48,56,64,65,72,80,96,112,128,$FINE_M,2048,4096,8192" \
    --kernels fp8-torch,int8-torch,int8-cutlass-tc,quant-tok,quant-int8-tok > "$S/gemm-int8.log" 2>&1
  echo "A int8 rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
}

quantized() {  # tag dev port model format weight-dtype rate1 rate2: a dummy-weight server, grid, bursts, two loads
  local tag=$1 dev=$2 port=$3 model=$4 fmt=$5 wd=$6 r1=$7 r2=$8 m tok
  m=$(model_folder "/tmp/s17-models-$dev" "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  export DEV=$dev PORT=$port
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" "$(meta_of "$model" "$wd" auto)"; then
    load "$tag" "chat-$r1" "$tok" "$r1"
    load "$tag" "chat-$r2" "$tok" "$r2"
    for c in 16 32 64; do burst "$tag" "$tok" "$c" 1024; done
    grid "$tag" "$tok"
  fi
  stop "$tag"
  unset DEV PORT
}

if [ "$gpu" = h100-sxm ] && [ "$n_gpus" -gt 1 ]; then
  S12=$S bash benchmarks/gpu/session12.sh   # P and H2; it touches $S/DONE when done
  gemm
  if [ "$SECONDS" -lt "$Q_BY" ]; then
    quantized Q8 0 8000 llama-3.1-8b ct-int8 int8 8 15 &
    quantized G4 1 8001 llama-3.1-8b ct-gptq gptq 8 15 &
    wait
  else
    echo "Q8, G4 skipped at $SECONDS s" >> "$S/times.txt"
  fi
elif [ "$n_gpus" -gt 1 ]; then  # H200s
  {
    gemm
    if [ "$gpu" = h200 ] && [ "$SECONDS" -lt "$I70_BY" ]; then
      quantized I70 1 8001 llama-3.1-70b ct-int8 int8 1.5 3
    fi
  } &
  side=$!
  quantized Q8 0 8000 llama-3.1-8b ct-int8 int8 8 15
  if [ "$SECONDS" -lt "$Q_BY" ]; then quantized G4 0 8000 llama-3.1-8b ct-gptq gptq 8 15
  else echo "G4 skipped at $SECONDS s" >> "$S/times.txt"; fi
  wait "$side"
else  # one GPU: one thing at a time (a GEMM timing beside a starting server would take its memory)
  gemm
  quantized Q8 0 8000 llama-3.1-8b ct-int8 int8 8 15
  if [ "$SECONDS" -lt "$Q_BY" ]; then quantized G4 0 8000 llama-3.1-8b ct-gptq gptq 8 15
  else echo "G4 skipped at $SECONDS s" >> "$S/times.txt"; fi
fi
touch "$S/ALL_DONE"
