#!/usr/bin/env bash
# examples/fleet (no GPU needed): plan the three models of fleet.yaml on the 8xH100 + 4xL40S inventory and write
# the fleet folder: a plan folder per model (k8s/ with the Deployment, Service and both autoscalers) and gateway/,
# the LiteLLM proxy config in front of them. About 25 s (21 planner calls).
#
#   examples/fleet/run.sh [OUT]      # OUT: the fleet folder (default ./fleet-out), replaced whole
#
# PYTHON: the interpreter that has serveplan (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-fleet-out}"
py="${PYTHON:-python3}"

"$py" -m serveplan.cli plan fleet "$here/fleet.yaml" -o "$out"
echo
echo "== $out/gateway/litellm.yaml"
cat "$out/gateway/litellm.yaml"
