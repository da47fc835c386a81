#!/usr/bin/env bash
# On the GPU machine (2x H100), after the vLLM chunks are in /tmp/vch (../shared/gpu/README.md): assemble vLLM,
# then launch the selected launch-safety candidates through `plan launch` and write results + vLLM's memory lines
# to $OUT. usage: bash benchmarks/gpu/session3_launch.sh "Q#R,Q#R,..." [runner-timeout-s]
set -u
source benchmarks/gpu/vllm_env.sh
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv | tee "$OUT/nvidia-smi.txt"
timeout "${2:-480}" python3 benchmarks/gpu/launch_safety_run.py benchmarks/gpu/launch_safety "$OUT/results.jsonl" \
  --only "$1" --emulate "" 2>&1 | tail -30
for d in benchmarks/gpu/launch_safety/*/*/logs; do
  [ -f "$d/replica-0.log" ] || continue
  echo "== $d" >> "$OUT/breakdown.txt"
  grep -hE "Model loading took|GPU KV cache size|peak activation|kv_cache_memory_bytes|Available KV cache|CUDA graph|out of memory|Error" \
    "$d"/*.log | cut -c1-400 | head -20 >> "$OUT/breakdown.txt"
done
python3 -m serveplan.cli stop benchmarks/gpu/launch_safety/h100-sxm/* >/dev/null 2>&1 || true
