#!/usr/bin/env bash
# Session 23, second machine (four H200s, the last ~13 device minutes). session23b.sh's Mixtral AWQ (MXA) took its
# prompts 1.56x slower than the model says (bursts of 16-64 x 1,024: TTFT -36%), and at 10 req/s it ran past its
# capacity (TTFT P50 3.3 s against 0.2 predicted). Here, on one host, for the W4A16 MoE term:
#   GPU 0: Mixtral FP8 (MXF), the same host's reference: bursts of 16/32/64 x 1,024 (session22c.sh's MXF, again);
#   GPU 1: Mixtral AWQ + FP8 KV (MXA2): chat at 6 req/s (held out), the same bursts;
#   GPUs 2,3: the launch-safety set's Qwen2.5-32B INT8 candidate (rag #1), as planned for an H200 and at an H100's
#   budget, with the tokenizer fix (session23.sh's run refused the smoke prompt: launch_safety_run.py says why).
#   setsid nohup bash benchmarks/gpu/session23c.sh > /tmp/s23c.log 2>&1 < /dev/null &   # poll /tmp/s23c/ALL_DONE
set -u
S=${S23C:-/tmp/s23c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=0
( PATH=$PWD/benchmarks/gpu/bin:$PATH python3 benchmarks/gpu/launch_safety_run.py benchmarks/gpu/launch_safety \
    "$S/ls-results.jsonl" --only qwen2.5-32b-1gpu-rag#1 --emulate qwen2.5-32b-1gpu-rag --gpus 2,3 \
    > "$S/launch_safety.log" 2>&1 ) &
served MXF 0 8000 mixtral-8x7b fp8 fp8 fp8 "" "" &
served MXA2 1 8001 mixtral-8x7b awq awq fp8 "6" ""
wait
touch "$S/ALL_DONE"
