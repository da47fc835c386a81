#!/usr/bin/env bash
# Issue 14, session 13, on a two-GPU machine (asked as nvidia-h100-x2; sessions 8 and 12 got H200s for that kind).
# On H100s: session12.sh as it is (the pair's NCCL profile, the 70B FP8 at TP=2 with FP8 KV): TP>1 on H100s never ran.
# On H200s, one server per GPU, started side by side, measured one after the other:
#   D2 (GPU 0). Qwen2.5-32B bf16, session 6's D again (llama-typed tokenizer, session 5's flags). D's balanced point
#       at 64 clients, one run, is the worst closed-loop prediction (1.43x optimistic): more than half its requests
#       got their first token within 40 ms of the last, which chunked prefill of 512-token prompts, 16 a step, does
#       not do. First waves with vLLM's per-request engine timings (serveplan bench): 64 and 16 prompts of 512
#       tokens, 64 of 128, 16 of 2,048, each twice; then D's closed grid at 16 and 64 clients, twice, keeping
#       each request's TTFT (vllm_grid.py --ttfts).
#   QR (GPU 1). Qwen3-30B-A3B FP8 + FP8 KV with its MoE router left in bf16 (make_folder since session 12). Session
#       11's QF, whose dummy FP8 router was ~98% zeros, decoded at batch 16-64 up to 73% faster than modelled
#       (benchmarks/dummy_router.py): does a router that routes change that? Concurrency 1 at 128 and 1,024
#       tokens, bursts of 16 and 64 at 256, chat at 15 req/s (session 11b's QF measurements).
# Nothing here is fitted: accuracy.py, decode_steps.py and open_loop_accuracy.py report it as held out.
#
#   setsid nohup bash benchmarks/gpu/session13.sh > /tmp/s13.log 2>&1 < /dev/null &   # then poll /tmp/s13/DONE
set -u
S=${S13:-/tmp/s13}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
gpu=$(gpu_kind "$S/nvidia-smi.txt")
if [ "$gpu" = h100-sxm ]; then
  S12=$S bash benchmarks/gpu/session12.sh
  exit
fi
export PYTHONUNBUFFERED=1
source benchmarks/gpu/engine_timings.sh

m32=$(model_folder /tmp/s13-models qwen2.5-32b hf); tok32=$(tokenizer_folder "$m32")
mq=$(model_folder /tmp/s13-models qwen3-30b-a3b ct-fp8); tokq=$(tokenizer_folder "$mq")
mkdir -p "$S/D2" "$S/QR"
DEV=1 PORT=8001 serve QR "$mq" "$tokq" "$(meta_of qwen3-30b-a3b fp8 fp8 '"router": "bf16"')" --kv-cache-dtype fp8 \
  > "$S/QR/serve.out" 2>&1 &
qr_serve=$!
if DEV=0 PORT=8000 serve D2 "$m32" "$tok32" "$(meta_of qwen2.5-32b bf16 auto)"; then
  for rep in 1 2; do
    for cl in 64:512 16:512 64:128 16:2048; do
      burst D2 "$tok32" "${cl%:*}" "${cl#*:}"
      for ext in json txt; do mv "$S/D2/burst-c${cl%:*}-l${cl#*:}.$ext" "$S/D2/burst-c${cl%:*}-l${cl#*:}-r$rep.$ext"; done
    done
  done
  t2=$SECONDS
  python3 benchmarks/gpu/vllm_grid.py --port 8000 --model "$tok32" --label D2 --out "$S/D2/grid.jsonl" \
    --tmpdir "$S/D2/vgrid" --shapes balanced,decode,prefill --concurrency 64,16 --repeats 2 --ttfts \
    --in-process --meta "$(cat "$S/D2/meta.json")" > "$S/D2/grid.txt" 2>&1
  echo "D2 grid rc=$? in $((SECONDS - t2)) s" >> "$S/times.txt"
fi
stop D2
if wait "$qr_serve"; then
  export PORT=8001
  c1_sweep QR "$tokq" 128 1024
  for c in 16 64; do burst QR "$tokq" "$c" 256; done
  load QR chat-15 "$tokq" 15
fi
stop QR
touch "$S/DONE"
