#!/usr/bin/env bash
# Issue 14, session 20, on two H200s (H100s were not lent again). What session 19 left unrun:
#   K70 (GPU 0): Llama-3.1-70B in the AutoAWQ format at TP=1 with an FP8 KV cache: the pairing
#        `plan --model llama-70b --gpus 1xH100` names (every AWQ server so far used a bf16 cache). Chat at 1.5 and
#        3 req/s, bursts of 16/32/64, the grid (as M70).
#   Q8 then Q70 (GPU 1): Llama-3.1-8B, then the 70B, in the AutoGPTQ format (4 bits, group 128, symmetric, no
#        act-order) with modules_in_block_to_quantize in the folder, so vLLM quantizes them with dummy weights (session
#        19's P8 ran bf16 without it). Q8 as P8 was meant to run; Q70 only chat at 1.5 req/s and the bursts.
#   M70T2 (GPUs 0+1, after both): the AutoAWQ 70B at TP=2, chat at 3 and 6 req/s (session 19b's open loops, lost).
# Dummy weights, session 5's flags. Nothing here is fitted: every point is held out.
# setsid nohup bash benchmarks/gpu/session20.sh > /tmp/s20.log 2>&1 < /dev/null &   # then poll $S/ALL_DONE and tar $S
set -u
S=${S20:-/tmp/s20}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
GRID_BY=${GRID_BY:-900}   # the last second at which a grid may start (the 70B's takes ~285 s)
Q70_BY=${Q70_BY:-700}     # Q70 starts only before this (start ~230 s, chat and bursts ~180 s)
T2_BY=${T2_BY:-1150}      # M70T2 starts only before this (start ~180 s, its loads ~190 s)
if [ "$n_gpus" -gt 1 ]; then
  served K70 0 8000 llama-3.1-70b awq awq fp8 "1.5 3" "" '"checkpoint_format": "awq"' &
  side=$!
  served Q8 1 8001 llama-3.1-8b gptq gptq auto "8 15" "128 2048 8192" '"checkpoint_format": "gptq"'
  if [ "$SECONDS" -lt "$Q70_BY" ]; then
    GRID_BY=0 served Q70 1 8001 llama-3.1-70b gptq gptq auto "1.5" "" '"checkpoint_format": "gptq"'
  else echo "Q70 skipped at $SECONDS s" >> "$S/times.txt"; fi
  wait "$side"
  if [ "$SECONDS" -lt "$T2_BY" ]; then
    # TP>1 without NVLink multicast (../shared/gpu/README.md), as session19b.sh
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
           VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
    m=$(model_folder /tmp/models-0 llama-3.1-70b awq); tok=$(tokenizer_folder "$m")
    if TP=2 DEV=0,1 SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-M70T2 serve M70T2 "$m" "$tok" \
        "$(TP=2 meta_of llama-3.1-70b awq auto '"checkpoint_format": "awq"')" --tensor-parallel-size 2 \
        --compilation-config '{"pass_config":{"fuse_allreduce_rms":false}}'; then
      for r in 3 6; do load M70T2 "chat-$r" "$tok" "$r"; done
    fi
    stop M70T2
  else echo "M70T2 skipped at $SECONDS s" >> "$S/times.txt"; fi
else
  served K70 0 8000 llama-3.1-70b awq awq fp8 "1.5 3" "" '"checkpoint_format": "awq"'
  served Q8 0 8000 llama-3.1-8b gptq gptq auto "8 15" "128 2048 8192" '"checkpoint_format": "gptq"'
fi
touch "$S/ALL_DONE"
