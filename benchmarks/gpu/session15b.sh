#!/usr/bin/env bash
# Issue 14, session 15 (second machine): do decode steps slow down when the batch's contexts differ?
#   Session 15's scraped open loops (session15.sh) put the 70B FP8's decode-only steps 20-50% above the model at
#   batches of 16-63 and 136-175, where closed bursts of equal prompts (sessions 10-12) are within 2-18% at the same
#   batches; its steps that carry prompts are where the model puts them. A closed burst has every context equal, an
#   open loop lognormal ones. If the decode attention's time follows the longest context in the batch rather than the
#   sum, a burst of prompts of chat's lengths decodes slower than a burst of equal prompts of the same mean.
#   Per server, bursts of C prompts at once (C requests, 256 tokens out, fixed; the last 128 gaps of each request are
#   decode steps of batch C): prompts all 1,024 tokens (burst-cC-l1024), and prompts of the chat preset's lognormal
#   lengths, mean 1,024 (hburst-cC-l1024, the same lengths on both servers: bench's default seed).
#   SE (GPU 0): the 70B FP8 + FP8 KV at TP=1 (session 15's SE), C in 32, 64, 128.
#   SF (GPU 1): the 8B FP8 + FP8 KV (session 6's A), C in 32, 64 (at 128 the 8B's front end is the bound).
# Nothing here is fitted unless a term follows from it; the open loops stay held out.
#
#   setsid nohup bash benchmarks/gpu/session15b.sh > /tmp/s15b.log 2>&1 < /dev/null &   # then poll /tmp/s15b/DONE
set -u
S=${S15B:-/tmp/s15b}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
source benchmarks/gpu/engine_timings.sh

hburst() {  # tag tokenizer concurrency: C prompts at once of the chat preset's lengths (mean 1,024), 256 tokens out
  bench "$1" "hburst-c$3-l1024" "$2" --traffic chat --concurrency "$3" --num-requests "$3" \
    traffic.output_len.kind=fixed traffic.output_len.mean=256 traffic.output_len.max=256
}
pair() {  # tag tokenizer concurrencies...
  local tag=$1 tok=$2; shift 2
  for c in "$@"; do burst "$tag" "$tok" "$c" 1024; hburst "$tag" "$tok" "$c"; done
}
m70=$(model_folder /tmp/s15-models llama-3.1-70b ct-fp8); tok70=$(tokenizer_folder "$m70")
m8=$(model_folder /tmp/s15-models llama-3.1-8b ct-fp8); tok8=$(tokenizer_folder "$m8")
(
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-sf DEV=1 PORT=8001 serve SF "$m8" "$tok8" "$(meta_of llama-3.1-8b fp8 fp8)" \
      --kv-cache-dtype fp8; then
    PORT=8001 pair SF "$tok8" 32 64
  fi
  stop SF
) > "$S/SF.out" 2>&1 &
sf=$!
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-se DEV=0 PORT=8000 serve SE "$m70" "$tok70" \
    "$(meta_of llama-3.1-70b fp8 fp8)" --kv-cache-dtype fp8; then
  PORT=8000 pair SE "$tok70" 32 64 128
fi
stop SE
wait "$sf"
touch "$S/DONE"
