#!/usr/bin/env bash
# On the GPU machine (vLLM 0.26.0 staged, /tmp/vsite/env.sh sourced): peak GPU memory while vLLM loads a bf16
# folder with online FP8 quantization (`--quantization fp8`). gpu_memory_utilization 0.3 keeps the KV-cache
# phase below the weights, so the peak nvidia-smi sees before the engine gives up is the load itself.
#   bash benchmarks/gpu/load_peak.sh NAME MODEL_DIR GPU  -> one JSON line on stdout
set -u
name=$1 dir=$2 gpu=$3
log=/tmp/load-peak-$name.log
CUDA_VISIBLE_DEVICES=$gpu setsid python3 -m vllm.entrypoints.cli.main serve "$dir" --load-format dummy \
  --quantization fp8 --max-model-len 4096 --enforce-eager --gpu-memory-utilization 0.3 --port $((8500 + gpu)) \
  > "$log" 2>&1 &
pid=$!
peak=0; t0=$(date +%s)
while kill -0 $pid 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt 240 ]; do
  used=$(nvidia-smi -i "$gpu" --query-gpu=memory.used --format=csv,noheader,nounits)
  [ "$used" -gt "$peak" ] && peak=$used
  grep -q "Model loading took" "$log" && break
  sleep 0.2
done
sleep 2
kill -9 -- -$pid 2>/dev/null; wait $pid 2>/dev/null
took=$(grep -o "Model loading took [0-9.]* GiB" "$log" | head -1)
oom=$(grep -c -i "out of memory" "$log")
echo "{\"load_test\": \"$name\", \"peak_used_mib\": $peak, \"loaded\": \"$took\", \"oom_lines\": $oom}"
