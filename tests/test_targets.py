"""Deployment artifacts: launch.sh, docker-compose.yaml, k8s/, ray/, nginx: they parse, say what they must, and are
written atomically."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from serveplan.render.targets import render_artifacts, write_artifacts
from serveplan.planner.result import Estimate, MemoryBreakdown, Plan, SearchStats
from serveplan.planner.spec import (SLO, Candidate, EngineConfig, Inventory, LengthDist, PlanRequest, SearchConfig,
                                    Traffic)
from serveplan.testing import factories

VERSIONS = {"vllm": "0.26.0", "sglang": "0.5.23", "trtllm": "1.2.1"}


def make_plan(engine: str = "vllm", *, nodes: int = 1, gpus_per_node: int = 8, **cand) -> Plan:
    """A Plan whose winner is Candidate(engine=engine, **cand), built from the pydantic types directly."""
    model, gpu = factories.model("llama-3.1-70b"), factories.gpu("h100-sxm")
    request = PlanRequest(model=model, inventory=Inventory(gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node),
                          traffic=Traffic(input_len=LengthDist(kind="fixed", mean=1024),
                                          output_len=LengthDist(kind="fixed", mean=256), rate_rps=2),
                          slo=SLO(), search=SearchConfig(), engine=EngineConfig(name=engine, version=VERSIONS[engine]))
    memory = MemoryBreakdown(capacity_gb=85.9, budget_gb=77.3, weights_gb=35, activations_gb=2, reserve_gb=1.5,
                             kv_cache_gb=38.8, kv_bytes_per_token=81920, kv_tokens=470000, max_concurrent_seqs=300,
                             fits=True)
    winner = Estimate(config=Candidate(engine=engine, **cand), memory=memory)
    stats = SearchStats(sampler="grid", space_size=10, memory_feasible=5, trials=5, examined_fraction=1.0, seconds=0.1)
    return Plan(request=request, ranked=(winner,), stats=stats)


def docs(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# ---------------------------------------------------------------------------------------------- single node
def test_single_replica_vllm(tmp_path):
    out = tmp_path / "deploy"
    paths = write_artifacts(make_plan(tp=4), out)
    names = {p.relative_to(out).as_posix() for p in paths}
    assert names == {"plan.yaml", "plan.json", "launch.sh", "docker-compose.yaml", "k8s/deployment.yaml", "README.md",
                     "kserve/llminferenceservice.yaml", "ray/serve_llm.py",  # 4 GPUs: no exact cloud machine
                     "gateway/litellm.yaml", "gateway/README.md"}  # one route, no prompt classes: no hook
    assert all(p.exists() for p in paths)
    sh = (out / "launch.sh").read_text()
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in sh and "trap" in sh and "kill -TERM --" in sh and "setsid vllm serve" in sh
    assert (out / "launch.sh").stat().st_mode & 0o111
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    svc = compose["services"]["replica-0"]
    assert svc["image"] == "vllm/vllm-openai:v0.26.0"
    assert svc["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1", "2", "3"]
    assert "/health" in " ".join(svc["healthcheck"]["test"]) and svc["ports"] == ["8000:8000"]
    assert "lb" not in compose["services"]


def test_bash_syntax(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    paths = write_artifacts(make_plan(tp=2, replicas=3), tmp_path / "a")
    paths += write_artifacts(make_plan(nodes=2, tp=8, pp=2), tmp_path / "b")
    for p in paths:
        if p.suffix == ".sh":
            subprocess.run(["bash", "-n", str(p)], check=True)


def test_replicas_disjoint_and_balanced(tmp_path):
    out = tmp_path / "d"
    write_artifacts(make_plan(tp=2, replicas=3), out, base_port=9000)
    sh = (out / "launch.sh").read_text()
    for i, gpus in enumerate(["0,1", "2,3", "4,5"]):
        assert f"CUDA_VISIBLE_DEVICES={gpus} " in sh and f"--port {9000 + i}" in sh
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    ids = [compose["services"][f"replica-{i}"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
           for i in range(3)]
    assert ids == [["0", "1"], ["2", "3"], ["4", "5"]]
    lb = compose["services"]["lb"]
    assert set(lb["depends_on"]) == {"replica-0", "replica-1", "replica-2"}
    assert "./nginx-compose.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    nginx = (out / "nginx.conf").read_text()
    assert "least_conn;" in nginx and all(f"server 127.0.0.1:{9000 + i}" in nginx for i in range(3))
    assert "server replica-2:9002" in (out / "nginx-compose.conf").read_text()
    assert nginx.count("{") == nginx.count("}")


def test_k8s_deployment(tmp_path):
    out = tmp_path / "d"
    write_artifacts(make_plan(tp=2, replicas=2), out)
    manifests = docs((out / "k8s" / "deployment.yaml").read_text())
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["PersistentVolumeClaim", "Deployment", "Service"]
    pvc, dep = manifests[0], manifests[1]
    assert dep["spec"]["replicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert c["command"] == ["vllm"] and c["args"][0] == "serve" and "--port" in c["args"]
    assert manifests[2]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    # The model volume: weights download once into HF_HOME on the claim, not into the container.
    assert {"name": "models", "mountPath": "/models"} in c["volumeMounts"]
    assert {"name": "HF_HOME", "value": "/models/hf"} in c["env"]
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "models")
    assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert int(pvc["spec"]["resources"]["requests"]["storage"].removesuffix("Gi")) >= 141 * 1.3 * 1e9 / 2**30


def test_trtllm_options_travel(tmp_path):
    out = tmp_path / "d"
    write_artifacts(make_plan("trtllm", tp=2, replicas=2), out)
    assert (out / "trtllm-options-r0.yaml").exists() and (out / "trtllm-options-r1.yaml").exists()
    compose = yaml.safe_load((out / "docker-compose.yaml").read_text())
    svc = compose["services"]["replica-1"]
    assert svc["image"].endswith(":1.2.1") and svc["entrypoint"] == ["trtllm-serve"]
    assert any("trtllm-options-r1.yaml" in v for v in svc["volumes"]) and svc["working_dir"]
    manifests = docs((out / "k8s" / "deployment.yaml").read_text())
    assert [m["kind"] for m in manifests] == ["PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"]
    assert "trtllm-options-r0.yaml" in manifests[1]["data"]


def test_sglang(tmp_path):
    out = tmp_path / "d"
    write_artifacts(make_plan("sglang", tp=4, replicas=2), out)
    assert "python -m sglang.launch_server" in (out / "launch.sh").read_text()
    assert yaml.safe_load((out / "docker-compose.yaml").read_text())["services"]["replica-0"]["image"] \
        == "lmsysorg/sglang:v0.5.23"


# ---------------------------------------------------------------------------------------------- multi node
def test_multinode_vllm(tmp_path):
    out = tmp_path / "d"
    names = {p.relative_to(out).as_posix() for p in write_artifacts(make_plan(nodes=2, tp=8, pp=2), out)}
    assert names == {"plan.yaml", "plan.json", "k8s/leaderworkerset.yaml", "ray/head.sh", "ray/worker.sh",
                     "ray/serve.sh", "ray/serve_llm.py", "README.md"}
    assert "not written" in (out / "README.md").read_text()
    assert "gateway/: not written" in (out / "README.md").read_text()  # no local replica ports to route to
    serve = (out / "ray" / "serve.sh").read_text()
    assert "--distributed-executor-backend ray" in serve and "--pipeline-parallel-size 2" in serve
    assert "ray start --head" in (out / "ray" / "head.sh").read_text()
    assert "HEAD_IP" in (out / "ray" / "worker.sh").read_text()
    pvc, lws, svc = docs((out / "k8s" / "leaderworkerset.yaml").read_text())
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert lws["kind"] == "LeaderWorkerSet" and lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert "--distributed-executor-backend ray" in leader["command"][-1]
    assert leader["readinessProbe"]["httpGet"]["path"] == "/health"
    assert svc["spec"]["selector"]["role"] == "leader"


def test_multinode_inventory_single_node_plan(tmp_path):
    """A plan that fits one node of a 2-node inventory: local artifacts plus ray/ for the cluster."""
    out = tmp_path / "d"
    names = {p.relative_to(out).as_posix() for p in write_artifacts(make_plan(nodes=2, tp=8), out)}
    assert {"launch.sh", "docker-compose.yaml", "k8s/deployment.yaml", "ray/serve.sh"} <= names
    assert "--distributed-executor-backend" not in (out / "launch.sh").read_text()


# ---------------------------------------------------------------------------------------------- kubeconform
def test_kubeconform(tmp_path):
    exe = shutil.which("kubeconform")
    if exe is None:
        pytest.skip("kubeconform not installed")
    for i, plan in enumerate([make_plan(tp=2, replicas=2), make_plan("trtllm", tp=1), make_plan(nodes=2, tp=8, pp=2)]):
        out = tmp_path / str(i)
        write_artifacts(plan, out)
        for f in (out / "k8s").glob("*.yaml"):
            r = subprocess.run([exe, "-strict", "-summary", "-ignore-missing-schemas", str(f)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------- atomicity
def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_atomic_on_write_failure(tmp_path, monkeypatch):
    """A failure while writing leaves the old folder exactly as it was and no temporary folder."""
    import builtins

    out = tmp_path / "deploy"
    out.mkdir()
    (out / "launch.sh").write_text("old launch")
    before = _snapshot(out)
    real_open, calls = builtins.open, {"n": 0}

    def flaky(path, mode="r", *a, **kw):
        if "w" in mode and ".deploy.new-" in str(path):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", flaky)
    with pytest.raises(Exception, match="No space left"):
        write_artifacts(make_plan(tp=2, replicas=2), out)
    monkeypatch.setattr(builtins, "open", real_open)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]  # no temp folder left behind


def test_atomic_on_swap_failure(tmp_path, monkeypatch):
    """Failing when the new folder takes the old one's place restores the old folder (and what it carried)."""
    import serveplan.fileio as fileio

    out = tmp_path / "deploy"
    (out / "checkpoints" / "m-awq").mkdir(parents=True)
    (out / "checkpoints" / "m-awq" / "config.json").write_text("{}")
    (out / "launch.sh").write_text("old launch")
    before = _snapshot(out)
    real = fileio.os.replace

    def flaky(src, dst):
        if ".new-" in str(src) and Path(dst) == out:
            raise OSError("rename failed")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", flaky)
    with pytest.raises(Exception, match="rename failed"):
        write_artifacts(make_plan(tp=2, replicas=2), out)
    monkeypatch.setattr(fileio.os, "replace", real)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_atomic_new_outdir_not_created_on_failure(tmp_path, monkeypatch):
    import serveplan.fileio as fileio

    def boom(*a, **kw):
        raise OSError("nope")

    monkeypatch.setattr(fileio.os, "fsync", boom)
    with pytest.raises(Exception, match="nope"):
        write_artifacts(make_plan(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_replan_leaves_no_stale_file_and_keeps_checkpoints(tmp_path):
    """Re-planning into a used folder: the earlier plan's files are gone (nginx.conf of a 2-replica plan, the
    TRT-LLM options file, a stray file), a quantize step's checkpoints/ stays."""
    out = tmp_path / "d"
    write_artifacts(make_plan("trtllm", tp=2, replicas=2), out)
    assert (out / "nginx.conf").exists() and (out / "trtllm-options-r1.yaml").exists()
    (out / "stray.txt").write_text("x")
    (out / "checkpoints" / "m").mkdir(parents=True)
    (out / "checkpoints" / "m" / "config.json").write_text("{}")
    paths = write_artifacts(make_plan(tp=4), out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {p.relative_to(out).as_posix() for p in paths} | {"checkpoints/m/config.json"}


def test_overwrite_existing(tmp_path):
    out = tmp_path / "d"
    write_artifacts(make_plan(tp=2, replicas=2), out)
    write_artifacts(make_plan(tp=4), out)
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in (out / "launch.sh").read_text()


def test_render_is_pure():
    a = render_artifacts(make_plan(tp=2, replicas=2), model="/models/llama")
    assert "/models/llama" in a["launch.sh"] and a == render_artifacts(make_plan(tp=2, replicas=2), model="/models/llama")
