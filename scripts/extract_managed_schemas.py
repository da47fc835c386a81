"""Extract what tests/test_targets_managed.py checks the managed targets against, from the platforms' own
packages (no install: wheels read as zip files, Python sources read with ast, never imported).

    pip download --no-deps kserve==0.21.0 ray==2.60.0 sagemaker-core==2.27.0 botocore==1.44.8 \
        google-cloud-aiplatform==2.7.0 -d wheels/
    git show v0.20.0:config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml > llmisvc-crd.yaml  # kserve/kserve
    python scripts/extract_managed_schemas.py wheels/ llmisvc-crd.yaml tests/data/managed/

Writes:
  kserve-0.20.0-llminferenceservice.json.gz  the CRD's openAPIV3Schema per served version, descriptions removed
  ray-2.60.0-serve-llm.json                  LLMConfig / ModelLoadingConfig / LLMServingArgs fields, the
                                             deployment_config keys LLMConfig documents, accelerator names, exports
  sagemaker.json                             botocore's SageMaker shapes used + ProductionVariantInstanceType enum;
                                             sagemaker-core's vLLM DLC table (image_uri_config/vllm.json)
  aiplatform-2.7.0.json                      Model.upload / Model.deploy parameters, AcceleratorType names
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import sys
import zipfile
from pathlib import Path

import yaml


def _wheel(d: Path, prefix: str) -> zipfile.ZipFile:
    (w,) = [p for p in d.glob(f"{prefix}-*.whl")]
    return zipfile.ZipFile(w)


def _fields(tree: ast.Module, cls: str) -> list[str]:
    (c,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return [s.target.id for s in c.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            and not s.target.id.startswith("_")]


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k != "description"}
    if isinstance(o, list):
        return [_strip(x) for x in o]
    return o


def main(wheels: Path, crd: Path, out: Path) -> None:
    doc = yaml.safe_load(crd.read_text())
    schemas = {v["name"]: _strip(v["schema"]["openAPIV3Schema"]) for v in doc["spec"]["versions"] if v["served"]}
    with gzip.open(out / "kserve-0.20.0-llminferenceservice.json.gz", "wt") as f:
        json.dump({"source": "kserve/kserve v0.20.0 config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml",
                   "versions": schemas}, f, sort_keys=True, separators=(",", ":"))

    ray = _wheel(wheels, "ray")
    cfg = ast.parse(ray.read("ray/llm/_internal/serve/core/configs/llm_config.py"))
    builder = ast.parse(ray.read("ray/llm/_internal/serve/core/ingress/builder.py"))
    init = ast.parse(ray.read("ray/serve/llm/__init__.py"))
    exports = next(ast.literal_eval(n.value) for n in init.body if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", "") == "__all__")
    src = ray.read("ray/llm/_internal/serve/core/configs/llm_config.py").decode()
    dep_doc = src[src.index("deployment_config: Dict"):src.index("server_cls:")]
    accel = ast.parse(ray.read("ray/util/accelerators/accelerators.py"))
    names = [ast.literal_eval(n.value) for n in accel.body if isinstance(n, ast.Assign)
             and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)]
    version = ray.filelist[0].filename.split("/")[0]
    (json_out := out / "ray-2.60.0-serve-llm.json").write_text(json.dumps({
        "source": f"ray 2.60.0 wheel ({Path(ray.filename).name})",
        "exports": exports,
        "LLMConfig": _fields(cfg, "LLMConfig"), "ModelLoadingConfig": _fields(cfg, "ModelLoadingConfig"),
        "LLMServingArgs": _fields(builder, "LLMServingArgs"),
        "deployment_config": re.findall(r"`(\w+)`", dep_doc.split("Supported fields are:")[1]),
        "accelerator_types": names}, indent=1) + "\n")

    boto = _wheel(wheels, "botocore")
    svc = json.loads(gzip.decompress(boto.read("botocore/data/sagemaker/2017-07-24/service-2.json.gz")))
    shapes = {s: {"required": svc["shapes"][s].get("required", []),
                  "members": {m: v["shape"] for m, v in svc["shapes"][s]["members"].items()}}
              for s in ("CreateModelInput", "ContainerDefinition", "CreateEndpointConfigInput", "ProductionVariant",
                        "CreateEndpointInput")}
    core = _wheel(wheels, "sagemaker_core")
    (out / "sagemaker.json").write_text(json.dumps({
        "source": f"{Path(boto.filename).name} (data/sagemaker/2017-07-24/service-2.json.gz); "
                  f"{Path(core.filename).name} (sagemaker/core/image_uri_config/vllm.json)",
        "shapes": shapes, "instance_types": svc["shapes"]["ProductionVariantInstanceType"]["enum"],
        "vllm_images": json.loads(core.read("sagemaker/core/image_uri_config/vllm.json"))}, indent=1) + "\n")

    gca = _wheel(wheels, "google_cloud_aiplatform")
    models = ast.parse(gca.read("google/cloud/aiplatform/models.py"))
    (model,) = [n for n in models.body if isinstance(n, ast.ClassDef) and n.name == "Model"]
    params = {f.name: [a.arg for a in f.args.args + f.args.kwonlyargs if a.arg not in ("self", "cls")]
              for f in model.body if isinstance(f, ast.FunctionDef) and f.name in ("upload", "deploy")}
    acc = gca.read("google/cloud/aiplatform_v1/types/accelerator_type.py").decode()
    (out / "aiplatform-2.7.0.json").write_text(json.dumps({
        "source": f"{Path(gca.filename).name} (google/cloud/aiplatform/models.py, aiplatform_v1/types/accelerator_type.py)",
        "Model": params, "accelerator_types": re.findall(r"^    ([A-Z0-9_]+) = \d+$", acc, re.M)}, indent=1) + "\n")
    print(version, "->", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
