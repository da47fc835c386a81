#!/usr/bin/env bash
# The no-GPU part of examples/consumer-gpu-4bit: plan Llama-3.1-8B in 4 bits (AWQ) on one RTX 4090 for ten
# concurrent chat users, compare it with the planner's own pick, then launch the plan on serveplan's fake
# engine (tests/bin/vllm, no GPU) and load-test it with 10 concurrent users for a few seconds.
#
#   examples/consumer-gpu-4bit/run.sh [OUT]      # OUT: where everything is written (default ./consumer-out)
#
# PYTHON: the interpreter that has serveplan (default python3); PORT: the replica's port (default 8000);
# DURATION: seconds the load test sends (default 5).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-consumer-out}"
py="${PYTHON:-python3}"
port="${PORT:-8000}"
plan() { "$py" -m serveplan.cli plan "$@"; }
bench() { "$py" -m serveplan.cli bench "$@"; }
mkdir -p "$out"

# 1. The plan: 4-bit AWQ weights only (search.allowed_quant), one RTX 4090, ten closed-loop users.
plan --model llama-3.1-8b --gpus 1xRTX4090 --traffic "$here/traffic.yaml" 'search.allowed_quant=[awq]' -o "$out/plan"

# 2. What 4 bits cost against 8 bits (the planner's pick without the restriction) on the same card and load.
plan compare --model llama-3.1-8b --gpus 1xRTX4090 --traffic "$here/traffic.yaml" \
     --a "weights=awq kv-cache-dtype=fp8" --b "weights=int8 kv-cache-dtype=fp8"

# 3. Launch the plan with the fake engine standing in for vLLM (the rendered `vllm serve` argv, unchanged) and
#    a fake nvidia-smi that shows one RTX 4090; stop it whatever happens next.
export PATH="$repo/tests/bin:$PATH" FAKE_ENGINE_PYTHON="$py" SERVEPLAN_FAKE_GPUS="NVIDIA GeForce RTX 4090"
export FAKE_ENGINE_LIFETIME_S="${FAKE_ENGINE_LIFETIME_S:-600}"
trap 'plan stop "$out/plan" >/dev/null 2>&1 || true' EXIT
plan launch "$out/plan" --detach --port "$port"

# 4. Ten concurrent users for a few seconds.
bench --url "http://127.0.0.1:$port" --traffic "$here/traffic.yaml" --concurrency 10 \
      --duration "${DURATION:-5}" --no-progress -o "$out/bench.json"
