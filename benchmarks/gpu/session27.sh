#!/usr/bin/env bash
# Session 27, one H200 (no multi-GPU kind lent). Mixtral INT8's capacity is ~20% low in the model (session 26), and
# the logs say its experts run as `int8_w8a16` (weight-only, default Triton config), not W8A8:
#   1. moe_by_m.py: vLLM's fused MoE kernel by M (1-16,384 tokens) for bf16, fp8_w8a8, int8_w8a16 and int8_w8a8, on
#      Mixtral's and Qwen3-30B-A3B's expert shapes: the INT8 experts' cost against FP8's at every step size, measured
#      on the kernel, not solved on a server's runs.
#   2. MXI again (Mixtral INT8 W8A8 dummy weights, the plan's flags: seqs 512, 16,384 tokens chunked, FP8 KV), with
#      loads it never ran: codegen at 5 and 7 req/s, rag at 2 and 3, long-generation at 2.5, each after 15 s of
#      warm-up (a fresh MoE server's first load stalls on the fused-MoE JIT: session 26). Held out, nothing is fitted
#      on them; the steps are scraped.
#   setsid nohup bash benchmarks/gpu/session27.sh > /tmp/s27/session27.log 2>&1 < /dev/null &   # poll $S/ALL_DONE
set -u
S=${S27:-/tmp/s27}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
t0=$SECONDS
python3 benchmarks/gpu/moe_by_m.py --out "$S/moe.jsonl" > "$S/moe.log" 2>&1
echo "moe_by_m rc=$? in $((SECONDS - t0)) s" >> "$S/times.txt"
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
export SCRAPE=1 LOAD_WARMUP=15
m=$(model_folder /tmp/models-MXI mixtral-8x7b ct-int8); tok=$(tokenizer_folder "$m")
export DEV=0 PORT=8000
if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-MXI serve MXI "$m" "$tok" \
    "$(meta_of mixtral-8x7b int8 fp8 '"max_num_seqs": 512')" --max-num-seqs 512 --kv-cache-dtype fp8; then
  grep -h -iE "Selected|Using .*Kernel|MoE|machete|marlin" "$S/MXI/server.log" | cut -c1-300 | sort | uniq -c > "$S/MXI/kernels.txt"
  LOAD_TRAFFIC=codegen load MXI codegen-5 "$tok" 5
  LOAD_TRAFFIC=codegen load MXI codegen-7 "$tok" 7
  LOAD_TRAFFIC=rag load MXI rag-2 "$tok" 2
  LOAD_TRAFFIC=rag load MXI rag-3 "$tok" 3
  LOAD_TRAFFIC=long-generation load MXI longgen-2.5 "$tok" 2.5
fi
stop MXI
touch "$S/ALL_DONE"
