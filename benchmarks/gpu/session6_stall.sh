#!/usr/bin/env bash
# Next GPU run for issue 14 (written in session 5, not yet run): what stalls running decodes for 9-33 ms per new
# prompt in an open loop (docs/accuracy.md, "What stalls the decodes"; benchmarks/open_loop_accuracy.py
# --decompose). One 8B FP8 server alone on its GPU and host, the session-5 flags, three questions:
#   A. the session-5 loads again (chat, 8 and 18 req/s) alone on the host, with vLLM's server-side metrics
#      scraped before and after each run (queue, prefill and decode time per request, iteration tokens);
#   B. the same at 18 req/s with 256-token prompts, which stay inside the CUDA graphs (<= 512 tokens a step);
#   C. a server with --max-cudagraph-capture-size 2048, so that a ~1,000-token prompt beside the decodes
#      replays a graph, at 8 and 18 req/s.
# If the stall is the eager step, B and C shrink it; if it is admission, they do not.
#
#   setsid nohup bash benchmarks/gpu/session6_stall.sh > /tmp/s6.log 2>&1 &   # then poll /tmp/s6/DONE
# Results: /tmp/s6/{A,C}/{server.log,open-*.json,open-*.txt,metrics-*-before.txt,metrics-*-after.txt}.
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=/tmp/s6; mkdir -p "$S"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader > "$S/nvidia-smi.txt"
m=$(model_folder /tmp/s6-models llama-3.1-8b ct-fp8)
serve() {  # tag, extra flags...
  local tag=$1; shift
  mkdir -p "$S/$tag"
  CUDA_VISIBLE_DEVICES=0 setsid vllm serve "$m" --port 8000 --max-num-seqs 256 --max-num-batched-tokens 8192 \
    --max-model-len 10240 --gpu-memory-utilization 0.92 --no-enable-prefix-caching --kv-cache-dtype fp8 \
    --enable-per-request-metrics "$@" > "$S/$tag/server.log" 2>&1 &
  echo $! > "$S/$tag/server.pid"
  local t0=$SECONDS
  if wait_health 8000 600; then echo "$tag healthy after $((SECONDS - t0)) s" >> "$S/times.txt"; return 0; fi
  echo "$tag NOT healthy in 600 s" >> "$S/times.txt"; return 1
}
stop() { local pid; pid=$(cat "$S/$1/server.pid"); kill -TERM -- -"$pid" 2>/dev/null; sleep 8; kill -KILL -- -"$pid" 2>/dev/null; }
load() {  # tag, name, rate, extra bench overrides...
  local tag=$1 name=$2 rate=$3; shift 3
  curl -s http://127.0.0.1:8000/metrics > "$S/$tag/metrics-$name-before.txt"
  local t1=$SECONDS
  python3 -m serveplan.cli bench --url http://127.0.0.1:8000 --traffic chat --rate "$rate" --duration 60 \
    --tokenizer "$m" --no-progress "$@" -o "$S/$tag/open-$name.json" > "$S/$tag/open-$name.txt" 2>&1
  echo "$tag $name rc=$? in $((SECONDS - t1)) s" >> "$S/times.txt"
  curl -s http://127.0.0.1:8000/metrics > "$S/$tag/metrics-$name-after.txt"
}
if serve A; then
  load A chat-8 8
  load A chat-18 18
  load A short-18 18 traffic.input_len.kind=fixed traffic.input_len.mean=256 traffic.input_len.max=256
fi
stop A
if serve C --max-cudagraph-capture-size 2048; then
  load C chat-8 8
  load C chat-18 18
fi
stop C
touch "$S/DONE"
