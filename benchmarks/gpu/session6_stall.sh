#!/usr/bin/env bash
# Issue 14: what stalls running decodes for 9-33 ms per new prompt in an open loop (benchmarks/open_loop_accuracy.py
# --decompose), and the dense 32B grid session 5 lost. Ran in session 6 (results: benchmarks/gpu/results/session6/,
# read in docs/accuracy.md, "Where TTFT goes inside vLLM"; D ran in a second call, A and C having passed
# D_START_BY).
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
gpu=$(gpu_kind "$S/nvidia-smi.txt")
D_START_BY=${D_START_BY:-840}  # seconds into the script; later, D would not finish inside the lease
m8=$(model_folder /tmp/s6-models llama-3.1-8b ct-fp8)
source benchmarks/gpu/engine_timings.sh
meta8=$(meta_of llama-3.1-8b fp8 fp8)
if serve A "$m8" "$m8" "$meta8" --kv-cache-dtype fp8; then
  c1_sweep A "$m8" 128 512 1024 2048 8192
  load A chat-8 "$m8" 8
  load A chat-18 "$m8" 18
  load A short-18 "$m8" 18 traffic.input_len.kind=fixed traffic.input_len.mean=256 traffic.input_len.max=256
fi
stop A
if serve C "$m8" "$m8" "$(meta_of llama-3.1-8b fp8 fp8 '"max_cudagraph_capture_size": 2048')" --kv-cache-dtype fp8 \
    --max-cudagraph-capture-size 2048; then
  c1_sweep C "$m8" 128 512 1024 2048 8192
  load C chat-8 "$m8" 8
  load C chat-18 "$m8" 18
fi
stop C
if [ "$SECONDS" -le "$D_START_BY" ]; then
  m32=$(model_folder /tmp/s6-models qwen2.5-32b hf); tok32=$(tokenizer_folder "$m32")
  meta32=$(meta_of qwen2.5-32b bf16 auto)
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
