#!/usr/bin/env bash
# Issue 14, session 18, on two H200s (H100s were not lent). Three questions the planner's quantized answers rest on:
#   A8 / A70: AWQ. The planner's answer for the 70B on one 80 GB card is AWQ (serveplan quantize writes it as
#      compressed-tensors W4A16 asymmetric, group 128), and vLLM has never served one: the W4A16 engine terms were
#      solved on symmetric (GPTQ-style) checkpoints, whose kernel on Hopper is Machete. Llama-3.1-8B and -70B
#      ct-awq, dummy weights, session 5's flags, bf16 KV: chat at two rates, bursts of 16/32/64 at 1,024 tokens, the
#      grid. Nothing here is fitted: every point is held out (a precision the W4A16 terms never saw).
#   F8: the host. Session 17's 8B INT8 read 23-60% pessimistic on TTFT, and its short prompts came faster than
#      session 5's FP8 8B's (17 against 25 ms at 128 tokens), on another host. The FP8 8B of session 5 (ct-fp8, FP8
#      KV) again, on the same host as A8, one after the other on GPU 0: the same grid, bursts, chat at 8 and 18 req/s
#      and prompts alone at 128-8,192 tokens.
#   GEMM (GPU 1, first): the FP8 and INT8 kernels at 21 M between 1,024 and 8,192 (the tables had four points there).
#   host.txt: the host's CPU, and a fixed single-thread Python loop's time, to compare hosts from now on.
# setsid nohup bash benchmarks/gpu/session18.sh > /tmp/s18.log 2>&1 < /dev/null &   # then poll /tmp/s18/ALL_DONE
set -u
S=${S18:-/tmp/s18}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=${GRID_BY:-1250}   # the last second at which a grid may start (a 70B grid takes ~250 s)
F8_BY=${F8_BY:-1000}       # the control 8B starts only before this (start ~110-220 s, its loads ~400 s)
COARSE_M=1024,1088,1152,1280,1408,1536,1664,1792,1920,2048,2304,2560,2816,3072,3584,4096,4608,5120,6144,7168,8192

{ lscpu | grep -E "Model name|^CPU\(s\)|MHz|Socket|Thread"; nproc
  python3 - <<'PY'
import time
best = 1e9
for _ in range(5):  # a fixed single-thread loop: the kind of work an engine's scheduler and front end do
    t = time.perf_counter(); d = {}
    for i in range(1_000_000):
        d[i & 1023] = d.get(i & 1023, 0) + i
    best = min(best, time.perf_counter() - t)
print(f"python_loop_s {best:.4f}")
PY
} > "$S/host.txt" 2>&1

gemm() {
  local t0=$SECONDS
  CUDA_VISIBLE_DEVICES=$1 python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm-coarse.jsonl" --m "$COARSE_M" \
    --kernels fp8-torch,fp8-cutlass-t,fp8-cutlass-tc,int8-torch,int8-cutlass-tc > "$S/gemm-coarse.log" 2>&1
  echo "GEMM coarse rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
}

served() {  # tag dev port model format weight-dtype kv-dtype rate1 rate2 [c1]: loads, bursts, grid on one server
  local tag=$1 dev=$2 port=$3 model=$4 fmt=$5 wd=$6 kv=$7 r1=$8 r2=$9 c1=${10:-} m tok extra=
  m=$(model_folder "/tmp/s18-models-$dev" "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  [ "$kv" = fp8 ] && extra="--kv-cache-dtype fp8"
  export DEV=$dev PORT=$port
  # shellcheck disable=SC2086
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" "$(meta_of "$model" "$wd" "$kv")" $extra; then
    load "$tag" "chat-$r1" "$tok" "$r1"
    load "$tag" "chat-$r2" "$tok" "$r2"
    for c in 16 32 64; do burst "$tag" "$tok" "$c" 1024; done
    [ -n "$c1" ] && c1_sweep "$tag" "$tok" 128 512 1024 2048 4096 8192
    if [ "$SECONDS" -lt "$GRID_BY" ]; then grid "$tag" "$tok"; else echo "$tag grid skipped at $SECONDS s" >> "$S/times.txt"; fi
  fi
  stop "$tag"
  unset DEV PORT
}

if [ "$n_gpus" -gt 1 ]; then
  { gemm 1; served A70 1 8001 llama-3.1-70b ct-awq awq auto 1.5 3; } &
  side=$!
  served A8 0 8000 llama-3.1-8b ct-awq awq auto 8 15
  if [ "$SECONDS" -lt "$F8_BY" ]; then served F8 0 8000 llama-3.1-8b ct-fp8 fp8 fp8 8 18 c1
  else echo "F8 skipped at $SECONDS s" >> "$S/times.txt"; fi
  wait "$side"
else
  gemm 0
  served A8 0 8000 llama-3.1-8b ct-awq awq auto 8 15
  served A70 0 8000 llama-3.1-70b ct-awq awq auto 1.5 3
fi
grep -h -iE "Selected|Using .*Kernel|machete|marlin" "$S"/*/server.log 2>/dev/null | cut -c1-250 | sort | uniq -c > "$S/kernels.txt"
touch "$S/ALL_DONE"
