#!/usr/bin/env bash
# Accuracy data for issue 14 on one multi-GPU machine: one vLLM 0.26.0 server per model, all started at once
# (each on its own GPUs, dummy weights, explicit flags), then per server two open loops of `serveplan bench`
# (chat preset, Poisson) and a closed-loop grid of `vllm bench serve` (benchmarks/gpu/vllm_grid.py: balanced,
# decode-heavy, prefill-heavy at concurrency 16/64/1/256, 8k prompts at 1/16). The servers' pipelines run side
# by side; each bench records its own event-loop lag, so host contention shows in the results.
#
#   setsid nohup bash benchmarks/gpu/session5_accuracy.sh > /tmp/s5.log 2>&1 &   # then poll /tmp/s5/DONE
#   LAYOUT=tp2 GRID_C=16,64 S5=/tmp/s5b setsid nohup bash ... # second pass: 70B fp8 and 13B bf16 at TP=2
#
# Layout by GPU memory: >= 100 GiB cards (H200): 8B fp8, 70B fp8, Mixtral-8x7B fp8 and Qwen2.5-32B bf16, one
# GPU each. 80 GiB cards (H100): 8B fp8 on GPU 0, 70B fp8 at TP=2 on GPUs 1-2, Mixtral fp8 on GPU 3.
# Every server: max_num_seqs 256, max_num_batched_tokens 8192, chunked prefill, max_model_len 10240,
# gpu_memory_utilization 0.92, prefix caching off, fp8 KV cache with fp8 weights.
# Results: /tmp/s5/TAG/{server.log,open-RATE.json,open-RATE.txt,grid.jsonl,grid.txt,times.txt}.
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
       VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
S=${S5:-/tmp/s5}; mkdir -p "$S"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader > "$S/nvidia-smi.txt"
mem_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
ngpu=$(wc -l < "$S/nvidia-smi.txt")
gpu=$([ "$mem_mib" -ge 100000 ] && echo h200 || echo h100-sxm)
echo "gpu=$gpu ngpu=$ngpu mem_mib=$mem_mib" > "$S/layout.txt"

folder() { model_folder /tmp/s5-models "$1" "$2"; }  # catalog model, format (vllm_env.sh)
pipeline() {  # tag devices tp model fmt weight kv "rates"
  local tag=$1 dev=$2 tp=$3 model=$4 fmt=$5 weight=$6 kv=$7 rates=$8
  local R=$S/$tag port=$((8000 + ${dev%%,*})) extra="" t0=$SECONDS
  mkdir -p "$R"
  local m tok; m=$(folder "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  [ "$tp" -gt 1 ] && extra="--tensor-parallel-size $tp --compilation-config {\"pass_config\":{\"fuse_allreduce_rms\":false}}"
  [ "$kv" = fp8 ] && extra="$extra --kv-cache-dtype fp8"
  CUDA_VISIBLE_DEVICES=$dev setsid vllm serve "$m" --tokenizer "$tok" --port "$port" --max-num-seqs 256 \
    --max-num-batched-tokens 8192 --max-model-len 10240 --gpu-memory-utilization 0.92 \
    --no-enable-prefix-caching $extra > "$R/server.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$R/server.pid"
  if ! wait_health "$port" 900; then
    echo "NOT healthy in 900 s" >> "$R/times.txt"; kill -KILL -- -"$pid" 2>/dev/null; return
  fi
  echo "healthy after $((SECONDS - t0)) s" >> "$R/times.txt"
  local meta="{\"model\": \"$model\", \"gpu\": \"$gpu\", \"tp\": $tp, \"weight_dtype\": \"$weight\", \"kv_cache_dtype\": \"$kv\", \"max_num_seqs\": 256, \"max_num_batched_tokens\": 8192, \"max_model_len\": 10240, \"gpu_memory_utilization\": 0.92}"
  echo "$meta" > "$R/meta.json"
  for rate in $rates; do
    local t1=$SECONDS
    python3 -m serveplan.cli bench --url "http://127.0.0.1:$port" --traffic chat --rate "$rate" --duration 60 \
      --tokenizer "$tok" --no-progress -o "$R/open-$rate.json" > "$R/open-$rate.txt" 2>&1
    echo "open $rate rc=$? in $((SECONDS - t1)) s" >> "$R/times.txt"
  done
  local t2=$SECONDS
  python3 benchmarks/gpu/vllm_grid.py --port "$port" --model "$tok" --label "$tag" --out "$R/grid.jsonl" \
    --tmpdir "$R/vgrid" --shapes balanced,decode,prefill,long --concurrency "$GRID_C" --repeats 1 \
    --in-process --meta "$meta" > "$R/grid.txt" 2>&1
  echo "grid rc=$? in $((SECONDS - t2)) s" >> "$R/times.txt"
  kill -TERM -- -"$pid" 2>/dev/null; sleep 8; kill -KILL -- -"$pid" 2>/dev/null
  echo "done at $((SECONDS - t0)) s" >> "$R/times.txt"
}
GRID_C=${GRID_C:-16,64,1,256}
if [ "${LAYOUT:-}" = tp2 ]; then  # second pass: TP=2 on the same GPUs (compare with the TP=1 pass)
  pipeline 70b-fp8-tp2 0,1 2 llama-3.1-70b ct-fp8 fp8 fp8 "4 8" &
  pipeline 13b-bf16-tp2 2,3 2 llama-2-13b hf bf16 auto "4 10" &
elif [ "$gpu" = h200 ]; then
  pipeline 8b-fp8 0 1 llama-3.1-8b ct-fp8 fp8 fp8 "8 18" &
  pipeline 70b-fp8 1 1 llama-3.1-70b ct-fp8 fp8 fp8 "2 4" &
  pipeline mixtral-fp8 2 1 mixtral-8x7b ct-fp8 fp8 fp8 "4 10" &
  pipeline 32b-bf16 3 1 qwen2.5-32b hf bf16 auto "1.5 3.5" &
else
  pipeline 8b-fp8 0 1 llama-3.1-8b ct-fp8 fp8 fp8 "8 18" &
  pipeline 70b-fp8-tp2 1,2 2 llama-3.1-70b ct-fp8 fp8 fp8 "2 4" &
  pipeline mixtral-fp8 3 1 mixtral-8x7b ct-fp8 fp8 fp8 "3 6" &
fi
wait
touch "$S/DONE"
