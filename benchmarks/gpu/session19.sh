#!/usr/bin/env bash
# Issue 14, session 19, on two H200s (H100s were not lent again). The plans name published checkpoints
# (serveplan/conf/checkpoints.yaml): for AWQ the hugging-quants AutoAWQ ones (vLLM 0.26.0's auto_awq), for GPTQ the
# AutoGPTQ ones (auto_gptq). Sessions 17-18 served only the compressed-tensors forms that `serveplan
# quantize` writes (Machete); session 18c saw the AutoAWQ 8B load and log its kernel, then the lease ended.
#   M70 (GPU 0): Llama-3.1-70B in the AutoAWQ format (4 bits, group 128, zero points), TP=1: the answer
#        `plan --model llama-70b --gpus 1xH100` gives. Chat at 1.5 and 3 req/s, bursts, the grid (as A70 in session 18).
#   M8 then P8 (GPU 1): Llama-3.1-8B AutoAWQ, then AutoGPTQ (4 bits, group 128, symmetric, no act-order): chat at 8
#        and 15 req/s, bursts, prompts alone at 128/2,048/8,192, the grid (as A8 and G4). P8 ran unquantized: its
#        folder then had no modules_in_block_to_quantize, and with dummy weights vLLM found no quantized layer.
# Dummy weights, session 5's flags, bf16 KV. Nothing here is fitted: every point is held out.
# setsid nohup bash benchmarks/gpu/session19.sh > /tmp/s19.log 2>&1 < /dev/null &   # then poll $S/ALL_DONE
set -u
S=${S19:-/tmp/s19}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=${GRID_BY:-1250}  # the last second at which a grid may start (the 70B's takes ~280 s)
P8_BY=${P8_BY:-800}       # the second 8B starts only before this (start ~130-250 s, its loads ~450 s)
if [ "$n_gpus" -gt 1 ]; then
  served M70 0 8000 llama-3.1-70b awq awq auto "1.5 3" "" '"checkpoint_format": "awq"' &
  side=$!
  served M8 1 8001 llama-3.1-8b awq awq auto "8 15" "128 2048 8192" '"checkpoint_format": "awq"'
  if [ "$SECONDS" -lt "$P8_BY" ]; then
    served P8 1 8001 llama-3.1-8b gptq gptq auto "8 15" "128 2048 8192" '"checkpoint_format": "gptq"'
  else echo "P8 skipped at $SECONDS s" >> "$S/times.txt"; fi
  wait "$side"
else
  served M8 0 8000 llama-3.1-8b awq awq auto "8 15" "128 2048 8192" '"checkpoint_format": "awq"'
  served M70 0 8000 llama-3.1-70b awq awq auto "1.5 3" "" '"checkpoint_format": "awq"'
fi
touch "$S/ALL_DONE"
