# Sourced by the GPU scripts: assemble vLLM 0.26.0 from the chunks in /tmp/vch once per machine
# (../shared/gpu/README.md), enter its environment, and put the dummy-weights `vllm` shim first on PATH.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ ! -f /tmp/vsite/env.sh ]; then
  cp .vch-tools/SHA256SUMS /tmp/vch/ && bash .vch-tools/assemble.sh /tmp/vch > /tmp/assemble.log 2>&1 \
    || { tail -20 /tmp/assemble.log; exit 1; }
fi
source /tmp/vsite/env.sh
export PATH=$PWD/benchmarks/gpu/bin:$PATH
# hydra/omegaconf (pure Python) carried in .vch-tools/py: plan, bench --slo and verify compose the conf there.
# Stage them here once:  mkdir -p .vch-tools/py && cp -r .venv/lib/python3.11/site-packages/{hydra,omegaconf,antlr4} .vch-tools/py/
# (optuna is not carried: make plans here and commit them; the GPU machine only launches and measures them)
[ -d .vch-tools/py ] && export PYTHONPATH=$PWD/.vch-tools/py:${PYTHONPATH:-}
