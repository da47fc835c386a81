#!/usr/bin/env bash
# On a 2-GPU machine (vLLM chunks in /tmp/vch, ../shared/gpu/README.md): `serveplan verify` two plans of the same
# question on the same two GPUs, TP=2 against two TP=1 replicas, each at its planned load for DURATION seconds,
# with dummy weights. Neither configuration (H200, TP=2) was used to fit any engine term.
#   bash benchmarks/gpu/session3_verify.sh PLAN_DIR_A PLAN_DIR_B [DURATION]
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
folder=$(model_folder /tmp/ls-models llama-3.1-8b ct-fp8)
for d in "$1" "$2"; do
  name=$(basename "$d")
  timeout 280 python3 -m serveplan.cli verify "$d" --model "$folder" --duration "${3:-60}" --no-progress \
    --health-timeout 240 -o "$OUT/verify-$name.json" > "$OUT/verify-$name.txt" 2>&1
  echo "$name rc=$?"; tail -25 "$OUT/verify-$name.txt"
  python3 -m serveplan.cli stop "$d" > /dev/null 2>&1
  grep -hE "KV cache size|Model loading took" "$d"/logs/*.log | cut -c1-200 > "$OUT/mem-$name.txt"
done
