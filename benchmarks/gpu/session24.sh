#!/usr/bin/env bash
# Prepared in session 23, not run yet. Issue 14 / launch safety: vLLM's activation peak by batched tokens and model.
#   Session 23's Qwen2.5-32B INT8 plan at an H100's budget (2,048 batched tokens) got 2.9% fewer KV tokens than planned:
#   vLLM's "peak activation" was 1.49 GiB where the plan counts 0.61 GB (memory.activation_bytes: per batched
#   token plus the sampler's logits, no floor); at 8,192 tokens it was 1.77 GiB against a planned 2.46 GB. Mistral-7B read 0.89 GiB at 8,192 and 1.78 at
#   16,384 (linear through zero). Four models x three batch budgets, each a dummy-weight server with vLLM's own memory
#   profiling (nothing pinned), engine_timings.sh's flags otherwise; vLLM's memory lines are kept (server.log) and one
#   line per server goes to $S/activation.tsv; committed under results/session24, `python benchmarks/activation_peaks.py`
#   reads their logs with the rest. Afterwards: fit the activation term's floor and slope by model on some
#   models, report the others (and the launch-safety rows with peak_activation_gib) as held out.
#   Beside them, on the last GPU: the 8B FP8 plan's "req/s at SLO" checked (capacity_check), then the same 4-layer Qwen2.5-32B shape from random safetensors and from dummy weights.
#   On an H100 kind it runs instead: session22.sh (the launch-safety INT8 / AWQ set on real 80 GB cards, the INT8 GEMM),
#   then Mixtral INT8, AWQ and FP8 side by side (bursts of 16-64 x 1,024: the two quantized-experts terms, measured on
#   H200s only, on an H100; `benchmarks/moe_quant.py` with these servers as held-out rows).
#   setsid nohup bash benchmarks/gpu/session24.sh > /tmp/s24.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S24:-/tmp/s24}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
if [ "$gpu" = h100-sxm ]; then
  S22=$S/s22 bash benchmarks/gpu/session22.sh > "$S/s22.log" 2>&1
  source benchmarks/gpu/engine_timings.sh
  GRID_BY=0
  if [ "$n_gpus" -ge 3 ]; then
    served HXI 0 8000 mixtral-8x7b ct-int8 int8 fp8 "" "" &
    served HXA 1 8001 mixtral-8x7b awq awq fp8 "" "" &
    served HXF 2 8002 mixtral-8x7b fp8 fp8 fp8 "" ""
    wait
  else
    for spec in HXF:fp8:fp8 HXI:ct-int8:int8 HXA:awq:awq; do
      IFS=: read -r tag fmt wd <<< "$spec"; served "$tag" 0 8000 mixtral-8x7b "$fmt" "$wd" fp8 "" ""
    done
  fi
  touch "$S/ALL_DONE"
  exit 0
fi
# model:folder:weights:tokens. 62 committed servers already give a peak at 8,192 tokens for most of these (and Qwen2.5-32B
# at 2,048, 8,192 and 16,384, Mistral-7B at 8,192 and 16,384); these add the other budgets, and Qwen2.5-7B, a shape with
# no peak yet, at two.
PROBES=(llama-3.1-8b:fp8:fp8:2048 llama-3.1-8b:fp8:fp8:16384 qwen2.5-14b:hf:bf16:2048 qwen2.5-14b:hf:bf16:16384
        qwen3-30b-a3b:hf:bf16:2048 qwen3-30b-a3b:hf:bf16:16384 mixtral-8x7b:fp8:fp8:2048 mixtral-8x7b:fp8:fp8:16384
        mistral-7b:fp8:fp8:2048 qwen2.5-32b:ct-int8:int8:4096 qwen2.5-7b:hf:bf16:2048 qwen2.5-7b:hf:bf16:8192)
probe() {  # dev port model folder-format weight-dtype tokens: one server, its memory lines, stopped
  local dev=$1 port=$2 model=$3 fmt=$4 wd=$5 tokens=$6 tag m tok
  tag="act-$model-$tokens"
  m=$(model_folder "/tmp/s24-models-$dev" "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  (
    MAX_BATCHED=$tokens; MAX_LEN=16384
    source benchmarks/gpu/engine_timings.sh
    DEV=$dev PORT=$port SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$dev serve "$tag" "$m" "$tok" "$(meta_of "$model" "$wd" auto)"
    stop "$tag"
  )
  local act w kv
  act=$(grep -oE "[0-9.]+ GiB for peak activation" "$S/$tag/server.log" | head -1 | cut -d' ' -f1)
  w=$(grep -oE "Model loading took [0-9.]+ GiB" "$S/$tag/server.log" | head -1 | awk '{print $4}')
  kv=$(grep -oE "GPU KV cache size: [0-9,]+ tokens" "$S/$tag/server.log" | head -1 | awk '{print $5}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$gpu" "$model" "$fmt" "$tokens" "${act:-}" "${w:-}" "${kv:-}" >> "$S/activation.tsv"
}
lane() {  # dev: every n_gpus-th probe from dev on, one after another
  local dev=$1 i=0 p t model fmt wd
  for p in "${PROBES[@]}"; do
    IFS=: read -r model fmt wd t <<< "$p"
    if [ $((i % n_gpus)) -eq "$dev" ]; then probe "$dev" $((8000 + dev)) "$model" "$fmt" "$wd" "$t"; fi
    i=$((i + 1))
  done
}
capacity_check() {  # dev port: the 8B FP8 plan for one H200 (chat, SLO TTFT P99 <= 2 s, TPOT P99 <= 100 ms; the planner's
  # runner-up, seqs 512 / 8,192 tokens chunked, max_model_len 16,384) served with its flags and loaded with the chat
  # preset at 24, 27 and 30 req/s for 90 s each: where does the SLO stop holding, against the plan's "req/s at SLO"?
  local dev=$1 port=$2 m tok r
  m=$(model_folder "/tmp/s24-cap" llama-3.1-8b fp8); tok=$(tokenizer_folder "$m")
  (
    MAX_BATCHED=8192; MAX_LEN=16384
    source benchmarks/gpu/engine_timings.sh
    export DEV=$dev PORT=$port
    if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-cap serve CAP "$m" "$tok" \
        "$(meta_of llama-3.1-8b fp8 auto '"max_num_seqs": 512')" --max-num-seqs 512; then
      for r in 24 27 30; do load CAP "chat-$r" "$tok" "$r" --duration 90; done
    fi
    stop CAP
  )
}
real_vs_dummy() {  # dev port: a Qwen2.5-32B cut to 4 layers (the same vocab x hidden LM head and embedding), bf16,
  # served at 2,048 batched tokens from random safetensors (random_weights.py) and from --load-format dummy: is the
  # ~1.5 GiB activation floor a dummy-weights artifact? One line each in $S/real_vs_dummy.tsv.
  local dev=$1 port=$2 m tok how
  m=$(cut_layers "$(model_folder "/tmp/s24-real" qwen2.5-32b hf)" 4)
  tok=$(tokenizer_folder "$m")
  CUDA_VISIBLE_DEVICES=$dev python3 benchmarks/gpu/random_weights.py "$m" > "$S/random_weights.log" 2>&1
  for how in dummy auto; do
    (
      MAX_BATCHED=2048; MAX_LEN=16384
      source benchmarks/gpu/engine_timings.sh
      # engine_timings.sh's bin/vllm wrapper adds --load-format dummy unless VLLM_LOAD_FORMAT says otherwise
      DEV=$dev PORT=$port SERVE_ENV="VLLM_CACHE_ROOT=/tmp/vcache-real VLLM_LOAD_FORMAT=$how" \
        serve "real-$how" "$m" "$tok" "$(meta_of qwen2.5-32b bf16 auto '"num_layers": 4')"
      stop "real-$how"
    )
    printf '%s\t%s\t%s\n' "$how" "$(grep -oE "[0-9.]+ GiB for peak activation" "$S/real-$how/server.log" | head -1)" \
      "$(grep -oE "Loading weights took [0-9.]+ seconds|Model loading took [0-9.]+ GiB" "$S/real-$how/server.log" | tr '\n' ' ')" \
      >> "$S/real_vs_dummy.tsv"
  done
}
printf 'gpu\tmodel\tformat\tbatched_tokens\tpeak_activation_gib\tweights_gib\tkv_tokens\n' > "$S/activation.tsv"
if [ "$n_gpus" -gt 1 ]; then
  { capacity_check $((n_gpus - 1)) 8200; real_vs_dummy $((n_gpus - 1)) 8100; } &
  n_gpus=$((n_gpus - 1))   # the lanes share the others
  for d in $(seq 0 $((n_gpus - 1))); do lane "$d" & done
else
  capacity_check 0 8200
  real_vs_dummy 0 8100
  lane 0
fi
wait
touch "$S/ALL_DONE"
