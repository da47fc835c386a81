#!/usr/bin/env bash
# Issue 14, session 12, on a two-GPU machine (nvidia-h100-x2): the 70B at TP=2 on H100s, a GPU x TP pair the planner
# never saw (TP=2 ran only on H200s: sessions 7 and 8).
#   P.  `serveplan profile --n-gpus 2`: NCCL all-reduce / all-gather between the two GPUs (NVLink multicast off);
#   H2. Llama-3.1-70B FP8 (compressed-tensors folder) at TP=2 with session 5's flags: TTFT at concurrency 1 (128,
#       1,024, 8,192 tokens), decode bursts of 16-64 at 256 tokens (is the 70B FP8 step's bump at batch 24-40, seen
#       on one H200 in session 11, there at TP=2 on H100s?), chat at two rates, the closed grid.
#       FP8 KV on H100s (the plan's choice there); with bf16 KV if the GPUs come as H200s, where session 8 ran FP8 KV
#       at TP=2 already.
# Nothing here is fitted: benchmarks/open_loop_accuracy.py, accuracy.py and decode_steps.py report it as held out.
#
#   setsid nohup bash benchmarks/gpu/session12.sh > /tmp/s12.log 2>&1 < /dev/null &   # then poll /tmp/s12/DONE
set -u
source benchmarks/gpu/vllm_env.sh
# TP>1 without NVLink multicast (../shared/gpu/README.md)
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
NOFUSE='{"pass_config":{"fuse_allreduce_rms":false}}'
S=${S12:-/tmp/s12}; mkdir -p "$S/P"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh

t0=$SECONDS  # (H200 pairs were profiled in sessions 3 and 7)
[ "$gpu" = h200 ] || [ -f "$S/P/$gpu-x2.yaml" ] || python3 -m serveplan.cli.profile --n-gpus 2 --no-progress -o "$S/P/$gpu-x2.yaml" > "$S/P/profile.log" 2>&1
echo "P profile rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"

if [ "$gpu" = h100-sxm ]; then kv=fp8; rates=${H2_RATES:-3 5.5}; else kv=auto; rates=${H2_RATES:-4 8}; fi
m70=$(model_folder /tmp/s12-models llama-3.1-70b ct-fp8); tok70=$(tokenizer_folder "$m70")
if TP=2 DEV=0,1 serve H2 "$m70" "$tok70" "$(TP=2 meta_of llama-3.1-70b fp8 $kv)" --kv-cache-dtype $kv \
    --tensor-parallel-size 2 --compilation-config "$NOFUSE"; then
  c1_sweep H2 "$tok70" 128 1024 8192
  for c in 16 24 32 40 48 64; do burst H2 "$tok70" "$c" 256; done
  for r in $rates; do load H2 "chat-$r" "$tok70" "$r"; done
  grid H2 "$tok70"
fi
stop H2
touch "$S/DONE"
