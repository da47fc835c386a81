"""The contract every deployment target keeps, for every engine and layout (as the adapters have theirs):
each artifact parses (YAML, shell), names only files the plan folder holds, serves the planned checkpoint and
exposes the planned ports; the README lists exactly what was written.
JSON parses and Python compiles; the managed targets (vLLM only) carry the planned replicas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import make_plan
from serveplan.render.targets import render_artifacts

LAYOUTS = [dict(tp=1, replicas=1), dict(tp=2, replicas=2), dict(tp=1, pp=2, replicas=1)]
ENGINES = ["vllm", "vllm-0.26.0", "sglang", "trtllm", "tgi"]  # engine[-version]; no version: the engine's default


def _plan(engine: str, layout: dict):
    from serveplan.render.engines.base import get_adapter

    p = make_plan(**layout)
    engine, _, version = engine.partition("-")
    eng = p.request.engine.model_copy(update={"name": engine, "version": version or get_adapter(engine).version})
    req = p.request.model_copy(update={"engine": eng})
    cand = p.winner.config.model_copy(update={"engine": engine})
    return p.model_copy(update={"request": req, "ranked": (p.winner.model_copy(update={"config": cand}),)})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(f"{k}{v}" for k, v in d.items()))
def test_target_contract(engine, layout, tmp_path):
    if engine == "tgi" and layout.get("pp", 1) > 1:
        pytest.skip("TGI has no pipeline parallelism (tests/test_engines.py: TestTGI.test_pipeline_parallel)")
    plan = _plan(engine, layout)
    files = render_artifacts(plan)
    cand = plan.winner.config
    # Every YAML parses into documents with a kind (k8s) or services (compose).
    for name, text in files.items():
        if name.endswith(".yaml"):
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
            assert docs, name
            if name.startswith("k8s/"):
                assert all(d.get("apiVersion") and d.get("kind") and d["metadata"].get("name") for d in docs), name
    # Every JSON parses and every Python script compiles (managed targets: sagemaker/, vertex/, ray/serve_llm.py).
    for name, text in files.items():
        if name.endswith(".json"):
            json.loads(text)
        if name.endswith(".py"):
            compile(text, name, "exec")
    # Managed targets carry the planned replicas (vLLM plans only; tests/test_targets_managed.py checks the rest).
    if "kserve/llminferenceservice.yaml" in files:
        assert yaml.safe_load(files["kserve/llminferenceservice.yaml"])["spec"]["replicas"] == cand.replicas
    if "ray/serve_llm.py" in files:
        assert f"'num_replicas': {cand.replicas}" in files["ray/serve_llm.py"]
    assert any(p.startswith("kserve/") for p in files) == (cand.engine == "vllm")
    # Every shell script is valid bash.
    bash = shutil.which("bash")
    for name, text in files.items():
        if name.endswith(".sh") and bash:
            script = tmp_path / name.replace("/", "_")
            script.write_text(text)
            r = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
            assert r.returncode == 0, (name, r.stderr)
    # launch.sh starts one process per replica on ports base..base+r-1, each serving the planned checkpoint.
    sh = files["launch.sh"]
    ports = sorted(int(p) for p in re.findall(r"--port[ =](\d+)", sh))
    assert ports == list(range(8000, 8000 + cand.replicas))
    assert sh.count("setsid ") == cand.replicas
    # Files the commands reference (engine option files) are in the folder; nginx fronts several replicas.
    for ref in set(re.findall(r"trtllm-options-r\d+\.yaml", sh)):
        assert ref in files
    assert ("nginx.conf" in files) == (cand.replicas > 1)
    compose = yaml.safe_load(files["docker-compose.yaml"])["services"]
    assert len([s for s in compose if s.startswith("replica-")]) == cand.replicas
    version = plan.request.engine.version  # the image follows engine.version
    assert all(s["image"].endswith(f":v{version}") or s["image"].endswith(f":{version}")
               for n, s in compose.items() if n.startswith("replica-"))
    # The README lists every file written, and nothing else.
    listed = set(re.findall(r"^- `([^`]+)`$", files["README.md"], re.M))
    assert listed == set(files) - {"README.md"}
