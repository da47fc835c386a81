#!/usr/bin/env bash
# Session 23 on four H200s (no H100 kind was lent): three scripts side by side, each on its own GPUs.
#   GPU 0: session23.sh (Qwen2.5-32B INT8 + FP8 KV, small bursts of equal and unequal long prompts: fp8_kv_seq_gbs
#          below fp8_kv_unsplit_from);
#   GPU 1: session23b.sh (Mixtral-8x7B AWQ + FP8 KV, the first AWQ MoE server: held out);
#   GPUs 2,3: session22.sh (the launch-safety set's INT8 / AWQ candidates through `plan launch`, the 80 GB plans at an
#          H100's memory budget).
#   setsid nohup bash benchmarks/gpu/session23x4.sh > /tmp/s23x4.log 2>&1 < /dev/null &   # poll /tmp/s23/ALL_DONE
set -u
R=${S23X4:-/tmp/s23}; mkdir -p "$R"
source benchmarks/gpu/vllm_env.sh   # assemble vLLM once here: three scripts sourcing it at once would race
S23=$R/q32 bash benchmarks/gpu/session23.sh > "$R/q32.log" 2>&1 &
DEV_AWQ=1 S23B=$R/mxa bash benchmarks/gpu/session23b.sh > "$R/mxa.log" 2>&1 &
LS_GPUS=2,3 S22=$R/ls bash benchmarks/gpu/session22.sh > "$R/ls.log" 2>&1 &
wait
touch "$R/ALL_DONE"
