"""kserve/llminferenceservice.yaml: KServe's LLMInferenceService (serving.kserve.io/v1alpha1) for vLLM plans whose
replica fits on one node.

Checked against the CRD of KServe v0.20.0 (config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml,
which serves v1alpha1 and v1alpha2): tests validate the manifest against both versions' openAPIV3Schema. v1alpha1
is rendered because every KServe release with this CRD serves it (0.20 converts it to v1alpha2).

How KServe's default vLLM template (config/llmisvcconfig/config-llm-template.yaml, v0.20.0) uses the fields:
it runs `vllm serve /mnt/models --served-model-name <spec.model.name> --port 8000
[--tensor-parallel-size <spec.parallelism.tensor>] ... $@`, the container's args being `$@`. So the args here
are the adapter's flags less the model, name, host, port and TP. spec.parallelism.pipeline is left out: KServe
reads it as the LeaderWorkerSet group size across nodes (ParallelismSpec.GetSize), so a one-node PP goes in
the args as --pipeline-parallel-size.
"""

from __future__ import annotations

import yaml

from serveplan.render.targets.cloud import flat_args, vllm_env, vllm_options
from serveplan.render.targets.common import MODEL_VOLUME, Deployment, header
from serveplan.render.targets.k8s import pvc_name

API_VERSION = "serving.kserve.io/v1alpha1"
KSERVE_VERSION = "0.20.0"  # the CRD the manifest was validated against
# Flags the KServe template sets from the spec (see the module docstring).
TEMPLATE_FLAGS = ("--tensor-parallel-size",)


def model_uri(dep: Deployment) -> str:
    """hf://<id> for a Hugging Face checkpoint; pvc://<model volume>/<folder> for a local one (the quantize
    Job's output or a folder you copied onto the model volume), which KServe's storage initializer mounts."""
    if not dep.local_checkpoint:
        return f"hf://{dep.checkpoint.id}"
    return f"pvc://{pvc_name(dep)}/{dep.container_model.removeprefix(MODEL_VOLUME + '/')}"


def llminferenceservice(dep: Deployment) -> dict:
    c = dep.candidate
    options = [(f, v) for f, v in vllm_options(dep) if f not in TEMPLATE_FLAGS]
    gpus = c.gpus_per_replica
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                 "optional": True}}}]
    env += [{"name": k, "value": v} for k, v in vllm_env(dep).items()]
    container = {"name": "main", "image": dep.adapter.image, "args": flat_args(options), "env": env,
                 "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}}
    return {"apiVersion": API_VERSION, "kind": "LLMInferenceService",
            "metadata": {"name": dep.name, "labels": {"app.kubernetes.io/name": dep.name,
                                                      "app.kubernetes.io/managed-by": "serveplan"}},
            "spec": {"model": {"uri": model_uri(dep), "name": dep.served_model_name},
                     "replicas": c.replicas,
                     "parallelism": {"tensor": c.tp},
                     "template": {"containers": [container]},
                     "router": {"route": {}, "gateway": {}}}}


def kserve_files(dep: Deployment) -> dict[str, str]:
    note = (f"# KServe LLMInferenceService ({API_VERSION}, CRD of KServe {KSERVE_VERSION}): kubectl apply -f this "
            "file on a cluster with KServe's LLMInferenceService controller.\n"
            "# The vLLM image, args and GPUs override KServe's default vLLM template (container `main`).\n")
    if dep.local_checkpoint:
        note += (f"# The checkpoint is read from the model volume {pvc_name(dep)} (k8s/deployment.yaml creates it); "
                 "it must be there first.\n")
    return {"kserve/llminferenceservice.yaml": header(dep) + note +
            yaml.safe_dump(llminferenceservice(dep), sort_keys=False, width=120)}
