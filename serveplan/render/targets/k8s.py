"""Kubernetes manifests: Deployment + Service when each replica fits on one node (the Deployment's replicas are
the plan's replicas); a LeaderWorkerSet (vLLM on a Ray cluster per group) when a replica spans nodes."""

from __future__ import annotations

import yaml

import math

from serveplan.render.targets.common import CONTAINER_PORT, MODEL_VOLUME, Deployment, header
from serveplan.planner.memory import GB

CONFIG_DIR = "/etc/serveplan"


def _probes(path: str) -> dict:
    get = {"httpGet": {"path": path, "port": CONTAINER_PORT}}
    return {
        "startupProbe": {**get, "periodSeconds": 10, "failureThreshold": 180},
        "readinessProbe": {**get, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**get, "periodSeconds": 30, "failureThreshold": 5, "timeoutSeconds": 10},
    }


def pvc_name(dep: Deployment) -> str:
    return f"{dep.name}-models"


def model_volume_claim(dep: Deployment) -> dict:
    """The model volume: Hugging Face downloads (HF_HOME) and quantized checkpoints live here, so a pod
    restart does not download the weights again. Sized for the served checkpoint (plus the bf16 base when
    the quantize Job reads it) with 30% slack. ReadWriteMany so replicas on several nodes share it."""
    from serveplan.planner.memory import weight_bytes_per_gpu

    m, c = dep.request.model, dep.candidate
    served = weight_bytes_per_gpu(m, 1, 1, c.weight_dtype)
    base = weight_bytes_per_gpu(m, 1, 1, "bf16") if dep.checkpoint.source in ("needs_quantize", "online") else 0
    size = max(10, math.ceil((served + base) / GB * 1.3 / 10) * 10)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": pvc_name(dep), "labels": {"app.kubernetes.io/name": dep.name}},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": f"{size}Gi"}}}}


def _engine_env(dep: Deployment, env: dict[str, str]) -> list:
    return _hf_env() + [{"name": "HF_HOME", "value": f"{MODEL_VOLUME}/hf"}] + [
        {"name": k, "value": v} for k, v in sorted(env.items()) if k != "CUDA_VISIBLE_DEVICES"]


def _wait_for_checkpoint(dep: Deployment) -> list:
    """An init container that holds the engine until the quantize Job has written the checkpoint."""
    if dep.checkpoint.source != "needs_quantize":
        return []
    cfg = f"{dep.container_model}/config.json"
    return [{"name": "wait-for-checkpoint", "image": "busybox:1.36",
             "command": ["sh", "-c", f"until [ -f {cfg} ]; do echo waiting for {cfg}; sleep 30; done"],
             "volumeMounts": [{"name": "models", "mountPath": MODEL_VOLUME, "readOnly": True}]}]


def _volumes(name: str, files: dict[str, str], pvc: str) -> tuple[list, list]:
    vols = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
            {"name": "models", "persistentVolumeClaim": {"claimName": pvc}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "models", "mountPath": MODEL_VOLUME}]
    if files:
        vols.append({"name": "engine-config", "configMap": {"name": f"{name}-config"}})
        mounts.append({"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True})
    return vols, mounts


def _service(dep: Deployment, selector: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": dep.name, "labels": {"app.kubernetes.io/name": dep.name}},
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": CONTAINER_PORT,
                                "protocol": "TCP"}]}}


def _hf_env() -> list:
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}}]


def deployment_manifests(dep: Deployment) -> list[dict]:
    x = dep.render(0, list(range(dep.candidate.gpus_per_replica)), CONTAINER_PORT, container=True)
    gpus = dep.candidate.gpus_per_replica
    labels = {"app.kubernetes.io/name": dep.name, "app.kubernetes.io/managed-by": "serveplan"}
    vols, mounts = _volumes(dep.name, x.files, pvc_name(dep))
    container = {
        "name": "engine", "image": dep.adapter.image,
        "command": x.argv[:1], "args": x.argv[1:],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": _engine_env(dep, x.env),
        "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
        "volumeMounts": mounts, **_probes(x.health_path),
    }
    if x.files:
        container["workingDir"] = CONFIG_DIR
    docs: list[dict] = []
    if x.files:
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{dep.name}-config"},
                     "data": dict(x.files)})
    docs.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": dep.name, "labels": labels},
        "spec": {"replicas": dep.candidate.replicas,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": dep.name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"initContainers": _wait_for_checkpoint(dep), "containers": [container],
                                       "volumes": vols, "terminationGracePeriodSeconds": 60,
                                       **_node_selector(dep)}}}})
    docs.append(_service(dep, {"app.kubernetes.io/name": dep.name}))
    return docs


def _node_selector(dep: Deployment) -> dict:
    """Pods land on nodes of the GPU the plan was made for (GPU Feature Discovery's nvidia.com/gpu.product
    label): in a cluster of several GPU types (a fleet's 8xH100 + 4xL40S) a pod sized for one is otherwise
    scheduled on whichever has free GPUs."""
    label = dep.request.inventory.gpu.k8s_product_label
    return {"nodeSelector": {"nvidia.com/gpu.product": label}} if label else {}


def leaderworkerset_manifests(dep: Deployment) -> list[dict]:
    """vLLM's multi-node recipe: the leader starts the Ray head then `vllm serve --distributed-executor-backend
    ray`; workers join the leader's Ray cluster. One group (size = nodes per replica) per replica."""
    inv = dep.request.inventory
    size = dep.nodes_per_replica
    x = dep.render(0, list(range(dep.candidate.gpus_per_replica)), CONTAINER_PORT, container=True)
    argv = list(x.argv)
    if "--distributed-executor-backend" not in argv:
        argv += ["--distributed-executor-backend", "ray"]
    from serveplan.render.targets.common import sh_join

    leader_cmd = (f"ray start --head --port=6379 --num-gpus={inv.gpus_per_node} && "
                  f"until [ \"$(ray status 2>/dev/null | grep -c node_)\" -ge {size} ]; do sleep 5; done && "
                  f"exec {sh_join(argv)}")
    worker_cmd = (f"ray start --address=$(LWS_LEADER_ADDRESS):6379 --num-gpus={inv.gpus_per_node} --block")
    vols, mounts = _volumes(dep.name, {}, pvc_name(dep))
    res = {"limits": {"nvidia.com/gpu": inv.gpus_per_node}, "requests": {"nvidia.com/gpu": inv.gpus_per_node}}

    def pod(cmd: str, leader: bool) -> dict:
        c = {"name": "leader" if leader else "worker", "image": dep.adapter.image,
             "command": ["bash", "-c", cmd], "env": _engine_env(dep, x.env), "resources": res,
             "volumeMounts": mounts}
        if leader:
            c["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT}]
            c.update(_probes(x.health_path))
        return {"metadata": {"labels": {"role": "leader" if leader else "worker"}},
                "spec": {"containers": [c], "volumes": vols, **_node_selector(dep)}}

    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": dep.name},
           "spec": {"replicas": dep.candidate.replicas, "startupPolicy": "LeaderCreated",
                    "leaderWorkerTemplate": {"size": size, "restartPolicy": "RecreateGroupOnPodRestart",
                                             "leaderTemplate": pod(leader_cmd, True),
                                             "workerTemplate": pod(worker_cmd, False)}}}
    svc = _service(dep, {"leaderworkerset.sigs.k8s.io/name": dep.name, "role": "leader"})
    return [lws, svc]


def k8s_files(dep: Deployment) -> dict[str, str]:
    if dep.replica_spans_nodes:
        docs = leaderworkerset_manifests(dep)
        docs = [model_volume_claim(dep)] + docs
        return {"k8s/leaderworkerset.yaml": header(dep) + yaml.safe_dump_all(docs, sort_keys=False, width=120)}
    docs = [model_volume_claim(dep)] + deployment_manifests(dep)
    return {"k8s/deployment.yaml": header(dep) + yaml.safe_dump_all(docs, sort_keys=False, width=120)}
