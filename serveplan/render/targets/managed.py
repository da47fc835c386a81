"""sagemaker/ and vertex/: a real-time endpoint for the winner on Amazon SageMaker and on Google Vertex AI, for
vLLM plans whose replica is one machine of the plan's GPU (cloud.py's tables) and whose checkpoint is a Hugging
Face id (the container downloads it; a local folder would first have to be uploaded).

SageMaker: endpoint.json holds the CreateModel / CreateEndpointConfig / CreateEndpoint requests (botocore's
shapes), deploy.py sends them with boto3, adding the image of the AWS vLLM DLC for --region and --role-arn. The
DLC turns SM_VLLM_<FLAG>=value into `--flag value` (true: a bare flag) and serves SageMaker's /ping and
/invocations on 8080 itself. Vertex AI: model.json holds Model.upload / Model.deploy's arguments
(google-cloud-aiplatform), deploy.py calls them; no package names a Vertex vLLM image, so --image-uri is yours
to give (an Artifact Registry copy of the plan's image).
"""

from __future__ import annotations

import json

from serveplan.render.targets.cloud import (SAGEMAKER_INSTANCES, SAGEMAKER_VLLM_IMAGES, VERTEX_MACHINES, flat_args,
                                            no_machine, sagemaker_instance, vertex_machine, vllm_env, vllm_options)
from serveplan.planner.profiles import version_key
from serveplan.render.targets.common import CONTAINER_PORT, Deployment, header

SAGEMAKER_ENV_PREFIX = "SM_VLLM_"


def sagemaker_env(dep: Deployment) -> dict[str, str]:
    """The DLC's environment: SM_VLLM_MODEL, SM_VLLM_SERVED_MODEL_NAME and one SM_VLLM_<FLAG> per option."""
    env = {f"{SAGEMAKER_ENV_PREFIX}MODEL": dep.checkpoint.id,
           f"{SAGEMAKER_ENV_PREFIX}SERVED_MODEL_NAME": dep.served_model_name}
    for flag, value in vllm_options(dep):
        env[SAGEMAKER_ENV_PREFIX + flag[2:].replace("-", "_").upper()] = "true" if value is None else value
    return {**env, **vllm_env(dep)}


def sagemaker_requests(dep: Deployment, instance: str) -> dict:
    name = dep.name
    return {
        "CreateModel": {"ModelName": name, "PrimaryContainer": {"Environment": sagemaker_env(dep)}},
        "CreateEndpointConfig": {"EndpointConfigName": name, "ProductionVariants": [{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance,
            "InitialInstanceCount": dep.candidate.replicas,
            "ContainerStartupHealthCheckTimeoutInSeconds": 1800, "ModelDataDownloadTimeoutInSeconds": 1800}]},
        "CreateEndpoint": {"EndpointName": name, "EndpointConfigName": name},
    }


_SAGEMAKER_DEPLOY = '''#!/usr/bin/env python3
{header}"""Create the SageMaker endpoint in endpoint.json: python3 sagemaker/deploy.py --region R --role-arn ARN.
Needs boto3 and AWS credentials. The image is the AWS vLLM DLC {tag} (sagemaker-core 2.27.0's table);
HF_TOKEN from this environment is passed on when set (gated models)."""
import argparse
import json
import os
from pathlib import Path

import boto3

TAG = {tag!r}
REGISTRIES = {registries!r}

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--region", required=True, choices=sorted(REGISTRIES))
p.add_argument("--role-arn", required=True, help="a SageMaker execution role ARN (yours)")
args = p.parse_args()
req = json.loads((Path(__file__).parent / "endpoint.json").read_text())
image = f"{{REGISTRIES[args.region]}}.dkr.ecr.{{args.region}}.amazonaws.com/vllm:{{TAG}}"
req["CreateModel"]["PrimaryContainer"]["Image"] = image
req["CreateModel"]["ExecutionRoleArn"] = args.role_arn
if os.environ.get("HF_TOKEN"):
    req["CreateModel"]["PrimaryContainer"]["Environment"]["HF_TOKEN"] = os.environ["HF_TOKEN"]
sm = boto3.client("sagemaker", region_name=args.region)
sm.create_model(**req["CreateModel"])
sm.create_endpoint_config(**req["CreateEndpointConfig"])
sm.create_endpoint(**req["CreateEndpoint"])
print(f"creating endpoint {{req['CreateEndpoint']['EndpointName']}} ({{image}}); "
      "aws sagemaker wait endpoint-in-service --endpoint-name NAME waits for it")
'''


def sagemaker_files(dep: Deployment) -> tuple[dict[str, str], str | None]:
    """(files, or a sentence why none were written)."""
    gpu, n = dep.request.inventory.gpu.name, dep.candidate.gpus_per_replica
    why = _why_not(dep)
    inst = sagemaker_instance(gpu, n)
    if why is None and inst is None:  # first: no other engine.version would give it a machine
        why = no_machine("SageMaker", SAGEMAKER_INSTANCES, gpu, n)
    image = SAGEMAKER_VLLM_IMAGES.get(dep.adapter.version)
    if why is None and image is None:
        why = (f"the AWS vLLM DLC table (sagemaker-core 2.27.0) has no image for vLLM {dep.adapter.version}; "
               f"plan with engine.version={max(SAGEMAKER_VLLM_IMAGES, key=version_key)} for a SageMaker endpoint")
    if why is not None:
        return {}, f"sagemaker/: not written: {why}."
    tag, registries = image
    return {"sagemaker/endpoint.json": json.dumps(sagemaker_requests(dep, inst.name), indent=2) + "\n",
            "sagemaker/deploy.py": _SAGEMAKER_DEPLOY.format(header=header(dep), tag=tag, registries=registries)}, None


def vertex_config(dep: Deployment, machine) -> dict:
    env = {**vllm_env(dep)}
    args = [dep.checkpoint.id, *flat_args(vllm_options(dep)), "--host", "0.0.0.0", "--port", str(CONTAINER_PORT),
            "--served-model-name", dep.served_model_name]
    return {
        "upload": {"display_name": dep.name, "serving_container_command": ["vllm", "serve"],
                   "serving_container_args": args, "serving_container_ports": [CONTAINER_PORT],
                   "serving_container_predict_route": "/v1/chat/completions",
                   "serving_container_health_route": "/health",
                   "serving_container_environment_variables": env,
                   "serving_container_shared_memory_size_mb": 16384,
                   "serving_container_deployment_timeout": 3600},
        "deploy": {"machine_type": machine.name, "accelerator_type": machine.accelerator,
                   "accelerator_count": machine.count, "min_replica_count": dep.candidate.replicas,
                   "max_replica_count": dep.candidate.replicas},
    }


_VERTEX_DEPLOY = '''#!/usr/bin/env python3
{header}"""Upload and deploy model.json on Vertex AI:
python3 vertex/deploy.py --project P --region R --image-uri IMAGE
Needs google-cloud-aiplatform and gcloud credentials. IMAGE is yours to give: no package serveplan read names a
Vertex vLLM image. It must run vLLM {version} (the flags were checked against it): e.g. {image} copied into
Artifact Registry (docker pull / tag / push). HF_TOKEN from this environment is passed on when set."""
import argparse
import json
import os
from pathlib import Path

from google.cloud import aiplatform

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--project", required=True)
p.add_argument("--region", required=True, help="a Vertex AI region with the machine type, e.g. us-central1")
p.add_argument("--image-uri", required=True, help="a vLLM {version} image Vertex can pull (Artifact Registry)")
args = p.parse_args()
cfg = json.loads((Path(__file__).parent / "model.json").read_text())
if os.environ.get("HF_TOKEN"):
    cfg["upload"]["serving_container_environment_variables"]["HF_TOKEN"] = os.environ["HF_TOKEN"]
aiplatform.init(project=args.project, location=args.region)
model = aiplatform.Model.upload(serving_container_image_uri=args.image_uri, **cfg["upload"])
endpoint = model.deploy(**cfg["deploy"])
print(f"deployed {{model.resource_name}} to {{endpoint.resource_name}}; send OpenAI requests with rawPredict")
'''


def vertex_files(dep: Deployment) -> tuple[dict[str, str], str | None]:
    gpu, n = dep.request.inventory.gpu.name, dep.candidate.gpus_per_replica
    why = _why_not(dep)
    machine = vertex_machine(gpu, n)
    if why is None and machine is None:
        why = no_machine("Vertex AI", VERTEX_MACHINES, gpu, n)
    if why is not None:
        return {}, f"vertex/: not written: {why}."
    return {"vertex/model.json": json.dumps(vertex_config(dep, machine), indent=2) + "\n",
            "vertex/deploy.py": _VERTEX_DEPLOY.format(header=header(dep), version=dep.adapter.version,
                                                      image=dep.adapter.image)}, None


def _why_not(dep: Deployment) -> str | None:
    if dep.local_checkpoint:
        return (f"the checkpoint {dep.checkpoint.id} is a local folder; a managed endpoint downloads a Hugging Face "
                "id (upload it there and plan with --checkpoint that id)")
    if dep.replica_spans_nodes:
        return "a replica spans nodes; these endpoints run one replica per machine"
    return None
