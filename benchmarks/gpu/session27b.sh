#!/usr/bin/env bash
# Session 27b, one H200, after session27.sh (the same lease's last ~8 device minutes, on a fresh machine): vLLM's fused
# MoE kernel by M, INT8 (int8_w8a16) against FP8, for the expert shapes a plan shards the catalog's MoE models to:
# Mixtral-8x7B at TP 2/4/8, Mixtral-8x22B at TP 1/2/4/8, Qwen3-30B-A3B at TP 2/4 (intermediate size per GPU). Session
# 27 timed the two served models at TP=1 only; a plan at TP>1 took that table "applied to" its shape. Writes straight
# into $OUT (the lease may end first): $OUT/s27b/moe-tp.jsonl.
#   bash benchmarks/gpu/session27b.sh
set -u
S=${S27B:-$OUT/s27b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu_kind "$S/nvidia-smi.txt" > /dev/null
t0=$SECONDS
timeout "${MOE_TIMEOUT:-300}" python3 benchmarks/gpu/moe_by_m.py --out "$S/moe-tp.jsonl" --kinds fp8_w8a8,int8_w8a16 \
  --shapes mixtral-8x7b/tp2,mixtral-8x22b,mixtral-8x22b/tp2,qwen3-30b-a3b/tp2,mixtral-8x7b/tp4,mixtral-8x22b/tp4,qwen3-30b-a3b/tp4,mixtral-8x7b/tp8,mixtral-8x22b/tp8 \
  > "$S/moe-tp.log" 2>&1
echo "moe_by_m rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
touch "$S/ALL_DONE"
