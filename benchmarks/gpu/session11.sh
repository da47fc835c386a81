#!/usr/bin/env bash
# Issue 14, session 11. Two questions, one lent GPU (H200 or H100), vLLM 0.26.0, dummy weights, session 5's flags.
#
# C: why a short prompt alone on the server is slow. The worst closed-loop points (up to 1.69x optimistic) are
#    128-token prompts at concurrency 1: vLLM's engine takes 15-19 ms from scheduling to the first token on the
#    8B (H200), where a step is 3.5 ms and a 256-token prompt takes 9.6 ms; the first gap after it is ~2 ms, and
#    0.2 ms after a 1,024-token prompt (the first token leaves with the second). Same 8B FP8 + FP8 KV server three
#    ways: C0 as shipped, C1 --no-async-scheduling, C2 --enforce-eager. Each: concurrency 1 over prompt lengths
#    16-1,024 (a choice distribution, about 12 of each in random order, 16 tokens out), and C0 also an open loop of
#    the same prompts at 2 req/s (arrivals into an idle engine).
# Q: a MoE model nothing was fitted on: Qwen3-30B-A3B in bf16 (128 experts of 768, top-8, 48 layers), where the
#    MoE terms were solved on Mixtral-8x7B FP8 (8 experts of 14,336, top-2). Concurrency-1 sweep, the closed grid,
#    chat open loops at 5 and 15 req/s. Pre-registered, `plan estimate --model qwen3-30b-a3b --gpus 1xH200
#    --weights bf16 --max-num-seqs 256 --max-num-batched-tokens 8192 --max-model-len 10240 engine.version=0.26.0`:
#    TPOT 5.9 ms at concurrency 1 (128 in); chat at 5 req/s TTFT P50 83 ms, TPOT 19.1 ms; capacity ~21 req/s.
# L: (if time is left) the 70B FP8 decode step by batch at 256 tokens: 16, 24, 32, 40, 48 and 64 (session 10 found
#    batch 32 slower than 64).
#
#   setsid nohup bash benchmarks/gpu/session11.sh > /tmp/s11.log 2>&1 < /dev/null &   # then poll $S/DONE
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S11:-/tmp/s11}; mkdir -p "$S"
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
L_BY=${L_BY:-1500}   # seconds into the script after which part L is skipped

LENS="16,32,64,96,128,192,256,384,512,768,1024"
c1_mix() {  # tag tokenizer name extra-bench-args...: prompts of every length in LENS, 16 tokens out
  local tag=$1 tok=$2 name=$3; shift 3
  bench "$tag" "$name" "$tok" --traffic chat "$@" traffic.input_len.kind=choice "traffic.input_len.values=[$LENS]" \
    traffic.input_len.min=16 traffic.input_len.mean=300 traffic.input_len.max=1024 \
    traffic.output_len.kind=fixed traffic.output_len.mean=16 traffic.output_len.max=16
}

m8=$(model_folder /tmp/s11-models llama-3.1-8b ct-fp8)
for v in C0 C1 C2; do
  case $v in C0) extra=();; C1) extra=(--no-async-scheduling);; C2) extra=(--enforce-eager);; esac
  if serve "$v" "$m8" "$m8" "$(meta_of llama-3.1-8b fp8 fp8 "\"variant\": \"${extra[*]:-default}\"")" \
      --kv-cache-dtype fp8 "${extra[@]}"; then
    c1_mix "$v" "$m8" c1-mix --concurrency 1 --num-requests 132
    [ "$v" = C0 ] && c1_mix "$v" "$m8" open-mix-2 --rate 2 --duration 40
    c1_sweep "$v" "$m8" 128 256
  fi
  stop "$v"
done

mq=$(model_folder /tmp/s11-models qwen3-30b-a3b hf); tokq=$(tokenizer_folder "$mq")
if serve Q "$mq" "$tokq" "$(meta_of qwen3-30b-a3b bf16 auto)"; then
  c1_sweep Q "$tokq" 128 1024 8192
  load Q chat-5 "$tokq" 5
  load Q chat-15 "$tokq" 15
  grid Q "$tokq"
fi
stop Q

if [ "$gpu" = h200 ] && [ "$SECONDS" -le "$L_BY" ]; then
  m70=$(model_folder /tmp/s11-models llama-3.1-70b ct-fp8)
  if serve L "$m70" "$m70" "$(meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8; then
    for c in 16 24 32 40 48 64; do burst L "$m70" "$c" 256; done
  fi
  stop L
else
  echo "L skipped: gpu $gpu, $SECONDS s" >> "$S/times.txt"
fi
touch "$S/DONE"
