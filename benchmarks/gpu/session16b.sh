#!/usr/bin/env bash
# Issue 14, session 16 (second machine, asked as nvidia-h200: the first was an H100): session16.sh's part A alone,
# fp8_gemm_by_m.py on this GPU. On the H100 vLLM's CUTLASS FP8 GEMM was 5-10% slower than torch._scaled_mm at M of
# 17-32 and 65-128, and up to 75% slower at 129-256; the 70B's decode bump at batches 24-40 was measured on H200s.
#
#   setsid nohup bash benchmarks/gpu/session16b.sh > /tmp/s16b.log 2>&1 < /dev/null &   # then poll /tmp/s16b/DONE
set -u
S=${S16B:-/tmp/s16b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
t0=$SECONDS
python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm.jsonl" > "$S/gemm.log" 2>&1
echo "A rc=$? in $((SECONDS - t0)) s on $gpu" >> "$S/times.txt"
touch "$S/DONE"
