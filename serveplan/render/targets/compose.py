"""docker-compose.yaml: one service per replica on the official image at the pinned version, GPUs reserved by id,
a /health healthcheck, and (for several replicas) an nginx service in front."""

from __future__ import annotations

import yaml

from serveplan.render.engines.base import ReplicaLaunch
from serveplan.render.targets.common import Deployment, header

WORKDIR = "/run/serveplan"


def _healthcheck(port: int, path: str) -> dict:
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)"
    return {"test": ["CMD", "python3", "-c", probe], "interval": "15s", "timeout": "5s", "retries": 5,
            "start_period": "900s"}


def _service(dep: Deployment, x: ReplicaLaunch) -> dict:
    svc: dict = {
        "image": dep.adapter.image,
        "entrypoint": [x.argv[0]],
        "command": x.argv[1:],
        "ipc": "host",
        "ports": [f"{x.port}:{x.port}"],
        "environment": {"HF_TOKEN": "${HF_TOKEN:-}", "HF_HOME": "/root/.cache/huggingface",
                        **{k: v for k, v in sorted(x.env.items()) if k != "CUDA_VISIBLE_DEVICES"}},
        "volumes": ["${HF_HOME:-~/.cache/huggingface}:/root/.cache/huggingface"] + _model_mount(dep),
        "healthcheck": _healthcheck(x.port, x.health_path),
        "deploy": {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": [str(g) for g in x.gpus], "capabilities": ["gpu"]}]}}},
        "restart": "unless-stopped",
    }
    if x.files:  # e.g. the TRT-LLM options file, referenced by relative name from the working directory
        svc["working_dir"] = WORKDIR
        svc["volumes"] += [f"./{name}:{WORKDIR}/{name}:ro" for name in sorted(x.files)]
    return svc


def _model_mount(dep: Deployment) -> list[str]:
    """A local checkpoint (quantize's output beside this file, or a folder you named) under the model volume."""
    if not dep.local_checkpoint:
        return []
    host = f"./{dep.checkpoint.id}" if dep.checkpoint.source == "needs_quantize" else dep.checkpoint.id
    return [f"{host}:{dep.container_model}:ro"]


def compose_yaml(dep: Deployment, launches: list[ReplicaLaunch]) -> str:
    services = {f"replica-{x.replica}": _service(dep, x) for x in launches}
    if len(launches) > 1:
        services["lb"] = {
            "image": "nginx:1.27-alpine",
            "ports": [f"{dep.lb_port}:{dep.lb_port}"],
            "volumes": ["./nginx-compose.conf:/etc/nginx/nginx.conf:ro"],
            "depends_on": {name: {"condition": "service_healthy"} for name in services},
            "restart": "unless-stopped",
        }
    doc = {"name": dep.name, "services": services}
    return header(dep) + yaml.safe_dump(doc, sort_keys=False, width=120)
