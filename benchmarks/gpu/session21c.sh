#!/usr/bin/env bash
# Session 21, third machine (two H200s, the last ~8 device minutes): the README's first command's answer,
# `plan --model llama-70b --gpus 2xA100` (TP2 INT8 W8A8 with an FP8 KV cache), made with engine.version=0.26.0 and
# hardware.nvlink_multicast=false (the lent machines' NVLink multicast is off), launched by `serveplan verify --force`
# on two H200s: its flags, TP=2 INT8 and its pinned KV cache (38.5 GB per GPU) start, and nvidia-smi's peak per GPU
# against an A100-80GB's 79.15 GiB. Not what an A100 runs for attention (no FA3 there). A 40-s load at 2 req/s.
set -u
S=${S21:-/tmp/s21c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session21
peak_mib 0 "$S/peak_mib_gpu0.txt" & p0=$!   # verify_on's own sampler reads one GPU
peak_mib 1 "$S/peak_mib_gpu1.txt" & p1=$!
verify_on V70T2 0,1 8200 "$P/70b-2xa100" "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)" --force --duration 40
kill "$p0" "$p1" 2>/dev/null
touch "$S/ALL_DONE"
