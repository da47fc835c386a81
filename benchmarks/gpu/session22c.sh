#!/usr/bin/env bash
# Session 22, second machine (four H200s, the last ~11 device minutes): session22b's Mixtral INT8 plan ran 5x slower
# than planned (TPOT P50 127 ms against 24; vLLM 0.26.0 logs "Using TRITON Int8 MoE backend" and "Using default MoE
# config": no tuned Triton config for INT8 experts on an H200). The MoE INT8 term was never measured. Here the same
# server flags (engine_timings.sh's) for three MoE servers side by side: Mixtral INT8 W8A8 (GPU 0), Qwen3-30B-A3B INT8
# W8A8 (GPU 1) and Mixtral FP8 (GPU 2, the same host's reference); each a warm-up burst, bursts of 16/32/64 at 1,024
# tokens (decode steps of batch C), then the closed grid until the budget ends. Nothing is fitted on VMX8.
#   setsid nohup bash benchmarks/gpu/session22c.sh > /tmp/s22c.log 2>&1 < /dev/null &   # poll, tar $S to $OUT
set -u
S=${S22C:-/tmp/s22c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=0
served MXI 0 8000 mixtral-8x7b ct-int8 int8 fp8 "" "" &
served Q3I 1 8001 qwen3-30b-a3b ct-int8 int8 fp8 "" "" &
served MXF 2 8002 mixtral-8x7b fp8 fp8 fp8 "" ""
wait
touch "$S/ALL_DONE"
