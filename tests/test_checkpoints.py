"""What the plan recommends is what runs: every quantized winner's artifacts serve a checkpoint of the planned
precision, with the flags that checkpoint needs; the table of published checkpoints covers the catalog; the
engine-start rules reject what the engines reject."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from serveplan.render.targets import render_artifacts
from serveplan.planner import checkpoints
from serveplan.planner.api import plan
from serveplan.planner.catalog import options
from serveplan.planner.config import build_request
from serveplan.planner.memory import memory_breakdown, start_problems
from serveplan.planner.spec import Candidate, Checkpoint
from serveplan.render.engines.base import get_adapter

METHODS = ("fp8", "int8", "awq", "gptq")
FORMATS = {"compressed-tensors", "fp8", "awq", "gptq", "modelopt"}


# ---------------------------------------------------------------------------------------------- the table
def test_table_covers_every_catalog_model_and_method():
    table = checkpoints.published_table()
    assert set(table) == set(options("model"))
    for model, methods in table.items():
        assert set(methods) == set(METHODS), model
        for method, entries in methods.items():
            for e in entries:
                assert "/" in e["id"] and e["format"] in FORMATS and e.get("found"), (model, method, e)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_every_model_and_method_has_a_checkpoint_or_is_not_offered(engine):
    """Each catalog model x method either resolves to a checkpoint (published, online, or needs-quantize) or
    is not offered for that engine; vLLM can serve every one of them."""
    for name in options("model"):
        model = build_request(model=name, gpus="1xH100", engine=engine).model
        for w in METHODS:
            ck = checkpoints.checkpoint_for(model, w, engine)
            if ck is None:
                assert engine != "vllm"
                continue
            assert ck.weight_dtype == w and ck.base_id == model.hf_id
            if ck.source == "published":
                assert ck.format in checkpoints.loads(engine, w) and ck.found
            elif ck.source == "needs_quantize":
                assert ck.quantize_method == checkpoints.QUANTIZE_METHOD[w] and not ck.id.startswith("/")
            else:
                assert ck.source == "online" and w == "fp8" and ck.id == model.hf_id


def test_detect_format_reads_local_configs(tmp_path):
    cases = {
        "awq": {"quant_method": "awq", "bits": 4},
        "gptq": {"quant_method": "gptq", "bits": 4},
        "fp8": {"quant_method": "fp8"},
        "int8": {"quant_method": "compressed-tensors", "config_groups": {"g": {
            "weights": {"num_bits": 8, "type": "int"}, "input_activations": {"num_bits": 8, "type": "int"}}}},
    }
    for method, q in cases.items():
        d = tmp_path / method
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"quantization_config": q}))
        assert checkpoints.detect_format(d)[0] == method
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    assert checkpoints.detect_format(tmp_path / "plain") == (None, "hf")
    assert checkpoints.detect_format("some-org/some-model") == (None, "auto")


# ---------------------------------------------------------------------------------------------- artifacts
def _winner_plan(model: str, gpus: str, engine: str, method: str, *ovs: str):
    p = plan(build_request(model=model, gpus=gpus, engine=engine, overrides=[
        f"search.allowed_quant=[{method}]", "search.n_trials=60", "search.top_k=1", *ovs]))
    assert p.winner.config.weight_dtype == method
    return p


def _served(argv: list[str]) -> str:
    return argv[argv.index("--model-path") + 1] if "--model-path" in argv else argv[2 if argv[0] == "vllm" else 1]


CASES = [(e, m, model) for e, m, model in [
    ("vllm", "fp8", "llama-8b"), ("vllm", "int8", "llama-8b"), ("vllm", "awq", "llama-8b"), ("vllm", "gptq", "llama-8b"),
    ("vllm", "int8", "llama-2-13b"), ("vllm", "fp8", "phi-3-medium"), ("vllm", "awq", "phi-3-medium"),
    ("sglang", "fp8", "llama-8b"), ("sglang", "int8", "llama-8b"), ("sglang", "awq", "llama-8b"),
    ("sglang", "gptq", "qwen2.5-7b"), ("sglang", "fp8", "phi-3-medium"), ("sglang", "int8", "mixtral-8x7b"),
    ("trtllm", "fp8", "llama-8b"),
]]


@pytest.mark.parametrize("engine,method,model", CASES)
def test_quantized_winners_serve_their_precision_in_every_artifact(engine, method, model):
    """launch.sh, docker-compose, k8s and plan.yaml agree: the planned checkpoint (or its path in the container),
    --quantization only where the engine quantizes at load, the quantize step where none is published."""
    p = _winner_plan(model, "1xH100", engine, method)
    ck = p.winner.config.checkpoint
    assert ck is not None and ck.weight_dtype == method
    files = render_artifacts(p)
    doc = yaml.safe_load(p.to_yaml())
    assert doc["winner"]["config"]["checkpoint"]["id"] == ck.id

    line = next(ln for ln in files["launch.sh"].splitlines() if ln.startswith("env "))
    argv = shlex.split(line)
    argv = argv[argv.index("setsid") + 1:argv.index(">")] if ">" in argv else argv[argv.index("setsid") + 1:]
    compose = yaml.safe_load(files["docker-compose.yaml"])["services"]["replica-0"]
    c_argv = compose["entrypoint"] + compose["command"]
    k8s = [d for d in yaml.safe_load_all(files["k8s/deployment.yaml"]) if d and d["kind"] == "Deployment"][0]
    pod = k8s["spec"]["template"]["spec"]
    k_argv = pod["containers"][0]["command"] + pod["containers"][0]["args"]

    assert _served(argv) == ck.id
    in_container = f"/models/{ck.id}" if ck.source == "needs_quantize" else ck.id
    assert _served(c_argv) == in_container and _served(k_argv) == in_container
    for a in (argv, c_argv, k_argv):
        q = a[a.index("--quantization") + 1] if "--quantization" in a else None
        assert q == ("fp8" if ck.source == "online" else None), (ck.source, a)
        assert ck.base_id in a or engine == "trtllm"  # clients ask by the base model's name
    if ck.source == "needs_quantize":
        assert f"--method {ck.quantize_method} -o {ck.id}" in files["quantize.sh"]
        assert "run ./quantize.sh first" in files["launch.sh"]
        job = [d for d in yaml.safe_load_all(files["k8s/quantize-job.yaml"]) if d and d["kind"] == "Job"][0]
        assert f"/models/{ck.id}" in job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        assert pod["initContainers"][0]["name"] == "wait-for-checkpoint"
        assert "needs quantize" in p.winner.config.label()
    else:
        assert "quantize.sh" not in files and "k8s/quantize-job.yaml" not in files


def test_quantize_job_recipes_match_quantize_command():
    """The Job's standalone script uses the same llm-compressor schemes as `serveplan quantize`."""
    from serveplan.quantize.methods import METHODS as QMETHODS
    from serveplan.render.targets.quantize import RECIPES, quantize_script

    assert set(RECIPES) == set(QMETHODS)
    for name, m in QMETHODS.items():
        assert f'scheme="{m.scheme}"' in RECIPES[name]
        src = quantize_script(name, "org/model")
        compile(src, "quantize_checkpoint.py", "exec")
        assert ("open_platypus" in src) == m.calibrated


def test_trtllm_never_offers_what_it_cannot_load():
    p = plan(build_request(model="mixtral-8x7b", gpus="2xH100", engine="trtllm",
                           overrides=["search.n_trials=60"]))
    assert {e.config.weight_dtype for e in p.ranked} <= {"bf16"}  # no ModelOpt checkpoint of Mixtral listed


def test_user_checkpoint_override(tmp_path):
    d = tmp_path / "my-awq"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4}}))
    req = build_request(model="phi-3-medium", gpus="1xL4", overrides=[f"model.checkpoints.awq={d}"])
    ck = checkpoints.checkpoint_for(req.model, "awq", "vllm")
    assert ck.source == "user" and ck.id == str(d.resolve()) and ck.format == "awq"
    assert "no such folder" not in ck.describe()


def test_a_local_path_missing_here_is_kept_and_named(tmp_path):
    # A plan made away from the GPU host keeps the path as given, and says it is not on this machine (a typo shows)
    missing = tmp_path / "not-here-awq"
    req = build_request(model="phi-3-medium", gpus="1xL4", overrides=[f"model.checkpoints.awq={missing}"])
    ck = checkpoints.checkpoint_for(req.model, "awq", "vllm")
    assert ck.source == "user" and ck.id == str(missing)
    assert "no such folder on this machine" in ck.describe()
    hub = Checkpoint(id="org/model-awq", source="user", format="awq", weight_dtype="awq", base_id="org/model")
    assert "no such folder" not in hub.describe()  # a hub id is not a local path


# ---------------------------------------------------------------------------------------------- engine rules
def _req(model="llama-8b", gpus="1xH100", engine="vllm"):
    return build_request(model=model, gpus=gpus, engine=engine)


def test_start_rules():
    m = _req().model
    assert any("does not divide" in p for p in start_problems(m, Candidate(tp=3)))
    assert any("below max_num_seqs" in p for p in start_problems(m, Candidate(max_num_seqs=512,
                                                                               max_num_batched_tokens=256)))
    assert any("whole max_model_len" in p for p in start_problems(
        m, Candidate(chunked_prefill=False, max_num_batched_tokens=2048, max_model_len=8192)))
    assert start_problems(m, Candidate(tp=2, max_num_seqs=64, max_num_batched_tokens=2048, max_model_len=2048)) == []


def test_float16_with_fp8_kv_refused_on_hopper_vllm():
    """vLLM 0.26.0 on an H200 stopped at start with --dtype float16 and an FP8 KV cache (session 21): the planner
    never offers the pair there, says why when asked to estimate it, and keeps it where the rule does not apply."""
    fp16_fp8 = Candidate(weight_dtype="fp16", kv_cache_dtype="fp8", max_model_len=2048)
    for engine, gpus, refused in (("vllm", "1xH100", True), ("vllm", "1xA100", False), ("sglang", "1xH100", False)):
        r = _req(gpus=gpus, engine=engine)
        problems = start_problems(r.model, fp16_fp8, r.engine.name, r.inventory.gpu)
        assert any("FlashAttention 3" in p for p in problems) is refused, (engine, gpus)
        mem = memory_breakdown(r.model, r.inventory.gpu, r.engine, fp16_fp8, r.traffic)
        assert ("FlashAttention 3" in (mem.reason or "")) is refused
    r = _req()
    assert start_problems(r.model, fp16_fp8.model_copy(update={"weight_dtype": "bf16"}), "vllm", r.inventory.gpu) == []


def test_online_quantization_load_peak():
    """Llama-2-13B in bf16 (26 GB) does not fit an L4: vLLM quantizes layer by layer while loading (measured),
    so its online FP8 loads; SGLang's load is assumed to hold the bf16 weights and is refused."""
    base = dict(weight_dtype="fp8", max_num_seqs=16, max_num_batched_tokens=2048, max_model_len=2048)
    for engine, fits in (("vllm", True), ("sglang", False)):
        r = _req("llama-2-13b", "1xL4", engine)
        ck = checkpoints.checkpoint_for(r.model, "fp8", engine)
        assert ck is not None and ck.source == "online"
        mb = memory_breakdown(r.model, r.inventory.gpu, r.engine, Candidate(engine=engine, checkpoint=ck, **base),
                              r.traffic)
        assert mb.fits == fits, mb.reason
        if not fits:
            assert "while loading" in mb.reason


def test_budget_uses_the_memory_cuda_reports():
    r = _req()
    mb = memory_breakdown(r.model, r.inventory.gpu, r.engine, Candidate(gpu_memory_utilization=0.92), r.traffic)
    assert mb.capacity_gb == pytest.approx(79.18 * 2**30 / 1e9)
    assert mb.budget_gb == pytest.approx(0.92 * 79.18 * 2**30 / 1e9)


def test_use_all_gpus_uses_every_gpu():
    p = plan(build_request(model="llama-8b", gpus="8xH100", overrides=["search.use_all_gpus=true",
                                                                         "search.n_trials=80"]))
    assert p.ranked and all(e.config.total_gpus == 8 for e in p.ranked)


def test_tp_without_multicast_turns_off_what_needs_it():
    r = build_request(model="llama-70b", gpus="2xH100", overrides=["hardware.nvlink_multicast=false"])
    ck = checkpoints.checkpoint_for(r.model, "fp8", "vllm")
    from serveplan.render.engines.base import get_adapter

    ad = get_adapter("vllm")
    x = ad.render(Candidate(tp=2, weight_dtype="fp8", checkpoint=ck), r, replica=0, gpus=[0, 1], port=8000)
    assert x.env["VLLM_ALLREDUCE_USE_FLASHINFER"] == "0" and x.env["NCCL_NVLS_ENABLE"] == "0"
    cc = json.loads(x.argv[x.argv.index("--compilation-config") + 1])
    assert cc == {"pass_config": {"fuse_allreduce_rms": False}} and ad.validate(x.argv) == []
    one = ad.render(Candidate(tp=1, weight_dtype="fp8", checkpoint=ck), r, replica=0, gpus=[0], port=8000)
    assert "--compilation-config" not in one.argv and set(one.env) == {"CUDA_VISIBLE_DEVICES"}


@pytest.mark.parametrize("gpus,override,multicast", [
    ("2xA100", None, False),                               # Ampere's NVSwitch has no multicast
    ("2xA100", "hardware.nvlink_multicast=true", False),   # asking for it does not give an A100 one
    ("2xH100", None, True), ("2xH200", None, True),        # Hopper on NVLink: as vLLM would use it
    ("2xH100", "hardware.nvlink_multicast=false", False),  # nodes where it is off (the lent machines)
    ("2xH100-PCIe", None, False),
])
def test_nvlink_multicast_defaults_to_what_the_gpu_can_have(gpus, override, multicast):
    r = build_request(model="llama-70b", gpus=gpus, overrides=[override] if override else [])
    assert r.inventory.nvlink_multicast is multicast
    x = get_adapter("vllm").render(Candidate(tp=2, weight_dtype="int8" if "A100" in gpus else "fp8",
                                             checkpoint=checkpoints.checkpoint_for(
                                                 r.model, "int8" if "A100" in gpus else "fp8", "vllm")),
                                   r, replica=0, gpus=[0, 1], port=8000)
    # session 25: the README's 2xA100 answer, started on two H200s without multicast, crashed in the memory
    # profile with the fusion on; the A100 plan now turns it off, as it must where multicast is absent
    assert ("--compilation-config" in x.argv) is (not multicast)
    assert (x.env.get("VLLM_ALLREDUCE_USE_FLASHINFER") == "0") is (not multicast)


def test_checkpoint_is_part_of_the_candidate():
    ck = Checkpoint(id="x/y", source="published", format="awq", weight_dtype="awq", base_id="a/b")
    assert Candidate(weight_dtype="awq", checkpoint=ck) != Candidate(weight_dtype="awq")
    assert hash(Candidate(weight_dtype="awq", checkpoint=ck))


def test_cli_checkpoint_value_is_not_an_override(tmp_path, capsys):
    """`plan --checkpoint awq=PATH` (the README's spelling): its METHOD=PATH value belongs to the flag, it is not a
    Hydra override that leaves --checkpoint without a value."""
    from serveplan.cli import main as cli_main

    d = tmp_path / "my-awq"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4}}))
    assert cli_main(["plan", "--model", "llama-3.1-8b", "--gpus", "1xRTX4090", "--checkpoint", f"awq={d}",
                     "search.allowed_quant=[awq]", "--no-write", "--json"]) == 0
    ck = json.loads(capsys.readouterr().out)["candidates"][0]["checkpoint"]
    assert ck["source"] == "user" and ck["id"] == str(d.resolve())


def test_estimate_and_compare_serve_the_checkpoint_given(tmp_path):
    """`plan estimate` and `plan compare` take --checkpoint like `plan` (they used to accept and ignore it)."""
    import json
    import subprocess
    import sys

    ck = tmp_path / "my-awq"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "quantization_config": {
        "quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}}))
    est = subprocess.run([sys.executable, "-m", "serveplan.cli", "estimate", "--model", "llama-8b", "--gpus",
                          "1xH100", "--weights", "awq", "--checkpoint", f"awq={ck}", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert est.returncode == 0, est.stderr
    assert json.loads(est.stdout)["checkpoint"]["id"] == str(ck)
    cmp = subprocess.run([sys.executable, "-m", "serveplan.cli", "compare", "--model", "llama-8b", "--gpus",
                          "1xH100", "--checkpoint", f"awq={ck}", "--a", "weights=awq", "--b", "weights=fp8",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert cmp.returncode == 0, cmp.stderr
    assert str(ck) in cmp.stdout
