# Sourced by the GPU scripts: assemble vLLM 0.26.0 from the chunks in /tmp/vch once per machine
# (../shared/gpu/README.md), enter its environment, and put the dummy-weights `vllm` shim first on PATH.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ ! -f /tmp/vsite/env.sh ]; then
  cp .vch-tools/SHA256SUMS /tmp/vch/ && bash .vch-tools/assemble.sh /tmp/vch > /tmp/assemble.log 2>&1 \
    || { tail -20 /tmp/assemble.log; exit 1; }
fi
source /tmp/vsite/env.sh
export PATH=$PWD/benchmarks/gpu/bin:$PATH
# hydra/omegaconf (pure Python) carried in .vch-tools/py: plan, bench --slo and verify compose the conf there
[ -d .vch-tools/py ] && export PYTHONPATH=$PWD/.vch-tools/py:${PYTHONPATH:-}
