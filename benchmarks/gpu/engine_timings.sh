# Sourced by the session-6 to 20 GPU scripts (after vllm_env.sh): vLLM servers with per-request engine timings
# (--enable-per-request-metrics, which `serveplan bench` records), and the loads they put on them. Needs S (the
# results folder). DEV (CUDA_VISIBLE_DEVICES, default 0), PORT (default 8000), TP (meta_of's tp, default 1) and
# SERVE_ENV (extra VAR=value for the server) may be set per call: `DEV=1 PORT=8001 serve ...`.
# MAX_BATCHED and MAX_LEN (set before sourcing) change the server's batching; FLAGS and meta_of both read them.
MAX_BATCHED=${MAX_BATCHED:-8192}; MAX_LEN=${MAX_LEN:-10240}
FLAGS="--max-num-seqs 256 --max-num-batched-tokens $MAX_BATCHED --max-model-len $MAX_LEN
       --gpu-memory-utilization 0.92 --no-enable-prefix-caching --enable-per-request-metrics"
serve() {  # tag model-folder tokenizer-folder meta-json extra-flags...
  local tag=$1 m=$2 tok=$3 meta=$4; shift 4
  mkdir -p "$S/$tag"
  echo "$meta" > "$S/$tag/meta.json"
  # shellcheck disable=SC2086
  env ${SERVE_ENV:-} CUDA_VISIBLE_DEVICES="${DEV:-0}" setsid vllm serve "$m" --tokenizer "$tok" --port "${PORT:-8000}" \
    $FLAGS "$@" > "$S/$tag/server.log" 2>&1 &
  echo $! > "$S/$tag/server.pid"
  local t0=$SECONDS
  if wait_health "${PORT:-8000}" 600; then echo "$tag healthy after $((SECONDS - t0)) s (at $SECONDS s)" >> "$S/times.txt"; return 0; fi
  echo "$tag NOT healthy in 600 s" >> "$S/times.txt"; return 1
}
stop() { local pid; pid=$(cat "$S/$1/server.pid"); kill -TERM -- -"$pid" 2>/dev/null; sleep 8; kill -KILL -- -"$pid" 2>/dev/null; }
bench() {  # tag name tokenizer bench-args...
  local tag=$1 name=$2 tok=$3; shift 3
  local t1=$SECONDS
  python3 -m serveplan.cli bench --url "http://127.0.0.1:${PORT:-8000}" --tokenizer "$tok" --no-progress "$@" \
    -o "$S/$tag/$name.json" > "$S/$tag/$name.txt" 2>&1
  echo "$tag $name rc=$? in $((SECONDS - t1)) s" >> "$S/times.txt"
}
load() {  # tag name tokenizer rate extra-overrides...: 60 s of the chat preset (LOAD_TRAFFIC), open loop, /metrics around it
  # (and every SCRAPE_S seconds during it with SCRAPE=1: engine steps, tokens and the running batch, see scrape_steps)
  local tag=$1 name=$2 tok=$3 rate=$4 scraper= cpu= clocks=; shift 4
  curl -s "http://127.0.0.1:${PORT:-8000}/metrics" > "$S/$tag/metrics-$name-before.txt"
  if [ "${SCRAPE:-0}" = 1 ]; then scrape_steps "${PORT:-8000}" "$S/$tag/steps-$name.txt" & scraper=$!; fi
  # CPU=1: the server's processes' CPU time every second (cpu_sample; session 29: is the API server the bottleneck?)
  if [ "${CPU:-0}" = 1 ]; then cpu_sample "$(cat "$S/$tag/server.pid")" "$S/$tag/cpu-$name.txt" & cpu=$!; fi
  # CLOCKS=1: the GPUs' SM clock, power, temperature and throttle reasons every 0.5 s (session 29: is a large model's
  # sustained open loop power-throttled? Its steps read 9-15% slower than the short closed-loop points predict)
  if [ "${CLOCKS:-0}" = 1 ]; then
    local why=clocks_event_reasons.active  # the newer drivers' name; clocks_throttle_reasons before them
    nvidia-smi --query-gpu=$why --format=csv,noheader > /dev/null 2>&1 || why=clocks_throttle_reasons.active
    nvidia-smi --query-gpu=timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,$why \
      --format=csv,noheader -lms 500 > "$S/$tag/clocks-$name.csv" 2>&1 & clocks=$!
  fi
  # LOAD_WARMUP=S: S seconds of the same load first, in no figure (session 26: a fresh MoE server's first ~25 s of load
  # stalled on vLLM's fused-MoE JIT; default 0, as every committed run until then)
  # LOAD_TRAFFIC: another traffic preset than chat (session 27)
  bench "$tag" "open-$name" "$tok" --traffic "${LOAD_TRAFFIC:-chat}" --rate "$rate" --duration 60 \
    --warmup "${LOAD_WARMUP:-0}" "$@"
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  [ -n "$cpu" ] && kill "$cpu" 2>/dev/null
  [ -n "$clocks" ] && kill "$clocks" 2>/dev/null
  curl -s "http://127.0.0.1:${PORT:-8000}/metrics" > "$S/$tag/metrics-$name-after.txt"
}
scrape_steps() {  # port out-file: every SCRAPE_S seconds (0.5) until killed, one line: the time, then vLLM's step
  # counter, token sum and tokens-per-step histogram (vllm:iteration_tokens_total, one observation per engine step)
  # and the running and waiting gauges, each without its model_name / engine labels. Windows of it give the mean step
  # time at the batch the engine ran (benchmarks/open_loop_accuracy.py --steps reads it). Each scrape makes the API
  # server render ~60 KB of metrics: a little of the front end's time, which matters on a host-bound server (a small
  # model at a high rate), not on a GPU-bound one.
  while sleep "${SCRAPE_S:-0.5}"; do
    printf '%s ' "$(date +%s.%N)"
    curl -s -m 1 "http://127.0.0.1:$1/metrics" | grep -E \
      '^vllm:(iteration_tokens_total_(count|sum|bucket)|num_requests_running|num_requests_waiting)\{' |
      sed 's/,\?model_name="[^"]*"//; s/engine="0",\?//' | awk '{printf "%s ", $0}'
    echo
  done >> "$2"
}
cpu_sample() {  # process-group out-file: every second until killed, one line per process of the server's group
  # (setsid made the server's pid its group): the time, the pid, its user + system CPU ticks so far (/proc/PID/stat
  # fields 14 and 15; 100 a second) and its command. Differences between lines give each process's share of a core:
  # an API server near 100 is the front end holding requests back (session 28's Gemma-2: none waiting in the engine)
  local p
  while sleep 1; do
    for p in $(pgrep -g "$1"); do
      echo "$(date +%s.%N) $p $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-80)"
    done
  done >> "$2"
}
c1_sweep() {  # tag tokenizer lengths...: TTFT alone at each prompt length (6 requests each, 16 tokens out)
  local tag=$1 tok=$2; shift 2
  for len in "$@"; do
    bench "$tag" "c1-$len" "$tok" --traffic chat --concurrency 1 --num-requests 6 traffic.input_len.kind=fixed \
      "traffic.input_len.mean=$len" "traffic.input_len.max=$len" traffic.output_len.kind=fixed \
      traffic.output_len.mean=16 traffic.output_len.max=16
  done
}
burst() {  # tag tokenizer concurrency prompt-len: C prompts at once, 256 tokens out each; they decode in lockstep,
  # so each request's last gaps are decode steps of batch C (benchmarks/decode_steps.py reads them)
  bench "$1" "burst-c$3-l$4" "$2" --traffic chat --concurrency "$3" --num-requests "$3" \
    traffic.input_len.kind=fixed "traffic.input_len.mean=$4" "traffic.input_len.max=$4" \
    traffic.output_len.kind=fixed traffic.output_len.mean=256 traffic.output_len.max=256
}
meta_of() {  # model weight-dtype kv-dtype [extra json fields]
  echo "{\"model\": \"$1\", \"gpu\": \"$gpu\", \"tp\": ${TP:-1}, \"weight_dtype\": \"$2\", \"kv_cache_dtype\": \"$3\", \"max_num_seqs\": 256, \"max_num_batched_tokens\": $MAX_BATCHED, \"max_model_len\": $MAX_LEN, \"gpu_memory_utilization\": 0.92${4:+, $4}}"
}
grid() {  # tag tokenizer: the closed grid (vllm_grid.py) against the server on PORT, with the tag's meta.json
  local tag=$1 tok=$2 t2=$SECONDS
  python3 benchmarks/gpu/vllm_grid.py --port "${PORT:-8000}" --model "$tok" --label "$tag" --out "$S/$tag/grid.jsonl" \
    --tmpdir "$S/$tag/vgrid" --shapes balanced,decode,prefill,long --concurrency 16,64,1 --repeats 1 \
    --in-process --meta "$(cat "$S/$tag/meta.json")" > "$S/$tag/grid.txt" 2>&1
  echo "$tag grid rc=$? in $((SECONDS - t2)) s" >> "$S/times.txt"
}
peak_mib() {  # gpu-index(es) out-file: the most memory nvidia-smi sees used on one of those GPUs, every 0.5 s, until
  # killed ("0,1": the larger of the two; session 21c's TP2 verify_on compared two lines as one number)
  local peak=0 used
  while sleep 0.5; do
    used=$(nvidia-smi -i "$1" --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | sort -n | tail -1) \
      || continue
    # each new peak also with its time (session 22: peaks 1.5-6.0 GiB above the plan's total, and whether
    # they came at start-up or under load could not be told from the one number)
    [ "${used:-0}" -gt "$peak" ] && { peak=$used; echo "$peak" > "$2"; echo "$(date +%s) $peak" >> "$2.timeline"; }
  done
}
verify_on() {  # tag gpu port plan-folder model-folder verify-args...: `serveplan verify` of a committed plan on one
  # GPU (a copy of the plan in $S/tag/plan), nvidia-smi's peak memory on that GPU beside it, the memory lines of the
  # engine's log and run.json kept
  local tag=$1 dev=$2 port=$3 src=$4 folder=$5 t1=$SECONDS; shift 5
  # VERIFY_S: seconds of load (60 unless set; session 22's long runs). A non-llama folder's tokenizer/ goes to the
  # server (bin/vllm's VLLM_TOKENIZER) and to the load generator alike.
  local plan=$S/$tag/plan tok secs=${VERIFY_S:-60}
  tok=$(tokenizer_folder "$folder")
  mkdir -p "$S/$tag" && cp -r "$src" "$plan"
  peak_mib "$dev" "$S/$tag/peak_mib.txt" & local sampler=$!
  if [ "$tok" != "$folder" ]; then export VLLM_TOKENIZER=$tok; set -- --tokenizer "$tok" "$@"; fi
  CUDA_VISIBLE_DEVICES=$dev timeout $((500 + secs)) python3 -m serveplan.cli verify "$plan" --model "$folder" \
    --port "$port" --duration "$secs" --no-progress --health-timeout 420 -o "$S/$tag/verify.json" "$@" \
    > "$S/$tag/verify.txt" 2>&1
  local rc=$?  # before anything else runs (session 25 logged rc=0 for a verify that failed: unset's status)
  unset VLLM_TOKENIZER
  echo "$tag verify rc=$rc in $((SECONDS - t1)) s (at $SECONDS s)" >> "$S/times.txt"
  CUDA_VISIBLE_DEVICES=$dev python3 -m serveplan.cli stop "$plan" > /dev/null 2>&1
  kill "$sampler" 2>/dev/null
  grep -hE "Model loading took|GPU KV cache size|peak activation|Available KV cache|CUDA graph|memory|out of memory|Error" \
    "$plan"/logs/*.log 2>/dev/null | cut -c1-300 | head -40 > "$S/$tag/memory-lines.txt"
  cp "$plan"/run.json "$S/$tag/" 2>/dev/null
}
served() {  # tag dev port model format weight-dtype kv-dtype "rates" "c1-lengths" ["meta-extra-json"]: one dummy-weight
  # server on GPU dev: the kernel lines vLLM logs, chat at each rate, bursts of 16/32/64 at 1,024 tokens, prompts alone
  # at each length, then the closed grid while SECONDS < GRID_BY (default: always). Sessions 17-18 copied this loop
  # into each script (quantized, served); from session 19 on, the scripts call this one.
  local tag=$1 dev=$2 port=$3 model=$4 fmt=$5 wd=$6 kv=$7 rates=$8 lens=$9 meta_extra=${10:-} m tok r c extra=
  m=$(model_folder "/tmp/models-$dev" "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  [ "$kv" = fp8 ] && extra="--kv-cache-dtype fp8"
  export DEV=$dev PORT=$port
  # shellcheck disable=SC2086
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" "$(meta_of "$model" "$wd" "$kv" "$meta_extra")" $extra; then
    grep -h -iE "Selected|Using .*Kernel|machete|marlin|awq|gptq" "$S/$tag/server.log" | cut -c1-250 | sort | uniq -c > "$S/$tag/kernels.txt"
    for r in $rates; do load "$tag" "chat-$r" "$tok" "$r"; done
    for c in 16 32 64; do burst "$tag" "$tok" "$c" 1024; done
    # shellcheck disable=SC2086
    [ -n "$lens" ] && c1_sweep "$tag" "$tok" $lens
    if [ "$SECONDS" -lt "${GRID_BY:-999999}" ]; then grid "$tag" "$tok"; else echo "$tag grid skipped at $SECONDS s" >> "$S/times.txt"; fi
  fi
  stop "$tag"
  unset DEV PORT
}
