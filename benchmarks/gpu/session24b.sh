#!/usr/bin/env bash
# Session 24, after the reported predictions moved to 240 s of simulated arrivals (simulation.REPORTED_HORIZON_S): the
# README's first answer changed from TP2 INT8 + FP8 KV (16,384 tokens unchunked) to TP2 INT8 with a bf16 KV cache, 256
# sequences, 2,048 tokens chunked (benchmarks/gpu/plans/session24/70b-2xa100, made with engine.version=0.26.0; its
# table is 70b-2xa100.txt). No GPU had started that configuration. `serveplan verify --force` on two H200s (dummy INT8
# weights) at its planned 2 req/s for 180 s: does it start, answer, and how far is the plan's prediction for an H200.
# Nothing is fitted on it.
#   setsid nohup bash benchmarks/gpu/session24b.sh > /tmp/s24b.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S24B:-/tmp/s24b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
VERIFY_S=180 verify_on V70T2B 0,1 8200 benchmarks/gpu/plans/session24/70b-2xa100 \
  "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)" --force
touch "$S/ALL_DONE"
