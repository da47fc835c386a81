#!/usr/bin/env bash
# Session 22 (H200s; no H100 was lent): long `serveplan verify` runs of plans nothing was fitted on, so that a run's P99
# is more than its one or two slowest requests (session 21's 60-s verify runs: P99 39% off against sampled traffic,
# 20% replayed). Plans made here with engine.version=0.26.0 (benchmarks/gpu/plans/session22/*.txt are their tables):
#   plan --model mixtral-8x7b --gpus 1xH200 engine.version=0.26.0            (INT8 W8A8 + FP8 KV; never served: the
#       first INT8 MoE start, compressed-tensors' INT8 fused-MoE path)
#   plan --model qwen2.5-32b --gpus 1xH200 traffic=summarize engine.version=0.26.0   (INT8 + FP8 KV, 1 req/s planned
#       against 1.41 at the SLO: prefill-heavy near capacity, where TPOT errors were largest)
#   plan --model qwen2.5-14b --gpus 1xH200 traffic=rag engine.version=0.26.0  (INT8 + FP8 KV, 6.8 req/s at the SLO)
# and session 21's 2xA100 plan (the README's first answer: 70B TP2 INT8 + FP8 KV), --force on two H200s, which session
# 21c cut after 61 requests.
# Four H200s: GPUs 0-1 the TP2 plan, GPU 2 the 32B, GPU 3 Mixtral then the 14B. Two: GPU 0 the 32B then the 14B,
# GPU 1 Mixtral; the TP2 plan is skipped. Dummy weights of each plan's checkpoint format. Nothing is fitted.
#   setsid nohup bash benchmarks/gpu/session22b.sh > /tmp/s22b.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S22B:-/tmp/s22b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session22
mx() { VERIFY_S=300 verify_on VMX8 "$1" "$2" "$P/mixtral-8x7b-chat" "$(model_folder "/tmp/models-$1" mixtral-8x7b ct-int8)" --rate 8; }
q32() { VERIFY_S=600 verify_on VQ32S "$1" "$2" "$P/qwen2.5-32b-summarize" "$(model_folder "/tmp/models-$1" qwen2.5-32b ct-int8)"; }
q14() { VERIFY_S=240 verify_on VQ14R5 "$1" "$2" "$P/qwen2.5-14b-rag" "$(model_folder "/tmp/models-$1" qwen2.5-14b ct-int8)" --rate 5; }
if [ "$n_gpus" -ge 4 ]; then
  ( VERIFY_S=600 verify_on V70T2L 0,1 8200 benchmarks/gpu/plans/session21/70b-2xa100 \
      "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)" --force ) & a=$!
  q32 2 8400 & b=$!
  mx 3 8500; q14 3 8500
  wait "$a" "$b"
elif [ "$n_gpus" -ge 2 ]; then
  ( q32 0 8200; q14 0 8200 ) & a=$!
  mx 1 8300
  wait "$a"
else
  mx 0 8200; q14 0 8200
fi
touch "$S/ALL_DONE"
