#!/usr/bin/env bash
# On the GPU machine, from the repo root: measure this GPU's hardware profile into $OUT.
#   bash benchmarks/gpu/profile.sh NAME     ->  $OUT/NAME.yaml (+ NAME.log, NAME-quick.yaml, nvidia-smi.txt)
# A --quick run goes first (seconds; it catches a broken CUDA path before the full run).
# The catalog name (gpu key) is taken from the device name; nvidia-smi's output is kept to check it.
set -uo pipefail
OUT=${OUT:-/tmp/serveplan-profile}; mkdir -p "$OUT"
name=${1:-gpu}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total,driver_version,pci.bus_id,clocks.sm,clocks.mem,clocks.max.sm,power.limit \
  --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), torch.cuda.get_device_capability(), torch.cuda.device_count(), 'GPUs')"
python3 -m serveplan.cli.profile --quick --no-progress -o "$OUT/$name-quick.yaml" 2>&1 | tee "$OUT/$name-quick.log"
start=$(date +%s)
python3 -m serveplan.cli.profile -o "$OUT/$name.yaml" 2>&1 | tee "$OUT/$name.log"
rc=${PIPESTATUS[0]}
echo "full profile: rc=$rc, $(( $(date +%s) - start )) s wall"
exit $rc
