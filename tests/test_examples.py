"""examples/: each folder's run.sh (the parts that need no GPU) run as written, and what it wrote checked.

consumer-gpu-4bit  the plan picks AWQ weights on the one RTX 4090; `plan launch` starts it on the fake engine
                   (tests/bin/vllm) and `bench --concurrency 10` holds ten requests in flight for a few seconds
13b-tp2-mixed      the traffic file is a mixture of three length classes; the plan and the estimate are TP=2; the
                   mixed bench's by-length rows are exactly those classes
fleet              `plan fleet -o` (one run, ~25 s, shared): the gateway routes every model to its own Service, and
                   `auto` by prompt class; every model folder carries its autoscalers and its own gateway

Each script runs once per module (module fixtures); the tests only read what it wrote and printed. The fleet's
script starts with the module and runs while the other two do (they mostly wait on the fake engine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import free_base_port, group_alive
from serveplan.render.targets.common import dns_name

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _env(**env: str) -> dict[str, str]:
    e = {**os.environ, "PYTHON": sys.executable, "COLUMNS": "200", "FAKE_ENGINE_ITL_MS": "2",
         "FAKE_ENGINE_LIFETIME_S": "120", **env}
    for k in ("FAKE_ENGINE_MODE", "FAKE_ENGINE_CRASH_AFTER_S", "FAKE_ENGINE_MAX_CONCURRENCY", "CUDA_VISIBLE_DEVICES",
              "SERVEPLAN_FAKE_GPUS"):
        e.pop(k, None)
    return e


def start_example(name: str, out: Path, log: Path, **env: str) -> subprocess.Popen:
    """examples/<name>/run.sh OUT from the repository root with this interpreter, its output into `log`."""
    with log.open("wb") as f:
        return subprocess.Popen(["bash", str(EXAMPLES / name / "run.sh"), str(out)], cwd=ROOT, env=_env(**env),
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop_example(proc: subprocess.Popen) -> int:
    """SIGTERM to the script's process group (its EXIT trap stops a launch; the engines have their own groups and a
    lifetime), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def finish_example(name: str, proc: subprocess.Popen, log: Path) -> str:
    """Wait for the script; its output (stdout and stderr together)."""
    try:
        rc = proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        rc = stop_example(proc)
    text = log.read_text()
    assert rc == 0, f"{name}/run.sh exited {rc}\n{text[-8000:]}"
    return text


def run_example(name: str, out: Path, **env: str) -> str:
    log = out.parent / f"{out.name}.log"
    return finish_example(name, start_example(name, out, log, **env), log)


def winner(plan_dir: Path) -> dict:
    return json.loads((plan_dir / "plan.json").read_text())["candidates"][0]


def litellm_routes(folder: Path) -> list[tuple[str, str]]:
    cfg = yaml.safe_load((folder / "gateway" / "litellm.yaml").read_text())
    return [(m["model_name"], m["litellm_params"]["api_base"]) for m in cfg["model_list"]]


# ----------------------------------------------------------------------------------------- consumer-gpu-4bit
@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    out = tmp_path_factory.mktemp("consumer")
    port = free_base_port(1)
    return out, run_example("consumer-gpu-4bit", out, PORT=str(port), DURATION="3"), port


def test_consumer_plan_is_awq_on_one_gpu(consumer):
    out, stdout, _ = consumer
    w = winner(out / "plan")
    c = w["config"]
    assert c["weight_dtype"] == "awq" and c["tp"] * c["pp"] * c["replicas"] == 1
    assert w["checkpoint"]["format"] == "awq" and w["meets_slo"]
    plan = yaml.safe_load((out / "plan" / "plan.yaml").read_text())["request"]
    assert plan["inventory"]["gpu"]["name"] == "rtx-4090" and plan["inventory"]["gpus_per_node"] == 1
    assert plan["traffic"]["arrival"] == "closed" and plan["traffic"]["concurrency"] == 10
    # the compare step ran, 4 bits against the planner's unrestricted pick (8 bits)
    assert "A: TP1 awq" in stdout and "B: TP1 int8" in stdout


def test_consumer_bench_keeps_ten_users_in_flight(consumer):
    out, _, port = consumer
    doc = json.loads((out / "bench.json").read_text())
    assert doc["args"]["mode"] == "closed" and doc["args"]["concurrency"] == 10
    assert doc["args"]["urls"] == [f"http://127.0.0.1:{port}"]
    s = doc["summary"]
    assert s["max_in_flight"] == 10 and s["completed"] >= 10 and s["failed"] == 0
    # the script's trap stopped the launch: nothing of it is left running
    run = json.loads((out / "plan" / "run.json").read_text())
    assert run["status"] == "stopped" and all(not group_alive(r["pgid"]) for r in run["replicas"])


def test_consumer_plan_folder_has_a_gateway_for_its_replica(consumer):
    out, _, _ = consumer
    served = winner(out / "plan")["checkpoint"]["base_id"]
    assert litellm_routes(out / "plan") == [(served, "http://127.0.0.1:8000/v1")]  # launch.sh's port


# ----------------------------------------------------------------------------------------------- 13b-tp2-mixed
CLASSES = [("short", 200), ("medium", 1000), ("long", 3000)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    return out, run_example("13b-tp2-mixed", out, PORT=str(free_base_port(1)), RATE="30")


def test_mixed_traffic_has_three_length_classes():
    from serveplan.planner.spec import Traffic

    t = Traffic.model_validate(yaml.safe_load((EXAMPLES / "13b-tp2-mixed" / "traffic.yaml").read_text()))
    assert t.input_len.kind == "choice" and list(t.input_len.values) == [v for _, v in CLASSES]
    assert len(t.input_len.weights) == 3 and t.rate_rps


def test_mixed_plan_and_estimate_are_tp2(mixed):
    out, stdout = mixed
    w = winner(out / "plan")
    assert (w["config"]["tp"], w["config"]["pp"], w["config"]["replicas"]) == (2, 1, 1)
    assert w["config"]["weight_dtype"] == "bf16" and w["meets_slo"]
    assert w["config"]["max_model_len"] <= 4096  # Llama-2's context holds the longest prompt + output
    assert "llama-2-13b on 2x A100-SXM4-80GB, TP2 bf16" in stdout  # plan estimate's header
    assert "A: TP2 bf16" in stdout and "B: TP1 x2 bf16" in stdout  # plan compare


def test_mixed_bench_reports_each_size_class(mixed):
    out, _ = mixed
    doc = json.loads((out / "bench-mixed.json").read_text())
    assert doc["summary"]["failed"] == 0
    got = [(c["name"], c["input_len_min"], c["input_len_max"]) for c in doc["classes"]]
    assert got == [(name, n, n) for name, n in CLASSES]
    assert all(c["count"] > 0 and c["failed"] == 0 for c in doc["classes"])


# ------------------------------------------------------------------------------------------------------ fleet
@pytest.fixture(scope="module", autouse=True)
def fleet_run(tmp_path_factory):
    """The fleet plan (~25 s, mostly one CPU) starts with the module and runs while the other examples do."""
    root = tmp_path_factory.mktemp("fleet")
    proc = start_example("fleet", root / "fleet-out", root / "fleet.log")
    yield root, proc
    stop_example(proc)  # only when the fleet tests were deselected or failed waiting


@pytest.fixture(scope="module")
def fleet(fleet_run):
    root, proc = fleet_run
    return root / "fleet-out", finish_example("fleet", proc, root / "fleet.log")


def _k8s_name(model_dir: Path, kind: str) -> str:
    docs = yaml.safe_load_all((model_dir / "k8s" / "deployment.yaml").read_text())
    (name,) = [d["metadata"]["name"] for d in docs if d and d.get("kind") == kind]
    return name


def test_fleet_gateway_routes_every_model_to_its_service(fleet):
    out, stdout = fleet
    spec = yaml.safe_load((EXAMPLES / "fleet" / "fleet.yaml").read_text())
    doc = json.loads((out / "fleet.json").read_text())
    assert len(doc["models"]) == len(spec["models"]) == 3 and all(m["meets_slo"] for m in doc["models"])
    routes = dict(litellm_routes(out))
    assert len(routes) == 3
    for m in doc["models"]:
        served = m["candidate"]["checkpoint"]["base_id"]
        d = out / dns_name(m["model"])
        assert routes[served] == f"http://{_k8s_name(d, 'Service')}:8000/v1", m["model"]
    assert "model_list:" in stdout  # run.sh prints the config it wrote
    # `auto` by prompt class: chat -> the 8B (chat), long -> the 70B (summarize), code -> `code` (codegen)
    router = (out / "gateway" / "prompt_router.py").read_text()
    assert ('CLASS_ROUTES = {"chat": "meta-llama/Llama-3.1-8B-Instruct", "code": "Qwen/Qwen2.5-7B-Instruct", '
            '"long": "meta-llama/Llama-3.1-70B-Instruct"}') in router


def test_fleet_model_folders_carry_autoscalers_and_their_own_gateway(fleet):
    out, _ = fleet
    for m in json.loads((out / "fleet.json").read_text())["models"]:
        d = out / dns_name(m["model"])
        so = yaml.safe_load((d / "k8s" / "keda-scaledobject.yaml").read_text())
        hpa = yaml.safe_load((d / "k8s" / "hpa.yaml").read_text())
        target = _k8s_name(d, "Deployment")
        assert so["spec"]["scaleTargetRef"]["name"] == hpa["spec"]["scaleTargetRef"]["name"] == target
        assert so["spec"]["minReplicaCount"] == m["replicas_needed"] and so["spec"]["maxReplicaCount"] == m["replicas_max"]
        served = m["candidate"]["checkpoint"]["base_id"]
        assert {r for r, _ in litellm_routes(d)} == {served}  # plan -o's gateway: this model's local replicas
        assert len(litellm_routes(d)) == m["replicas"]
