#!/usr/bin/env bash
# Prepared in session 21, not run yet. Issue 14 and launch safety, for the next lent machine (an H100 kind first).
#   1. The launch-safety set planned again in session 21 (benchmarks/gpu/launch_safety: 48 folders, 20 INT8, one AWQ;
#      docs/launch-safety.md, session 21): the quantized top candidates launched through `plan launch` with dummy
#      weights of their checkpoint format, vLLM's weights and KV tokens against the plan's. On an H100 these are the
#      first INT8 and AWQ starts on an 80 GB card; on H200s the 80 GB plans also run with the H100's KV cache pinned.
#   2. On an H100 only: vLLM's INT8 GEMM by M (the H100 carries the H200's table: fp8_gemm.py's INT8_CARRIED), the same
#      M and kernels as session 17's H200 table. Afterwards: `python benchmarks/fp8_gemm.py --write` with an H100 entry in
#      INT8_RUNS and without INT8_CARRIED, then accuracy.py and open_loop_accuracy.py --write-held-out.
#   setsid nohup bash benchmarks/gpu/session22.sh > /tmp/s22.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S to $OUT
set -u
S=${S22:-/tmp/s22}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
# rank 1 of every question that plans INT8 or AWQ, then the INT8 and AWQ runners-up (launch_safety/manifest.json)
ONLY=8b-1gpu-chat#1,13b-1gpu-rag#1,13b-1gpu-rag#3,mistral-7b-1gpu-chat#2,qwen2.5-32b-1gpu-rag#1,70b-2gpu-chat#2
[ "$n_gpus" -gt 1 ] && ONLY=$ONLY,8b-2gpu-summarize#1   # Mixtral plans FP8 since session 22 (INT8 experts are slow)
t0=$SECONDS
PATH=$PWD/benchmarks/gpu/bin:$PATH python3 benchmarks/gpu/launch_safety_run.py benchmarks/gpu/launch_safety \
  "$S/results.jsonl" --only "$ONLY" --emulate 13b-1gpu-rag,qwen2.5-32b-1gpu-rag ${LS_GPUS:+--gpus "$LS_GPUS"} \
  > "$S/launch_safety.log" 2>&1
echo "launch safety rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
if [ "$gpu" = h100-sxm ]; then
  t0=$SECONDS
  FINE_M=129,136,144,152,160,176,192,208,224,240,255,256,257,272,288,320,352,384,416,448,480,511,512,513,576,640,704,768,832,896,960,1023,1024
  python3 benchmarks/gpu/fp8_gemm_by_m.py --out "$S/gemm-int8.jsonl" \
    --m "1,2,4,8,12,16,17,20,24,28,32,36,40,48,56,64,65,72,80,96,112,128,$FINE_M,2048,4096,8192" \
    --kernels fp8-torch,int8-torch,int8-cutlass-tc,quant-tok,quant-int8-tok > "$S/gemm-int8.log" 2>&1
  echo "int8 gemm rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
fi
touch "$S/ALL_DONE"
