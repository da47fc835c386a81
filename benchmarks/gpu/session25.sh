#!/usr/bin/env bash
# Session 25, two H200s. (1) session24b.sh, not run then: `serveplan verify --force` of the README's first answer (TP2
# INT8, bf16 KV, 256 sequences, 2,048 tokens chunked; benchmarks/gpu/plans/session24/70b-2xa100) at its planned 2 req/s
# for 180 s. (2) The same configuration served again with the plan's flags (its --kv-cache-memory-bytes included; prefix
# caching off, the bench's prompts share nothing), its engine steps scraped (SCRAPE=1), chat at 4, 7 and 8.5 req/s for
# 60 s each: 0.44, 0.77 and 0.93 of the 9.1 req/s the model gives this configuration on H200s (`plan estimate --model
# llama-3.1-70b --gpus 2xH200 --weights int8 --tp 2 --max-num-batched-tokens 2048 --max-model-len 16384 --rate R
# engine.version=0.26.0`), then 10 (past it) if time allows. A 70B at TP2 near capacity: the held-out check for the
# step model's model-size bias (8B slow, 70B fast) and for TPOT near capacity. Nothing is fitted on it.
# Session 25's run: both servers crashed in vLLM's memory profile (results/session25/NOTES.md): session 24's plan had
# NVLink multicast on and these machines have none. The plan is now benchmarks/gpu/plans/session25/70b-2xa100 (made
# after nvlink_multicast began defaulting to what the GPU can have: an A100 plan carries the off switches), and T2S
# gets the same switches (../shared/gpu/README.md).
#   setsid nohup bash benchmarks/gpu/session25.sh > /tmp/s25.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S25:-/tmp/s25}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=2048; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
m=$(model_folder /tmp/models-0 llama-3.1-70b ct-int8); tok=$(tokenizer_folder "$m")
VERIFY_S=180 verify_on V70T2B 0,1 8200 benchmarks/gpu/plans/session25/70b-2xa100 "$m" --force
export DEV=0,1 PORT=8000 SCRAPE=1
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 VLLM_ALLREDUCE_USE_SYMM_MEM=0 VLLM_ALLREDUCE_USE_FLASHINFER=0
if TP=2 SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-T2S serve T2S "$m" "$tok" \
    "$(TP=2 meta_of llama-3.1-70b int8 auto '"enable_chunked_prefill": true, "kv_cache_memory_bytes": 41172336640')" \
    --tensor-parallel-size 2 --enable-chunked-prefill --kv-cache-memory-bytes 41172336640 \
    --compilation-config '{"pass_config":{"fuse_allreduce_rms":false}}'; then
  for r in 4 7 8.5; do load T2S "chat-$r" "$tok" "$r"; done
  if [ "$SECONDS" -lt "${LAST_BY:-1000}" ]; then load T2S chat-10 "$tok" 10
  else echo "T2S chat-10 skipped at $SECONDS s" >> "$S/times.txt"; fi
fi
stop T2S
touch "$S/ALL_DONE"
