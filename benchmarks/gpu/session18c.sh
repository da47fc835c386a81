#!/usr/bin/env bash
# Issue 14, session 18c: the last ~5 device minutes, one H200. The planner's AWQ plans name published AutoAWQ
# checkpoints (conf/checkpoints.yaml, format awq), which vLLM 0.26.0 converts to awq_marlin and runs on Marlin, not on
# Machete as the compressed-tensors AWQ of session18.sh (what `serveplan quantize` writes). M8: Llama-3.1-8B with an
# AutoAWQ quantization_config (4 bits, group 128, zero points), dummy weights, session 5's flags: the kernel vLLM
# logs, bursts of 16/32/64 at 1,024 tokens, prompts alone at 128, 2,048 and 8,192 tokens. Everything is written
# straight under S (pass S=$OUT/...), so whatever finished comes back if the lease ends first.
set -u
S=${S18C:-/tmp/s18c}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind)
source benchmarks/gpu/engine_timings.sh
m=$(model_folder /tmp/s18c-models llama-3.1-8b awq); tok=$(tokenizer_folder "$m")
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-M8 serve M8 "$m" "$tok" \
    "$(meta_of llama-3.1-8b awq auto '"checkpoint_format": "awq"')"; then
  grep -h -iE "awq_marlin|Marlin|Machete|Using .*Kernel" "$S/M8/server.log" | cut -c1-250 | sort | uniq -c > "$S/M8/kernels.txt"
  for c in 16 32 64; do burst M8 "$tok" "$c" 1024; done
  c1_sweep M8 "$tok" 128 2048 8192
fi
stop M8
touch "$S/ALL_DONE"
