#!/usr/bin/env bash
# The no-GPU part of examples/13b-tp2-mixed: plan Llama-2-13B at TP=2 on two A100-80GB under a mixture of short,
# medium and long prompts, compare TP=2 with two TP=1 replicas, predict the TP=2 configuration, then launch the
# plan on serveplan's fake engine (no GPU) and load-test it with the mixture, per size class.
#
#   examples/13b-tp2-mixed/run.sh [OUT]      # OUT: where everything is written (default ./mixed-out)
#
# PYTHON: the interpreter that has serveplan (default python3); PORT: the replica's port (default 8000);
# RATE: requests/s of the load test (default: the traffic file's 3); REQUESTS: requests it sends (default 60).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-mixed-out}"
py="${PYTHON:-python3}"
port="${PORT:-8000}"
plan() { "$py" -m serveplan.cli plan "$@"; }
bench() { "$py" -m serveplan.cli bench "$@"; }
traffic="$here/traffic.yaml"
mkdir -p "$out"

# 1. The plan, TP restricted to 2 (search.tp) and the weights to the published bf16 checkpoint.
plan --model llama-2-13b --gpus 2xA100 --traffic "$traffic" 'search.tp=[2]' 'search.allowed_quant=[bf16]' \
     -o "$out/plan"

# 2. TP=2 against the other way to use two GPUs for a 13B model: two TP=1 replicas behind a balancer.
plan compare --model llama-2-13b --gpus 2xA100 --traffic "$traffic" \
     --a "weights=bf16 kv-cache-dtype=fp8 tp=2" --b "weights=bf16 kv-cache-dtype=fp8 replicas=2"

# 3. One fixed TP=2 configuration (the plan's winner) under the whole mixture.
plan estimate --model llama-2-13b --gpus 2xA100 --traffic "$traffic" --tp 2 --weights bf16 --kv-cache-dtype fp8 \
     --max-num-seqs 512 --max-num-batched-tokens 16384 --no-chunked-prefill

# 4. Launch on the fake engine (tests/bin/vllm runs the rendered `vllm serve` argv; a fake nvidia-smi shows two
#    A100-SXM4-80GB); stop it whatever happens next.
export PATH="$repo/tests/bin:$PATH" FAKE_ENGINE_PYTHON="$py"
export SERVEPLAN_FAKE_GPUS="NVIDIA A100-SXM4-80GB,NVIDIA A100-SXM4-80GB"
export FAKE_ENGINE_LIFETIME_S="${FAKE_ENGINE_LIFETIME_S:-600}"
trap 'plan stop "$out/plan" >/dev/null 2>&1 || true' EXIT
plan launch "$out/plan" --detach --port "$port"

# 5. The mixture. Bench's by-length table splits requests at the terciles of their prompt lengths; with 50% /
#    30% / 20% of requests at 200 / 1000 / 3000 tokens the lower bound lies in 200..1000 and the upper in 1000..3000
#    (both at the class values, with enough requests), so its short, medium and long rows are the three classes.
rate=()
if [ -n "${RATE:-}" ]; then rate=(--rate "$RATE"); fi
bench --url "http://127.0.0.1:$port" --traffic "$traffic" ${rate[@]+"${rate[@]}"} --num-requests "${REQUESTS:-60}" \
      --seed 1 --no-progress -o "$out/bench-mixed.json"
