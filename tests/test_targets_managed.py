"""The managed targets (kserve/, ray/serve_llm.py, sagemaker/, vertex/) against the platforms' own definitions,
extracted from their packages by scripts/extract_managed_schemas.py into tests/data/managed/ (the versions are in
each file's name and "source"):

  KServe LLMInferenceService   the CRD's openAPIV3Schema (KServe v0.20.0), strictly: unknown fields are errors,
                               as `kubectl apply --validate=strict` makes them (CEL rules are not evaluated)
  Ray Serve LLM                field names of LLMConfig / ModelLoadingConfig / deployment_config and the
                               accelerator names of the ray 2.60.0 wheel; engine_kwargs keys against the vLLM schema
  SageMaker                    botocore 1.44.8's request shapes and instance-type enum; the image table against
                               sagemaker-core 2.27.0's image_uri_config/vllm.json
  Vertex AI                    Model.upload / Model.deploy parameters and AcceleratorType names of
                               google-cloud-aiplatform 2.7.0
The vLLM flags each one carries are checked against the plan's vLLM version's flag schema."""

from __future__ import annotations

import ast
import gzip
import json
import py_compile
import re
from pathlib import Path

import pytest
import yaml

from test_targets import make_plan
from test_targets_contract import _plan
from serveplan.render.targets import render_artifacts
from serveplan.render.targets.cloud import (RAY_ACCELERATORS, SAGEMAKER_INSTANCES, SAGEMAKER_VLLM_IMAGES,
                                            VERTEX_MACHINES)
from serveplan.render.targets.common import resolve

DATA = Path(__file__).parent / "data" / "managed"


def _load(name: str) -> dict:
    path = DATA / name
    return json.loads(gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_text())


# ------------------------------------------------------------------------------- a strict structural validator
def _check(v, s: dict, path: str, errs: list[str]) -> None:
    if path == ".metadata":  # ObjectMeta: the API server checks it, the CRD schema leaves it open
        return
    if "anyOf" in s and not s.get("x-kubernetes-int-or-string") and all(_errors(v, alt) for alt in s["anyOf"]):
        errs.append(f"{path}: matches none of anyOf")
    if s.get("x-kubernetes-int-or-string"):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            errs.append(f"{path}: not int-or-string: {v!r}")
        return
    t = s.get("type")
    if t == "object":
        if not isinstance(v, dict):
            errs.append(f"{path}: not an object")
            return
        props = s.get("properties", {})
        for k in s.get("required", []):
            if k not in v:
                errs.append(f"{path}: missing required {k}")
        for k, x in v.items():
            if k in props:
                _check(x, props[k], f"{path}.{k}", errs)
            elif isinstance(s.get("additionalProperties"), dict):
                _check(x, s["additionalProperties"], f"{path}.{k}", errs)
            elif not s.get("x-kubernetes-preserve-unknown-fields"):
                errs.append(f"{path}: unknown field {k}")
    elif t == "array":
        if not isinstance(v, list):
            errs.append(f"{path}: not an array")
            return
        for i, x in enumerate(v):
            _check(x, s.get("items", {}), f"{path}[{i}]", errs)
    elif t == "string":
        if not isinstance(v, str):
            errs.append(f"{path}: not a string: {v!r}")
        elif "enum" in s and v not in s["enum"]:
            errs.append(f"{path}: {v!r} not in {s['enum']}")
        elif "pattern" in s and not re.search(s["pattern"], v):
            errs.append(f"{path}: {v!r} does not match {s['pattern']}")
    elif t == "integer":
        if isinstance(v, bool) or not isinstance(v, int):
            errs.append(f"{path}: not an integer: {v!r}")
        elif v < s.get("minimum", v) or v > s.get("maximum", v):
            errs.append(f"{path}: {v} out of bounds")
    elif t == "boolean" and not isinstance(v, bool):
        errs.append(f"{path}: not a boolean")


def _errors(v, s: dict) -> list[str]:
    errs: list[str] = []
    _check(v, s, "", errs)
    return errs


def test_validator_catches_what_it_must():
    schema = _load("kserve-0.20.0-llminferenceservice.json.gz")["versions"]["v1alpha1"]
    good = yaml.safe_load(render_artifacts(make_plan(tp=8))["kserve/llminferenceservice.yaml"])
    assert _errors(good, schema) == []
    typo = json.loads(json.dumps(good))
    typo["spec"]["paralelism"] = typo["spec"].pop("parallelism")
    assert any("unknown field paralelism" in e for e in _errors(typo, schema))
    bad = json.loads(json.dumps(good))
    bad["spec"]["parallelism"]["tensor"] = 0
    bad["spec"]["model"].pop("uri")
    errs = _errors(bad, schema)
    assert any("out of bounds" in e for e in errs) and any("missing required uri" in e for e in errs)


# ------------------------------------------------------------------------------------------------------ KServe
CASES = [dict(tp=8), dict(tp=2, replicas=2), dict(tp=1, pp=2), dict(tp=4, replicas=2)]


@pytest.mark.parametrize("engine", ["vllm", "vllm-0.26.0"])  # the default (0.33.0) and the measured one
@pytest.mark.parametrize("layout", CASES, ids=str)
def test_kserve_against_crd(engine, layout):
    plan = _plan(engine, layout)
    doc = yaml.safe_load(render_artifacts(plan)["kserve/llminferenceservice.yaml"])
    crd = _load("kserve-0.20.0-llminferenceservice.json.gz")["versions"]
    assert doc["apiVersion"] == "serving.kserve.io/v1alpha1" and doc["kind"] == "LLMInferenceService"
    for version in ("v1alpha1", "v1alpha2"):  # KServe 0.20 serves both and stores v1alpha2
        assert _errors(doc, crd[version]) == [], version
    c, spec = plan.winner.config, doc["spec"]
    dep = resolve(plan, None, 8000)
    assert spec["replicas"] == c.replicas and spec["parallelism"] == {"tensor": c.tp}
    assert spec["model"] == {"uri": f"hf://{dep.checkpoint.id}", "name": dep.served_model_name}
    (main,) = spec["template"]["containers"]
    assert main["name"] == "main" and main["image"] == dep.adapter.image
    assert main["resources"]["limits"]["nvidia.com/gpu"] == c.tp * c.pp
    # KServe's template adds the model, name, port and TP; the rest are the adapter's flags, valid at its version.
    args = main["args"]
    assert not {"--port", "--host", "--served-model-name", "--tensor-parallel-size"} & set(args)
    assert args[args.index("--pipeline-parallel-size") + 1] == str(c.pp)
    assert dep.adapter.validate(["vllm", "serve", "/mnt/models", "--tensor-parallel-size", str(c.tp), *args]) == []


def test_kserve_local_checkpoint_reads_the_model_volume():
    plan = make_plan(tp=1, weight_dtype="awq")
    files = render_artifacts(plan, model="./my-awq")
    doc = yaml.safe_load(files["kserve/llminferenceservice.yaml"])
    assert doc["spec"]["model"]["uri"] == "pvc://serveplan-vllm-llama-3-1-70b-instruct-models/my-awq"
    assert "pvc://" in doc["spec"]["model"]["uri"] and "k8s/deployment.yaml" in files


def test_kserve_not_for_replicas_across_nodes():
    files = render_artifacts(make_plan(nodes=2, tp=8, pp=2))
    assert "kserve/llminferenceservice.yaml" not in files
    assert "kserve/: not written: a replica spans nodes" in files["README.md"]


# ----------------------------------------------------------------------------------------------- Ray Serve LLM
def _llm_config(text: str) -> dict:
    tree = ast.parse(text)
    call = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "llm_config")
    assert call.func.id == "LLMConfig" and call.keywords[0].arg is None  # LLMConfig(**{...})
    return ast.literal_eval(call.keywords[0].value)


@pytest.mark.parametrize("engine", ["vllm", "vllm-0.26.0"])  # the default (0.33.0) and the measured one
@pytest.mark.parametrize("layout", CASES + [dict(nodes=2, tp=8, pp=2)], ids=str)
def test_ray_serve_llm(engine, layout, tmp_path):
    layout = dict(layout)
    nodes = layout.pop("nodes", 1)
    plan = _plan(engine, layout)
    if nodes > 1:  # a replica across two nodes: Ray places its workers
        inv = plan.request.inventory.model_copy(update={"nodes": nodes})
        plan = plan.model_copy(update={"request": plan.request.model_copy(update={"inventory": inv})})
    text = render_artifacts(plan)["ray/serve_llm.py"]
    script = tmp_path / "serve_llm.py"
    script.write_text(text)
    py_compile.compile(str(script), doraise=True)
    ray = _load("ray-2.60.0-serve-llm.json")
    imported = {a.name for n in ast.parse(text).body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported <= set(ray["exports"])
    cfg = _llm_config(text)
    assert set(cfg) <= set(ray["LLMConfig"])
    assert set(cfg["model_loading_config"]) <= set(ray["ModelLoadingConfig"])
    assert set(cfg["deployment_config"]) <= set(ray["deployment_config"])
    assert cfg["accelerator_type"] in ray["accelerator_types"]
    assert 'build_openai_app({"llm_configs": [llm_config]})' in text and "llm_configs" in ray["LLMServingArgs"]
    c, dep = plan.winner.config, resolve(plan, None, 8000)
    assert cfg["deployment_config"]["num_replicas"] == c.replicas
    kw = cfg["engine_kwargs"]
    assert kw["tensor_parallel_size"] == c.tp and kw["pipeline_parallel_size"] == c.pp
    flags = dep.adapter.schema["flags"]
    for key, value in kw.items():  # every key is an engine argument of the plan's vLLM version
        assert f"--{key.replace('_', '-')}" in flags, key
        assert not isinstance(value, str) or flags[f"--{key.replace('_', '-')}"]["takes_value"]
    assert not {"host", "port", "served_model_name", "distributed_executor_backend"} & set(kw)


def test_ray_accelerator_names_are_rays():
    names = set(_load("ray-2.60.0-serve-llm.json")["accelerator_types"])
    assert set(RAY_ACCELERATORS.values()) <= names


# ------------------------------------------------------------------------------------------ SageMaker / Vertex
def test_machine_tables_against_the_sdks():
    sm = _load("sagemaker.json")
    assert {i for m in SAGEMAKER_INSTANCES.values() for i in m.values()} <= set(sm["instance_types"])
    gca = _load("aiplatform-2.7.0.json")
    assert {a for m in VERTEX_MACHINES.values() for _, a in m.values()} <= set(gca["accelerator_types"])
    # Every GPU named is a catalog GPU, and no machine type is listed twice.
    from serveplan.testing import factories

    for gpu in {*SAGEMAKER_INSTANCES, *VERTEX_MACHINES, *RAY_ACCELERATORS}:
        assert factories.gpu(gpu).name == gpu
    for table in (SAGEMAKER_INSTANCES, {g: {n: m for n, (m, _) in t.items()} for g, t in VERTEX_MACHINES.items()}):
        machines = [m for t in table.values() for m in t.values()]
        assert len(machines) == len(set(machines))


def test_sagemaker_image_table_is_sagemaker_cores():
    upstream = _load("sagemaker.json")["vllm_images"]["inference"]["versions"]
    for version, (tag, registries) in SAGEMAKER_VLLM_IMAGES.items():
        u = upstream[version]
        assert tag == f"{u['tag_prefix']}-gpu-{u['py_versions'][0]}-{u['container_version']['gpu']}"
        assert registries == u["registries"]


def _shape_ok(body: dict, shape: str, shapes: dict) -> None:
    s = shapes[shape]
    assert set(s["required"]) <= set(body), (shape, s["required"])
    assert set(body) <= set(s["members"]), (shape, set(body) - set(s["members"]))


def test_sagemaker_endpoint(tmp_path):
    plan = make_plan(tp=8, replicas=1)
    files = render_artifacts(plan)
    req = json.loads(files["sagemaker/endpoint.json"])
    shapes = _load("sagemaker.json")["shapes"]
    # deploy.py adds the image and the role; with them every request is botocore's shape.
    req["CreateModel"]["PrimaryContainer"]["Image"] = "image"
    req["CreateModel"]["ExecutionRoleArn"] = "arn"
    _shape_ok(req["CreateModel"], "CreateModelInput", shapes)
    _shape_ok(req["CreateModel"]["PrimaryContainer"], "ContainerDefinition", shapes)
    _shape_ok(req["CreateEndpointConfig"], "CreateEndpointConfigInput", shapes)
    (variant,) = req["CreateEndpointConfig"]["ProductionVariants"]
    _shape_ok(variant, "ProductionVariant", shapes)
    _shape_ok(req["CreateEndpoint"], "CreateEndpointInput", shapes)
    assert variant["InstanceType"] == "ml.p5.48xlarge" and variant["InitialInstanceCount"] == 1
    # The DLC turns SM_VLLM_<FLAG> into --flag (true: bare): the command it makes is valid vLLM 0.26.0.
    env = req["CreateModel"]["PrimaryContainer"]["Environment"]
    argv = ["vllm", "serve", env.pop("SM_VLLM_MODEL")]
    for k, v in env.items():
        if k.startswith("SM_VLLM_"):
            argv += [f"--{k[8:].lower().replace('_', '-')}"] + ([] if v == "true" else [v])
    dep = resolve(plan, None, 8000)
    assert dep.adapter.validate(argv) == []
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8" and "--port" not in argv
    for name in ("sagemaker/deploy.py", "vertex/deploy.py"):
        p = tmp_path / name.replace("/", "_")
        p.write_text(files[name])
        py_compile.compile(str(p), doraise=True)
    assert "ml.p5.48xlarge" not in files["sagemaker/deploy.py"]  # the instance lives in endpoint.json only


def test_vertex_model():
    plan = make_plan(tp=8)
    cfg = json.loads(render_artifacts(plan)["vertex/model.json"])
    gca = _load("aiplatform-2.7.0.json")["Model"]
    assert set(cfg["upload"]) | {"serving_container_image_uri"} <= set(gca["upload"])
    assert set(cfg["deploy"]) <= set(gca["deploy"])
    assert cfg["deploy"] == {"machine_type": "a3-highgpu-8g", "accelerator_type": "NVIDIA_H100_80GB",
                             "accelerator_count": 8, "min_replica_count": 1, "max_replica_count": 1}
    up = cfg["upload"]
    argv = up["serving_container_command"] + up["serving_container_args"]
    assert resolve(plan, None, 8000).adapter.validate(argv) == []
    assert argv[argv.index("--port") + 1] == str(up["serving_container_ports"][0])


@pytest.mark.parametrize("gpu,count,sagemaker,vertex", [
    ("h100-sxm", 8, "ml.p5.48xlarge", "a3-highgpu-8g"), ("h100-sxm", 1, "ml.p5.4xlarge", None),
    ("a100-80gb-sxm", 8, "ml.p4de.24xlarge", "a2-ultragpu-8g"), ("a100-80gb-sxm", 2, None, "a2-ultragpu-2g"),
    ("l4", 1, "ml.g6.2xlarge", "g2-standard-12"), ("a10g", 4, "ml.g5.12xlarge", None),
    ("h100-pcie", 8, None, None)])
def test_machine_choice(gpu, count, sagemaker, vertex):
    from serveplan.render.targets.cloud import sagemaker_instance, vertex_machine

    assert getattr(sagemaker_instance(gpu, count), "name", None) == sagemaker
    assert getattr(vertex_machine(gpu, count), "name", None) == vertex


def test_not_written_with_one_sentence_each():
    files = render_artifacts(make_plan(tp=2, replicas=2))  # 2 H100 per replica: no exact machine on either
    assert not any(p.startswith(("sagemaker/", "vertex/")) for p in files)
    readme = files["README.md"]
    assert "sagemaker/: not written: no SageMaker machine type has exactly 2 h100-sxm GPU(s)" in readme
    assert "vertex/: not written: no Vertex AI machine type has exactly 2 h100-sxm GPU(s)" in readme
    local = render_artifacts(make_plan(tp=8, weight_dtype="awq"), model="./my-awq")
    assert "sagemaker/: not written: the checkpoint ./my-awq is a local folder" in local["README.md"]
    v033 = render_artifacts(_plan("vllm", dict(tp=8)))  # the default version, 0.33.0: no SageMaker image
    assert ("sagemaker/: not written: the AWS vLLM DLC table (sagemaker-core 2.27.0) has no image for vLLM 0.33.0; "
            "plan with engine.version=0.26.0 for a SageMaker endpoint.") in v033["README.md"]
    assert "vertex/model.json" in v033 and "sagemaker/endpoint.json" not in v033
    assert "sagemaker/endpoint.json" in render_artifacts(_plan("vllm-0.26.0", dict(tp=8)))


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_other_engines_get_one_sentence(engine):
    files = render_artifacts(_plan(engine, dict(tp=8)))
    assert not any(p.startswith(("kserve/", "sagemaker/", "vertex/")) or p == "ray/serve_llm.py" for p in files)
    assert f"rendered for vLLM plans only, and this plan serves with {engine}" in files["README.md"]
