# Sourced by the GPU scripts: assemble vLLM 0.26.0 from the chunks in /tmp/vch once per machine
# (../shared/gpu/README.md), enter its environment, put the dummy-weights `vllm` shim first on PATH, and define the
# helpers the scripts share (model_folder, tokenizer_folder, wait_health; at the end).
# Staging (session 12): `run` refuses a working tree over 64 MiB with its carried paths, and the tracked tree is
# ~53 MB, most of it benchmarks/gpu/results. Move that folder out of the checkout while carrying the ~19 MB chunks
# (three a call), and back once they are staged. A lent machine goes back 30 s after the last `run` call ends even
# with a script still running on it: start the script and poll it inside the same call (up to 600 s), then poll again
# at once; tar what it wrote to $OUT at the end of every polling call.
# Carrying the chunks took under a minute of device time on one machine and ~11 minutes on another (session 13): start
# staging only with ~20 device minutes left, and check lease.budget_left_s after the first chunk call.
# Session 18: eight chunk calls took ~45 device seconds after a ~35 s machine start. When the lease's budget runs
# out, `run` cuts the call at what is left (limit_s) and returns only what is under $OUT: a script near the end of
# the budget writes its results there directly (session18c.sh: S18C=$OUT/s18c).
# Session 25: with the tracked tree at ~12 MB, three ~20 MB chunks a call passed the 64 MiB limit and `run` refused
# all seven such calls: carry two a call (eleven calls for .vch0-.vch21, then .vch22 .vch23 .vch-tools).
# Session 19: but `run` brings back only a few files written loose under $OUT (the rest are listed in files_left_out
# as "(count)", and the next call's $OUT is a new, empty folder): such a script writes under /tmp and tars into
# $OUT as it goes (session19b.sh lost its open loops that way).
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# However the script ends (here on a missing chunk, or later), $S/ALL_DONE appears, so that a polling call stops at
# once instead of waiting out its loop (session 25 lost 550 device seconds polling a script that had exited).
[ -n "${S:-}" ] && trap 'touch "$S/ALL_DONE"' EXIT
if [ ! -f /tmp/vsite/env.sh ]; then
  # every chunk SHA256SUMS names must be staged: say which are missing rather than fail inside tar
  missing=$(awk '{print $2}' .vch-tools/SHA256SUMS | while read -r f; do [ -f "/tmp/vch/$f" ] || echo "$f"; done)
  if [ -n "$missing" ]; then echo "vllm_env.sh: chunks not staged in /tmp/vch: $(echo $missing)" >&2
    [ -n "${S:-}" ] && echo "chunks missing: $(echo $missing)" >> "$S/times.txt"; exit 1; fi
  cp .vch-tools/SHA256SUMS /tmp/vch/ && bash .vch-tools/assemble.sh /tmp/vch > /tmp/assemble.log 2>&1 \
    || { tail -20 /tmp/assemble.log; exit 1; }
fi
source /tmp/vsite/env.sh
export PATH=$PWD/benchmarks/gpu/bin:$PATH
# hydra/omegaconf (pure Python) carried in .vch-tools/py: plan, bench --slo and verify compose the conf there.
# Stage them here once:  mkdir -p .vch-tools/py && cp -r .venv/lib/python3.11/site-packages/{hydra,omegaconf,antlr4} .vch-tools/py/
# (optuna is not carried: make plans here and commit them; the GPU machine only launches and measures them)
# Copied out of the checkout once: a later `run` call without `carry: [.vch-tools]` may take .vch-tools away from
# under a script still running (session 7 lost hydra that way mid-run).
if [ -d .vch-tools/py ] && [ ! -d /tmp/vpy/hydra ]; then mkdir -p /tmp/vpy && cp -r .vch-tools/py/. /tmp/vpy/; fi
[ -d /tmp/vpy/hydra ] && export PYTHONPATH=/tmp/vpy:${PYTHONPATH:-}

# Helpers every GPU script uses.
model_folder() {  # BASE MODEL FORMAT -> a local config.json + synthetic tokenizer folder for --load-format dummy
  python3 -c "
import sys; sys.path.insert(0, 'benchmarks/gpu')
from pathlib import Path
from launch_safety_run import make_folder
print(make_folder(Path('$1'), '$2', '$3'))"
}
tokenizer_folder() {  # FOLDER -> what to pass as --tokenizer (a llama-typed copy for other architectures)
  python3 -c "
import sys; sys.path.insert(0, 'benchmarks/gpu')
from pathlib import Path
from launch_safety_run import tokenizer_of
print(tokenizer_of(Path('$1')))"
}
cut_layers() {  # FOLDER LAYERS -> a copy of the folder (FOLDER-lLAYERS) with num_hidden_layers set (sessions 16, 24)
  local out="$1-l$2"
  cp -r "$1" "$out"
  python3 -c "
import json, sys; p = sys.argv[1] + '/config.json'; c = json.load(open(p)); c['num_hidden_layers'] = int(sys.argv[2])
json.dump(c, open(p, 'w'), indent=1)" "$out" "$2"
  echo "$out"
}
wait_health() {  # PORT SECONDS: 0 once /health answers, 1 if it never did
  for _ in $(seq 1 "$2"); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 1; done; return 1
}
gpu_kind() {  # the profile name of GPU 0: h200 (141 GB) or h100-sxm; writes nvidia-smi's list to $1 when given,
  # and the host's CPU beside it (host-cpu.txt): near capacity a small model's API server and engine core are bound by
  # one core's speed, which differed between session 24's and session 30's hosts (docs/accuracy.md, session 30)
  [ -n "${1:-}" ] && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader > "$1"
  [ -n "${1:-}" ] && { grep -m1 'model name' /proc/cpuinfo; nproc; grep -m1 MHz /proc/cpuinfo; } \
    > "$(dirname "$1")/host-cpu.txt" 2>/dev/null
  local mem_mib; mem_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
  if [ "${mem_mib:-0}" -ge 100000 ]; then echo h200; else echo h100-sxm; fi
}
