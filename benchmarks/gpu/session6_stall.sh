#!/usr/bin/env bash
# Issue 14: what stalls running decodes for 9-33 ms per new prompt in an open loop (docs/accuracy.md, "What
# stalls the decodes"; benchmarks/open_loop_accuracy.py --decompose), and the dense 32B grid session 5 lost.
# One GPU, one server at a time, alone on its host, the session-5 flags, plus --enable-per-request-metrics so
# that every request carries the engine's own queue / prefill / decode times (bench records them):
#   A. the 8B FP8 server: a c=1 TTFT sweep over prompt lengths (128 to 8192 tokens, 16 out), the session-5 chat
#      loads (8 and 18 req/s), and 18 req/s of 256-token prompts, which stay inside the CUDA graphs;
#   C. the same server with --max-cudagraph-capture-size 2048, so that a ~1,000-token prompt beside the decodes
#      replays a graph: the c=1 sweep and the chat loads again.
#      If the stall is the eager step, short prompts (A) and the bigger graphs (C) shrink it; if not, they don't.
#   D. if time is left: Qwen2.5-32B bf16 with a llama-typed tokenizer, the session-5 closed-loop grid.
# vLLM's /metrics is scraped before and after every open loop.
#
#   setsid nohup bash benchmarks/gpu/session6_stall.sh > /tmp/s6.log 2>&1 &   # then poll /tmp/s6/DONE
# Results: /tmp/s6/{A,C,D}/{server.log,meta.json,c1-LEN.json,open-*.json,open-*.txt,metrics-*.txt,grid.jsonl}.
set -u
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
S=${S6:-/tmp/s6}; mkdir -p "$S"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader > "$S/nvidia-smi.txt"
mem_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
gpu=$([ "$mem_mib" -ge 100000 ] && echo h200 || echo h100-sxm)
D_START_BY=${D_START_BY:-840}  # seconds into the script; later, D would not finish inside the lease
m8=$(model_folder /tmp/s6-models llama-3.1-8b ct-fp8)
FLAGS="--port 8000 --max-num-seqs 256 --max-num-batched-tokens 8192 --max-model-len 10240
       --gpu-memory-utilization 0.92 --no-enable-prefix-caching --enable-per-request-metrics"
serve() {  # tag model-folder tokenizer-folder meta-json extra-flags...
  local tag=$1 m=$2 tok=$3 meta=$4; shift 4
  mkdir -p "$S/$tag"
  echo "$meta" > "$S/$tag/meta.json"
  # shellcheck disable=SC2086
  CUDA_VISIBLE_DEVICES=0 setsid vllm serve "$m" --tokenizer "$tok" $FLAGS "$@" > "$S/$tag/server.log" 2>&1 &
  echo $! > "$S/$tag/server.pid"
  local t0=$SECONDS
  if wait_health 8000 600; then echo "$tag healthy after $((SECONDS - t0)) s (at $SECONDS s)" >> "$S/times.txt"; return 0; fi
  echo "$tag NOT healthy in 600 s" >> "$S/times.txt"; return 1
}
stop() { local pid; pid=$(cat "$S/$1/server.pid"); kill -TERM -- -"$pid" 2>/dev/null; sleep 8; kill -KILL -- -"$pid" 2>/dev/null; }
bench() {  # tag name tokenizer bench-args...
  local tag=$1 name=$2 tok=$3; shift 3
  local t1=$SECONDS
  python3 -m serveplan.cli bench --url http://127.0.0.1:8000 --tokenizer "$tok" --no-progress "$@" \
    -o "$S/$tag/$name.json" > "$S/$tag/$name.txt" 2>&1
  echo "$tag $name rc=$? in $((SECONDS - t1)) s" >> "$S/times.txt"
}
load() {  # tag name rate extra-overrides...: 60 s of the chat preset, open loop, /metrics around it
  local tag=$1 name=$2 rate=$3; shift 3
  curl -s http://127.0.0.1:8000/metrics > "$S/$tag/metrics-$name-before.txt"
  bench "$tag" "open-$name" "$m8" --traffic chat --rate "$rate" --duration 60 "$@"
  curl -s http://127.0.0.1:8000/metrics > "$S/$tag/metrics-$name-after.txt"
}
c1_sweep() {  # tag: TTFT alone at each prompt length (6 requests each, 16 tokens out)
  for len in 128 512 1024 2048 8192; do
    bench "$1" "c1-$len" "$m8" --traffic chat --concurrency 1 --num-requests 6 traffic.input_len.kind=fixed \
      "traffic.input_len.mean=$len" "traffic.input_len.max=$len" traffic.output_len.kind=fixed \
      traffic.output_len.mean=16 traffic.output_len.max=16
  done
}
meta8="{\"model\": \"llama-3.1-8b\", \"gpu\": \"$gpu\", \"tp\": 1, \"weight_dtype\": \"fp8\", \"kv_cache_dtype\": \"fp8\", \"max_num_seqs\": 256, \"max_num_batched_tokens\": 8192, \"max_model_len\": 10240, \"gpu_memory_utilization\": 0.92}"
if serve A "$m8" "$m8" "$meta8" --kv-cache-dtype fp8; then
  c1_sweep A
  load A chat-8 8
  load A chat-18 18
  load A short-18 18 traffic.input_len.kind=fixed traffic.input_len.mean=256 traffic.input_len.max=256
fi
stop A
if serve C "$m8" "$m8" "${meta8%\}}, \"max_cudagraph_capture_size\": 2048}" --kv-cache-dtype fp8 \
    --max-cudagraph-capture-size 2048; then
  c1_sweep C
  load C chat-8 8
  load C chat-18 18
fi
stop C
if [ "$SECONDS" -le "$D_START_BY" ]; then
  m32=$(model_folder /tmp/s6-models qwen2.5-32b hf); tok32=$(tokenizer_folder "$m32")
  meta32="{\"model\": \"qwen2.5-32b\", \"gpu\": \"$gpu\", \"tp\": 1, \"weight_dtype\": \"bf16\", \"kv_cache_dtype\": \"auto\", \"max_num_seqs\": 256, \"max_num_batched_tokens\": 8192, \"max_model_len\": 10240, \"gpu_memory_utilization\": 0.92}"
  if serve D "$m32" "$tok32" "$meta32"; then
    t2=$SECONDS
    python3 benchmarks/gpu/vllm_grid.py --port 8000 --model "$tok32" --label 32b-bf16 --out "$S/D/grid.jsonl" \
      --tmpdir "$S/D/vgrid" --shapes balanced,decode,prefill,long --concurrency 16,64,1,256 --repeats 1 \
      --in-process --meta "$meta32" > "$S/D/grid.txt" 2>&1
    echo "D grid rc=$? in $((SECONDS - t2)) s" >> "$S/times.txt"
  fi
  stop D
else
  echo "D skipped: $SECONDS s > $D_START_BY s" >> "$S/times.txt"
fi
touch "$S/DONE"
