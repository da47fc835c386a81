#!/usr/bin/env bash
# Issue 14, session 19b: the same warm two-H200 host after session19.sh, with its last ~10 device minutes.
#   M70T2: the AutoAWQ 70B of M70 at TP=2 (W4A16 never ran at TP>1): chat at 3 and 6 req/s, then bursts of
#   16/32/64 at 1,024 tokens. No grid (no time). Written straight under S (pass S19B=$OUT/s19b) so whatever finished
#   comes back if the lease ends first. Nothing here is fitted.
set -u
S=${S19B:-/tmp/s19b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
# TP>1 without NVLink multicast (../shared/gpu/README.md), as session12.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
NOFUSE='{"pass_config":{"fuse_allreduce_rms":false}}'
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
m=$(model_folder /tmp/models-0 llama-3.1-70b awq); tok=$(tokenizer_folder "$m")
if TP=2 DEV=0,1 SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-M70T2 serve M70T2 "$m" "$tok" \
    "$(TP=2 meta_of llama-3.1-70b awq auto '"checkpoint_format": "awq"')" --tensor-parallel-size 2 \
    --compilation-config "$NOFUSE"; then
  for r in 3 6; do load M70T2 "chat-$r" "$tok" "$r"; done
  for c in 16 32 64; do burst M70T2 "$tok" "$c" 1024; done
fi
stop M70T2
touch "$S/ALL_DONE"
