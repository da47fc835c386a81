"""bitsandbytes NF4 (bnb-nf4): an opt-in weight method, served by vLLM 0.26.0 (`--quantization bitsandbytes`) and
TGI 3.3.7 (`--quantize bitsandbytes-nf4`) from the bf16 checkpoint, never by vLLM 0.33.0 (no such value)."""

from __future__ import annotations

import json

import pytest

from serveplan.errors import ConfigError
from serveplan.planner.api import plan
from serveplan.planner.catalog import quant_method
from serveplan.planner.checkpoints import BNB_NF4_VERSIONS, checkpoint_for
from serveplan.planner.config import build_request
from serveplan.planner.estimate import Scorer
from serveplan.planner.memory import memory_breakdown, weight_bytes_per_gpu
from serveplan.planner.space import weight_dtypes
from serveplan.planner.spec import Candidate
from serveplan.render.engines.base import SCHEMA_DIR, get_adapter, schema_versions


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_memory_smaller_than_bf16_and_stated_costs():
    req = build_request(model="llama-70b", gpus="1xH100")
    nf4, bf16, awq = (weight_bytes_per_gpu(req.model, 1, 1, w) for w in ("bnb-nf4", "bf16", "awq"))
    assert nf4 < 0.31 * bf16 and awq < nf4  # 4.5 bits (embeddings stay bf16); AWQ 4.16 bits is a little smaller
    q = quant_method("bnb-nf4")
    assert q.bytes_per_weight == 0.5625 and q.quality_cost_pct > quant_method("gptq").quality_cost_pct


def test_opt_in_only():
    v026 = "engine.version=0.26.0"  # the vLLM that has it (the default, 0.33.0, does not)
    default = build_request(model="llama-8b", gpus="1xL4", overrides=[v026])
    assert "bnb-nf4" not in weight_dtypes(default)
    asked = build_request(model="llama-8b", gpus="1xL4", overrides=[v026, "search.allowed_quant=[bf16,bnb-nf4]"])
    assert "bnb-nf4" in weight_dtypes(asked)
    ck = checkpoint_for(asked.model, "bnb-nf4", "vllm")
    assert ck.engine_quantizes and ck.id == asked.model.hf_id  # the bf16 checkpoint, quantized while loading
    assert checkpoint_for(asked.model, "bnb-nf4", "sglang") is None


def test_slower_than_bf16_beyond_one_token():
    """bitsandbytes dequantizes the whole weight for a matmul of more than one token: faster than bf16 at
    batch 1 (4-bit reads), slower at batch 8 and in prefill."""
    req = build_request(model="llama-8b", gpus="1xH100")
    step = {w: Scorer(req).step_model(Candidate(weight_dtype=w, max_model_len=4096)) for w in ("bf16", "bnb-nf4")}
    assert step["bnb-nf4"].step_ms(1, 1000) < step["bf16"].step_ms(1, 1000)
    assert step["bnb-nf4"].step_ms(8, 8000) > step["bf16"].step_ms(8, 8000)
    assert step["bnb-nf4"].step_ms(0, 0, 2048, 2048 * 1000, 2) > step["bf16"].step_ms(0, 0, 2048, 2048 * 1000, 2)


def test_vllm_026_renders_bitsandbytes_and_validates():
    req = build_request(model="llama-8b", gpus="1xL4", overrides=["engine.version=0.26.0", "search.allowed_quant=[bnb-nf4]",
                                                                  "search.n_trials=20"])
    p = plan(req)
    assert p.ranked and all(e.config.weight_dtype == "bnb-nf4" for e in p.ranked)
    w = p.winner.config
    ad = get_adapter("vllm", "0.26.0")
    argv = ad.render(w, req, replica=0, gpus=[0], port=8000).argv
    assert _flag(argv, "--quantization") == "bitsandbytes" and _flag(argv, "--dtype") == "bfloat16"
    assert ad.validate(argv) == []
    assert memory_breakdown(req.model, req.inventory.gpu, req.engine, w, req.traffic).weights_gb < 8


def test_vllm_033_refuses_in_one_sentence():
    with pytest.raises(ConfigError, match=r"vllm 0\.33\.0 has no bitsandbytes") as e:
        build_request(model="llama-8b", gpus="1xL4", overrides=["engine.version=0.33.0", "search.allowed_quant=[bnb-nf4]"])
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")
    with pytest.raises(ConfigError, match=r"vllm 0\.33\.0 has no .* plan with engine\.version=0\.26\.0\.$"):
        build_request(model="llama-8b", gpus="1xL4", overrides=["search.allowed_quant=[bnb-nf4]"])  # the default
    with pytest.raises(ConfigError, match="sglang 0.5.23"):
        build_request(model="llama-8b", gpus="1xL4", engine="sglang", overrides=["search.allowed_quant=[bnb-nf4]"])
    # And the adapter, reading its own schema, never renders it for 0.33.0.
    req = build_request(model="llama-8b", gpus="1xL4", overrides=["engine.version=0.33.0"])
    with pytest.raises(ConfigError, match=r"vLLM 0\.33\.0 has no --quantization bitsandbytes"):
        get_adapter("vllm", "0.33.0").render(Candidate(weight_dtype="bnb-nf4", max_model_len=4096), req,
                                             replica=0, gpus=[0], port=8000)


def test_tgi_renders_bitsandbytes_nf4():
    req = build_request(model="llama-8b", gpus="1xL4", engine="tgi", overrides=["search.allowed_quant=[bnb-nf4]"])
    argv = get_adapter("tgi").render(Candidate(weight_dtype="bnb-nf4", max_model_len=4096), req,
                                     replica=0, gpus=[0], port=8000).argv
    assert _flag(argv, "--quantize") == "bitsandbytes-nf4" and "--dtype" not in argv
    assert get_adapter("tgi").validate(argv) == []


def test_version_table_matches_the_schemas():
    """checkpoints.BNB_NF4_VERSIONS (the planner cannot read render/'s schemas) agrees with every schema."""
    for version in schema_versions("vllm"):
        doc = json.loads((SCHEMA_DIR / f"vllm-{version}.json").read_text())
        assert ("bitsandbytes" in doc["known_values"]["--quantization"]) == (version in BNB_NF4_VERSIONS["vllm"])
    for version in schema_versions("tgi"):
        doc = json.loads((SCHEMA_DIR / f"tgi-{version}.json").read_text())
        assert ("bitsandbytes-nf4" in doc["flags"]["--quantize"]["choices"]) == (version in BNB_NF4_VERSIONS["tgi"])
    assert set(BNB_NF4_VERSIONS) == {"vllm", "tgi"}
