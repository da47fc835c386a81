#!/usr/bin/env bash
# Plan quality on the GPU (issue 15 item 5, issue 17 item 5): the planner's winner against vLLM run with its
# defaults, same model, same GPUs, same traffic (chat preset, its SLO, open loop at the question's rate), dummy
# weights. The winner is launched from its plan folder by `serveplan verify`; the defaults are a bare
# `vllm serve FOLDER` (plus --tensor-parallel-size on two GPUs and the FlashInfer all-reduce fusion off that
# this machine needs at TP>1) measured by `serveplan bench` with the same seed, rate, duration and SLO.
#
#   bash benchmarks/gpu/session4_quality.sh q1  GPU RATE [DURATION]  # 8B, 1 GPU: winner on GPU 0, defaults on GPU 1 at once
#   bash benchmarks/gpu/session4_quality.sh q2w GPU RATE [DURATION]  # 70B, 2 GPUs: the winner (verify)
#   bash benchmarks/gpu/session4_quality.sh q2d GPU RATE [DURATION]  # 70B, 2 GPUs: vLLM defaults at TP=2
# The plans were made here (the GPU machine lacks optuna), for 2x H200, which is what came, at vLLM 0.26.0 (the
# GPU machine's; then the default, now named):
#   plan --model llama-3.1-8b --gpus 1xH200 traffic=chat traffic.rate_rps=26 engine.version=0.26.0 -o benchmarks/gpu/plans/session4/q1-8b-h200
#   plan --model llama-3.1-70b --gpus 2xH200 traffic=chat traffic.rate_rps=8 engine.version=0.26.0 -o benchmarks/gpu/plans/session4/q2-70b-h200
# GPU and RATE must match them; RATE is also the defaults' bench rate.
# Everything lands in $OUT/session4-MODE.tar.gz plus $OUT/summary-MODE.txt.
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
mode=$1 gpu=$2 rate=$3 dur=${4:-90}
R=/tmp/s4/$mode; mkdir -p "$R"
nvidia-smi --query-gpu=index,name,memory.total --format=csv > "$R/nvidia-smi.txt"
folder() { model_folder /tmp/s4-models "$1" "$2"; }  # catalog model, format (vllm_env.sh)
defaults_run() {  # devices, tp, model, port, tag: `vllm serve` with its defaults, then bench at the same load
  local dev=$1 tp=$2 m=$3 port=$4 tag=$5 extra=""
  [ "$tp" -gt 1 ] && extra="--tensor-parallel-size $tp --compilation-config {\"pass_config\":{\"fuse_allreduce_rms\":false}}"
  CUDA_VISIBLE_DEVICES=$dev setsid vllm serve "$m" --port "$port" $extra > "$R/$tag-server.log" 2>&1 &
  local pid=$!; local t0=$SECONDS
  if wait_health "$port" 480; then
    echo "$tag healthy after $((SECONDS - t0)) s" >> "$R/summary.txt"
    python3 -m serveplan.cli bench --url "http://127.0.0.1:$port" --traffic chat --slo default --rate "$rate" \
      --duration "$dur" --tokenizer "$m" --no-progress -o "$R/$tag-bench.json" > "$R/$tag-bench.txt" 2>&1
    echo "$tag bench rc=$?" >> "$R/summary.txt"
  else
    echo "$tag NOT healthy in 480 s" >> "$R/summary.txt"
  fi
  kill -TERM -- -"$pid" 2>/dev/null; sleep 8; kill -KILL -- -"$pid" 2>/dev/null
  grep -hE "Model loading took|GPU KV cache size|Maximum concurrency|max_num_seqs|max_num_batched_tokens" \
    "$R/$tag-server.log" | cut -c1-300 | head -12 >> "$R/summary.txt"
}
winner_run() {  # devices, plan dir, model folder, tag
  local dev=$1 plan=$2 m=$3 tag=$4
  CUDA_VISIBLE_DEVICES=$dev timeout 590 python3 -m serveplan.cli verify "$plan" --model "$m" --duration "$dur" \
    --health-timeout 480 --force --no-progress -o "$R/$tag-verify.json" > "$R/$tag-verify.txt" 2>&1
  echo "$tag verify rc=$?" >> "$R/summary.txt"
  python3 -m serveplan.cli stop "$plan" > /dev/null 2>&1
  grep -hE "Model loading took|GPU KV cache size|Maximum concurrency" "$plan"/logs/*.log | cut -c1-300 >> "$R/summary.txt"
}
case $mode in
  q1)
    cp -r benchmarks/gpu/plans/session4/q1-8b-h200 "$R/plan-8b"  # planned here: the GPU machine has no optuna
    winner_run 0 "$R/plan-8b" "$(folder llama-3.1-8b ct-fp8)" q1-winner &
    defaults_run 1 1 "$(folder llama-3.1-8b hf)" 8100 q1-defaults &
    wait ;;
  q2w)
    cp -r benchmarks/gpu/plans/session4/q2-70b-h200 "$R/plan-70b"
    winner_run 0,1 "$R/plan-70b" "$(folder llama-3.1-70b ct-fp8)" q2-winner ;;
  q2d)
    defaults_run 0,1 2 "$(folder llama-3.1-70b hf)" 8100 q2-defaults ;;
esac
cat "$R/summary.txt"; tail -30 "$R"/*-verify.txt "$R"/*-bench.txt 2>/dev/null | cut -c1-200
tar czf "$OUT/session4-$mode.tar.gz" -C /tmp/s4 "$mode" && cp "$R/summary.txt" "$OUT/summary-$mode.txt"
