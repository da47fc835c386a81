#!/usr/bin/env bash
# Issue 14, session 8, on a four-GPU machine (nvidia-h100-x4): what the planner never saw, a 70B at TP=4, against
# the same model at TP=2 (one replica at half the rate is what each of two replicas sees: a Poisson stream split at
# random is two Poisson streams of half the rate), and the 70B FP8 plan for ONE 80 GB card launched for real.
#   P.  `serveplan profile --n-gpus 4`: NCCL all-reduce / all-gather among four GPUs (NVLink multicast off);
#   R.  Llama-3.1-70B FP8 (compressed-tensors folder) + FP8 KV at TP=2 on GPUs 0,1: TTFT at concurrency 1
#       (128, 1024, 8192 tokens), chat at 3, 6 and 8 req/s (= 6, 12, 16 in all over two replicas), the closed grid;
#   L1. at the same time, on GPU 2: `serveplan verify` of the committed plan benchmarks/gpu/plans/session8/
#       70b-1xh100-fp8 (the planner's answer for a 70B FP8 on one H100) with a published-format (compressed-tensors)
#       folder: the plan's own flags, KV cache pinned, its traffic at its rate;
#   L2. on GPU 3: the same plan with a bf16 folder, which vLLM quantizes to FP8 while loading (online FP8): does
#       it load on an 80 GB card, and what peak does nvidia-smi see (sampled every 0.5 s);
#   T.  the same 70B FP8 at TP=4 on all four GPUs: the same concurrency-1 sweep, chat at 6, 12 and 16 req/s, the grid.
# Nothing here is fitted: benchmarks/open_loop_accuracy.py and benchmarks/accuracy.py report these runs as held out.
#
#   setsid nohup bash benchmarks/gpu/session8_x4.sh > /tmp/s8.log 2>&1 &   # then poll /tmp/s8/DONE
# The rates above are sized to H100s. Session 8's GPUs came as H200s and it ran with R_RATES="4 8 12"
# T_RATES="8 16 24"; R's grid was stopped by hand (pkill of its vllm_grid.py) to leave T's grid its time.
# Results: /tmp/s8/{P,R,L1,L2,T}/..., /tmp/s8/times.txt.
set -u
source benchmarks/gpu/vllm_env.sh
# TP>1 without NVLink multicast (../shared/gpu/README.md)
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
NOFUSE='{"pass_config":{"fuse_allreduce_rms":false}}'
S=${S8:-/tmp/s8}; mkdir -p "$S/P" "$S/L1" "$S/L2"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
R_GRID_BY=${R_GRID_BY:-760}   # seconds into the script; later grids would not leave T its time in the lease
T_GRID_BY=${T_GRID_BY:-1330}
# R_RATES / T_RATES: the chat rates (req/s) for R and T; the defaults are sized to H100s
source benchmarks/gpu/engine_timings.sh

t0=$SECONDS
[ -f "$S/P/$gpu-x4.yaml" ] || python3 -m serveplan.cli.profile --n-gpus 4 --no-progress -o "$S/P/$gpu-x4.yaml" > "$S/P/profile.log" 2>&1
echo "P profile rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"

m70=$(model_folder /tmp/s8-models llama-3.1-70b ct-fp8); tok70=$(tokenizer_folder "$m70")
# Phase 1: R on GPUs 0,1; the one-GPU plan twice beside it (published folder on GPU 2, online FP8 on GPU 3).
if [ "$gpu" = h100-sxm ]; then
  verify_on L1 2 8200 benchmarks/gpu/plans/session8/70b-1xh100-fp8 "$(model_folder /tmp/s8-models llama-3.1-70b ct-fp8)" &
  v1=$!
  verify_on L2 3 8300 benchmarks/gpu/plans/session8/70b-1xh100-fp8 "$(model_folder /tmp/s8-models llama-3.1-70b hf)" &
  v2=$!
else
  echo "L1, L2 skipped: the GPUs are $gpu, not 80 GB cards" >> "$S/times.txt"; v1=; v2=
fi
if TP=2 DEV=0,1 serve R "$m70" "$tok70" "$(TP=2 meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8 \
    --tensor-parallel-size 2 --compilation-config "$NOFUSE"; then
  c1_sweep R "$tok70" 128 1024 8192
  for r in ${R_RATES:-3 6 8}; do load R "chat-$r" "$tok70" "$r"; done
  if [ "$SECONDS" -le "$R_GRID_BY" ]; then grid R "$tok70"; else echo "R grid skipped: $SECONDS s > $R_GRID_BY s" >> "$S/times.txt"; fi
fi
stop R
[ -n "$v1" ] && wait "$v1"; [ -n "$v2" ] && wait "$v2"

# Phase 2: T on all four GPUs.
if TP=4 DEV=0,1,2,3 serve T "$m70" "$tok70" "$(TP=4 meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8 \
    --tensor-parallel-size 4 --compilation-config "$NOFUSE"; then
  c1_sweep T "$tok70" 128 1024 8192
  for r in ${T_RATES:-6 12 16}; do load T "chat-$r" "$tok70" "$r"; done
  if [ "$SECONDS" -le "$T_GRID_BY" ]; then grid T "$tok70"; else echo "T grid skipped: $SECONDS s > $T_GRID_BY s" >> "$S/times.txt"; fi
fi
stop T
touch "$S/DONE"
