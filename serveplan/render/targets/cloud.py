"""What the managed targets (KServe, Ray Serve LLM, SageMaker, Vertex AI) share: the vLLM options of the winner
without what each platform sets itself (model, host, port, name), and the tables that map the plan's GPU and
GPUs per replica onto a platform's machine. Every table lives here, once; tests/test_targets_managed.py checks
each name against the platform's own package (see docs there).

Machine tables list only exact matches: the machine has exactly the replica's GPUs (TP x PP), of the plan's GPU
model. Anything else gets no file and one sentence in the plan folder's README.
"""

from __future__ import annotations

from dataclasses import dataclass

from serveplan.render.targets.common import Deployment

# Flags each platform sets itself: the checkpoint (positional), where the server listens and the served name.
PLATFORM_FLAGS = ("--host", "--port", "--served-model-name", "--distributed-executor-backend")


@dataclass(frozen=True)
class Machine:
    """One machine type that carries exactly `count` GPUs of one catalog GPU."""

    name: str
    count: int
    accelerator: str = ""  # Vertex AI: the AcceleratorType enum name


# Amazon SageMaker instance types (names checked against botocore's ProductionVariantInstanceType enum):
# catalog GPU -> {GPUs per instance: instance type}. GPU counts are AWS's published instance shapes.
SAGEMAKER_INSTANCES: dict[str, dict[int, str]] = {
    "h100-sxm": {1: "ml.p5.4xlarge", 8: "ml.p5.48xlarge"},
    "h200": {8: "ml.p5e.48xlarge"},
    "b200": {8: "ml.p6-b200.48xlarge"},
    "a100-80gb-sxm": {8: "ml.p4de.24xlarge"},
    "a100-40gb-sxm": {8: "ml.p4d.24xlarge"},
    "a10g": {1: "ml.g5.2xlarge", 4: "ml.g5.12xlarge", 8: "ml.g5.48xlarge"},
    "l4": {1: "ml.g6.2xlarge", 4: "ml.g6.12xlarge", 8: "ml.g6.48xlarge"},
    "l40s": {1: "ml.g6e.2xlarge", 4: "ml.g6e.12xlarge", 8: "ml.g6e.48xlarge"},
}

# Google Vertex AI machine types and accelerator names (accelerator names checked against
# google-cloud-aiplatform's AcceleratorType enum): catalog GPU -> {GPUs per machine: (machine, accelerator)}.
VERTEX_MACHINES: dict[str, dict[int, tuple[str, str]]] = {
    "h100-sxm": {8: ("a3-highgpu-8g", "NVIDIA_H100_80GB")},
    "h200": {8: ("a3-ultragpu-8g", "NVIDIA_H200_141GB")},
    "b200": {8: ("a4-highgpu-8g", "NVIDIA_B200")},
    "a100-80gb-sxm": {n: (f"a2-ultragpu-{n}g", "NVIDIA_A100_80GB") for n in (1, 2, 4, 8)},
    "a100-40gb-sxm": {**{n: (f"a2-highgpu-{n}g", "NVIDIA_TESLA_A100") for n in (1, 2, 4, 8)},
                      16: ("a2-megagpu-16g", "NVIDIA_TESLA_A100")},
    "l4": {1: ("g2-standard-12", "NVIDIA_L4"), 2: ("g2-standard-24", "NVIDIA_L4"),
           4: ("g2-standard-48", "NVIDIA_L4"), 8: ("g2-standard-96", "NVIDIA_L4")},
}

# The AWS vLLM Deep Learning Container for SageMaker, per vLLM version: (tag, {region: ECR registry account}),
# copied from sagemaker-core 2.27.0 (sagemaker/core/image_uri_config/vllm.json, tag as image_uris.retrieve forms it:
# <tag_prefix>-gpu-<py_version>-<container_version>). A vLLM version not listed gets no SageMaker endpoint.
SAGEMAKER_VLLM_IMAGES: dict[str, tuple[str, dict[str, str]]] = {
    "0.26.0": ("0.26.0-gpu-py312-cu130-ubuntu22.04-sagemaker", {
        "af-south-1": "626614931356", "ap-east-1": "871362719292", "ap-east-2": "975050140332",
        "ap-northeast-1": "763104351884", "ap-northeast-2": "763104351884", "ap-northeast-3": "364406365360",
        "ap-south-1": "763104351884", "ap-south-2": "772153158452", "ap-southeast-1": "763104351884",
        "ap-southeast-2": "763104351884", "ap-southeast-3": "907027046896", "ap-southeast-4": "457447274322",
        "ap-southeast-5": "550225433462", "ap-southeast-6": "633930458069", "ap-southeast-7": "590183813437",
        "ca-central-1": "763104351884", "ca-west-1": "204538143572", "eu-central-1": "763104351884",
        "eu-central-2": "380420809688", "eu-north-1": "763104351884", "eu-south-1": "692866216735",
        "eu-south-2": "503227376785", "eu-west-1": "763104351884", "eu-west-2": "763104351884",
        "eu-west-3": "763104351884", "il-central-1": "780543022126", "me-central-1": "914824155844",
        "me-south-1": "217643126080", "me-west-1": "124382933778", "mx-central-1": "637423239942",
        "sa-east-1": "763104351884", "us-east-1": "763104351884", "us-east-2": "763104351884",
        "us-west-1": "763104351884", "us-west-2": "763104351884",
    }),
}

# Ray's accelerator_type names (ray.util.accelerators.accelerators in ray 2.60.0) for catalog GPUs.
RAY_ACCELERATORS: dict[str, str] = {
    "h100-sxm": "H100", "h100-pcie": "H100", "h200": "H200", "b200": "B200", "a100-80gb-sxm": "A100-80G",
    "a100-80gb-pcie": "A100-80G", "a100-40gb-sxm": "A100-40G", "a100-40gb-pcie": "A100-40G", "a10g": "A10G",
    "l4": "L4", "l40s": "L40S",
}


def sagemaker_instance(gpu: str, count: int) -> Machine | None:
    name = SAGEMAKER_INSTANCES.get(gpu, {}).get(count)
    return Machine(name, count) if name else None


def vertex_machine(gpu: str, count: int) -> Machine | None:
    hit = VERTEX_MACHINES.get(gpu, {}).get(count)
    return Machine(hit[0], count, hit[1]) if hit else None


def no_machine(platform: str, table: dict, gpu: str, count: int) -> str:
    """One sentence: why no machine of `platform` carries this replica."""
    have = table.get(gpu)
    if not have:
        return f"{platform} has no machine type with {gpu} GPUs in serveplan's table"
    sizes = ", ".join(str(n) for n in sorted(have))
    return (f"no {platform} machine type has exactly {count} {gpu} GPU(s) (one replica, TP x PP = {count}); "
            f"those in serveplan's table carry {sizes}")


def vllm_options(dep: Deployment) -> list[tuple[str, str | None]]:
    """The winner's vLLM options as (flag, value or None for a bare flag), in the adapter's order, less the
    checkpoint and PLATFORM_FLAGS. Rendered and validated by the adapter at the plan's vLLM version."""
    x = dep.render(0, list(range(dep.candidate.gpus_per_replica)), 8000, container=True)
    flags = dep.adapter.schema["flags"]  # type: ignore[attr-defined]
    argv, out, i = x.argv[3:], [], 0  # after `vllm serve MODEL`
    while i < len(argv):
        flag = argv[i]
        takes = flags[flag]["takes_value"]
        value = argv[i + 1] if takes else None
        i += 2 if takes else 1
        if flag not in PLATFORM_FLAGS:
            out.append((flag, value))
    return out


def vllm_env(dep: Deployment) -> dict[str, str]:
    """The replica's environment less CUDA_VISIBLE_DEVICES (each platform assigns GPUs)."""
    x = dep.render(0, list(range(dep.candidate.gpus_per_replica)), 8000, container=True)
    return {k: v for k, v in sorted(x.env.items()) if k != "CUDA_VISIBLE_DEVICES"}


def flat_args(options: list[tuple[str, str | None]]) -> list[str]:
    return [t for flag, value in options for t in ((flag,) if value is None else (flag, value))]
