#!/usr/bin/env bash
# Issue 14, session 7, on a two-GPU machine (nvidia-h100-x2): what the planner never saw, a 14B-class model served
# as two TP=1 replicas and as one TP=2 server on the same two GPUs, and the NCCL collectives between them.
#   P. `serveplan profile` of this machine, collectives between the two GPUs included (NVLink multicast off);
#   R0/R1. Qwen2.5-14B bf16, one TP=1 server per GPU: TTFT at concurrency 1 (128, 1024, 8192 tokens) on R0, then
#          chat at 6 and 13 req/s in all, half to each replica (a Poisson stream split at random is two Poisson
#          streams of half the rate), then the closed grid (vllm_grid.py) on R0;
#   T. the same model at TP=2 on both GPUs: the same concurrency-1 sweep, chat at 6 and 13 req/s, the same grid.
# Nothing here is fitted: benchmarks/open_loop_accuracy.py and benchmarks/accuracy.py report these runs as held out.
#
#   setsid nohup bash benchmarks/gpu/session7_tp.sh > /tmp/s7.log 2>&1 &   # then poll /tmp/s7/DONE
# Results: /tmp/s7/{P,R0,R1,T}/..., /tmp/s7/times.txt.
set -u
source benchmarks/gpu/vllm_env.sh
# TP>1 without NVLink multicast (../shared/gpu/README.md); harmless for the TP=1 servers
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
S=${S7:-/tmp/s7}; mkdir -p "$S/P"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
T_GRID_BY=${T_GRID_BY:-1150}  # seconds into the script; a later grid would not finish inside the lease
source benchmarks/gpu/engine_timings.sh

up() { curl -sf "http://127.0.0.1:$1/health" > /dev/null; }  # a server from an earlier start of this script
t0=$SECONDS
[ -f "$S/P/$gpu-x2.yaml" ] || python3 -m serveplan.cli.profile --n-gpus 2 --no-progress -o "$S/P/$gpu-x2.yaml" > "$S/P/profile.log" 2>&1
echo "P profile rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"

m14=$(model_folder /tmp/s7-models qwen2.5-14b hf); tok14=$(tokenizer_folder "$m14")
meta14=$(meta_of qwen2.5-14b bf16 auto)

# Two TP=1 replicas, started together; separate compile caches so the two compilations do not write one folder.
if up 8000 && up 8001; then
  echo "R0, R1 already up" >> "$S/times.txt"; r1=
else
  SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-r1 DEV=1 PORT=8001 serve R1 "$m14" "$tok14" "$meta14" > /dev/null &
  r1=$!
fi
if { [ -z "$r1" ] || { SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-r0 DEV=0 PORT=8000 serve R0 "$m14" "$tok14" "$meta14" \
      && wait "$r1"; }; }; then
  PORT=8000 c1_sweep R0 "$tok14" 128 1024 8192
  for half in 3 6.5; do
    PORT=8000 load R0 "chat-$half" "$tok14" "$half" &
    PORT=8001 load R1 "chat-$half" "$tok14" "$half" &
    wait
  done
  PORT=8000 grid R0 "$tok14"
fi
stop R0 & stop R1 & wait

if TP=2 DEV=0,1 serve T "$m14" "$tok14" "$(TP=2 meta_of qwen2.5-14b bf16 auto)" --tensor-parallel-size 2 \
    --compilation-config '{"pass_config":{"fuse_allreduce_rms":false}}'; then
  c1_sweep T "$tok14" 128 1024 8192
  load T chat-6 "$tok14" 6
  load T chat-13 "$tok14" 13
  if [ "$SECONDS" -le "$T_GRID_BY" ]; then grid T "$tok14"; else echo "T grid skipped: $SECONDS s > $T_GRID_BY s" >> "$S/times.txt"; fi
fi
stop T
touch "$S/DONE"
