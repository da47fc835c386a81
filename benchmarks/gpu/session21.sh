#!/usr/bin/env bash
# Prepared in session 20, run in session 21 (results/session21, docs/launch-safety.md): the planner's current quantized answers, launched by `serveplan verify` itself
# (the plan's own flags, KV cache pinned, its traffic), predicted against measured. Every GPU run so far served these
# precisions with `vllm serve` and session 5's flags (engine_timings.sh); only FP8 plans went through the launcher.
# The plans were made here (the GPU machine has no optuna) with the machine's vLLM:
#   plan --model llama-3.1-70b --gpus 1xH200 engine.version=0.26.0 -o benchmarks/gpu/plans/session21/70b-1xh200
#       (INT8 W8A8, neuralmagic's, at 4.88 req/s within the SLO)
#   plan --model llama-3.1-8b --gpus 1xH200 engine.version=0.26.0 -o benchmarks/gpu/plans/session21/8b-1xh200
#       (INT8 W8A8, 29.4 req/s)
#   plan --model llama-3.1-70b --gpus 1xH100 engine.version=0.26.0 -o benchmarks/gpu/plans/session21/70b-1xh100
#       (AutoAWQ with an FP8 KV cache, 2.47 req/s: the README's 1xH100 answer)
# On two H200s: GPU 0 the 70B INT8 plan at its planned 2 req/s and at 4; GPU 1 the 8B INT8 plan at 2 and 20 req/s,
# then the 1xH100 AWQ plan with --force (its flags and start on Hopper; the KV cache is pinned at the H100 plan's 37.5
# GB, so vLLM's own log tells whether the 80 GB budget holds: weights + KV + activations). On an H100, that plan alone.
# Dummy weights in a folder of each plan's checkpoint format (launch_safety_run.make_folder). Nothing is fitted.
#   setsid nohup bash benchmarks/gpu/session21.sh > /tmp/s21.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S to $OUT
set -u
S=${S21:-/tmp/s21}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
n_gpus=$(wc -l < "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh
P=benchmarks/gpu/plans/session21
if [ "$gpu" = h100-sxm ]; then
  verify_on V70A 0 8200 "$P/70b-1xh100" "$(model_folder /tmp/models-0 llama-3.1-70b awq)"
elif [ "$n_gpus" -gt 1 ]; then
  ( verify_on V70I 0 8200 "$P/70b-1xh200" "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)"
    verify_on V70I4 0 8200 "$P/70b-1xh200" "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)" --rate 4 ) &
  side=$!
  verify_on V8I 1 8300 "$P/8b-1xh200" "$(model_folder /tmp/models-1 llama-3.1-8b ct-int8)"
  verify_on V8I20 1 8300 "$P/8b-1xh200" "$(model_folder /tmp/models-1 llama-3.1-8b ct-int8)" --rate 20
  verify_on V70A 1 8300 "$P/70b-1xh100" "$(model_folder /tmp/models-1 llama-3.1-70b awq)" --force
  wait "$side"
else
  verify_on V70I 0 8200 "$P/70b-1xh200" "$(model_folder /tmp/models-0 llama-3.1-70b ct-int8)"
  verify_on V70A 0 8200 "$P/70b-1xh100" "$(model_folder /tmp/models-0 llama-3.1-70b awq)" --force
fi
touch "$S/ALL_DONE"
