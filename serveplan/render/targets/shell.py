"""launch.sh (one machine, every replica in the background) and ray/ (head.sh, worker.sh, serve.sh)."""

from __future__ import annotations

from serveplan.render.engines.base import ReplicaLaunch
from serveplan.render.targets.common import Deployment, header, sh_join

_TRAP = '''pids=()
stop() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 5
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
'''

_WAIT = '''# Wait for any replica to exit; then stop the others and pass its status on.
status=0
wait -n || status=$?
echo "a replica exited (status $status); stopping the rest" >&2
stop
exit "$status"
'''


def _start(launch: ReplicaLaunch, env_prefix: bool = True) -> str:
    env = " ".join(f"{k}={v}" for k, v in sorted(launch.env.items())) if env_prefix else ""
    cmd = f"env {env} " if env else ""
    return (f"# replica {launch.replica}: GPUs {','.join(map(str, launch.gpus)) or '-'}, port {launch.port}\n"
            f"{cmd}setsid {sh_join(launch.argv)} > replica-{launch.replica}.log 2>&1 &\n"
            f'pids+=("$!")\n'
            f'echo "replica {launch.replica} (pid $!) on port {launch.port}, log: replica-{launch.replica}.log"\n')


def launch_sh(dep: Deployment, launches: list[ReplicaLaunch], guard: str = "") -> str:
    body = "".join(_start(x) for x in launches)
    return ("#!/usr/bin/env bash\n" + header(dep) +
            "# Starts every replica in its own process group; Ctrl-C / SIGTERM stops them all.\n"
            'set -euo pipefail\ncd "$(dirname "$0")"\n\n' + guard + _TRAP + "\n" + body + "\n" + _WAIT)


def ray_scripts(dep: Deployment) -> dict[str, str]:
    """A Ray cluster over the inventory's nodes, and vLLM replicas on it (--distributed-executor-backend ray)."""
    inv = dep.request.inventory
    head = ("#!/usr/bin/env bash\n" + header(dep) +
            "# Run on the head node first.\nset -euo pipefail\n"
            f"ray start --head --port=6379 --num-gpus={inv.gpus_per_node} --dashboard-host=0.0.0.0\n")
    worker = ("#!/usr/bin/env bash\n" + header(dep) +
              f"# Run on each of the other {inv.nodes - 1} node(s): HEAD_IP=<head address> ./worker.sh\n"
              "set -euo pipefail\n"
              f'ray start --address="${{HEAD_IP:?set HEAD_IP to the head node address}}:6379" '
              f"--num-gpus={inv.gpus_per_node} --block\n")
    launches = []
    for i in range(dep.candidate.replicas):
        x = dep.adapter.render(dep.candidate, dep.request, model=dep.model, replica=i, gpus=[],
                               port=dep.base_port + i, served_model_name=dep.served_model_name)
        argv = list(x.argv)
        if "--distributed-executor-backend" not in argv:
            argv += ["--distributed-executor-backend", "ray"]
        problems = dep.adapter.validate(argv)
        if problems:
            raise AssertionError("; ".join(problems))
        launches.append(ReplicaLaunch(replica=i, argv=argv, env={}, port=x.port, gpus=[]))
    total = inv.total_gpus
    serve = ("#!/usr/bin/env bash\n" + header(dep) +
             "# Run on the head node once every worker has joined; Ray places each replica's workers.\n"
             'set -euo pipefail\ncd "$(dirname "$0")"\n'
             f'until [ "$(python3 -c \'import ray; ray.init(address="auto", logging_level="ERROR"); '
             f'print(int(ray.cluster_resources().get("GPU", 0)))\')" -ge {total} ]; do\n'
             f'  echo "waiting for {total} GPUs in the Ray cluster..."; sleep 5\ndone\n\n'
             + _TRAP + "\n" + "".join(_start(x, env_prefix=False) for x in launches) + "\n" + _WAIT)
    return {"ray/head.sh": head, "ray/worker.sh": worker, "ray/serve.sh": serve}
