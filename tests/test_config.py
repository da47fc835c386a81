"""Hydra composition + CLI sugar -> PlanRequest (planner.config), and the one-sentence errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from serveplan.errors import ConfigError, ServeplanError, UnknownName
from serveplan.planner import catalog
from serveplan.planner.config import build_request, load_traffic

CONF = Path(catalog.CONF_DIR)
PRESETS = ["chat", "rag", "summarize", "codegen", "long-generation", "offline-batch"]


@pytest.fixture(scope="module")
def card_request():
    return build_request(model="llama-70b", gpus="2xA100")


@pytest.fixture(scope="module")
def presets():
    return {name: load_traffic(name) for name in PRESETS}


# ------------------------------------------------------------------------------------------- resolution
def test_card_command_resolves(card_request):
    r = card_request
    assert r.model.name == "llama-3.1-70b"
    assert r.model.num_layers == 80 and r.model.num_kv_heads == 8
    assert r.inventory.gpu.name == "a100-80gb-sxm"
    assert r.inventory.total_gpus == 2 and r.inventory.nodes == 1
    # Defaults from conf/config.yaml.
    assert r.engine.name == "vllm" and r.traffic.name == "chat"


def test_multi_node_gpus():
    r = build_request(gpus="2x8xH100")
    assert (r.inventory.nodes, r.inventory.gpus_per_node, r.inventory.total_gpus) == (2, 8, 16)
    assert r.inventory.gpu.name == "h100-sxm"


@pytest.mark.parametrize("text,expected", [
    ("2xA100", ("a100-80gb-sxm", 1, 2)), ("8xH100", ("h100-sxm", 1, 8)), ("L4", ("l4", 1, 1)),
    ("2x8xH100", ("h100-sxm", 2, 8)), ("1xRTX4090", ("rtx-4090", 1, 1)), ("4*l40s", ("l40s", 1, 4)),
])
def test_parse_gpus(text, expected):
    assert catalog.parse_gpus(text) == expected


@pytest.mark.parametrize("alias,name", [("llama-7b", "llama-2-7b"), ("mixtral-8x7b", "mixtral-8x7b"),
                                        ("qwen-32b", "qwen2.5-32b"), ("LLAMA-70B", "llama-3.1-70b"),
                                        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b")])
def test_model_aliases(alias, name):
    # Resolution is the catalog's; composing it is Hydra's: check both on a cheap path and one compose.
    assert catalog.resolve("model", alias, "model") == name


def test_model_alias_composes():
    r = build_request(model="mixtral-8x7b")
    assert r.model.name == "mixtral-8x7b" and r.model.num_experts == 8 and r.model.experts_per_token == 2


@pytest.mark.parametrize("gpus,name,count", [("A100-40GB", "a100-40gb-sxm", 1), ("H100-PCIe", "h100-pcie", 1),
                                             ("1xRTX4090", "rtx-4090", 1)])
def test_gpu_aliases(gpus, name, count):
    r = build_request(gpus=gpus)
    assert r.inventory.gpu.name == name and r.inventory.total_gpus == count
    doc = catalog.catalog_doc("hardware", name)["gpu"]
    assert r.inventory.gpu.memory_gib == doc["memory_gib"]


def test_overrides_land_in_request():
    r = build_request(model="llama-8b", gpus="1xL4",
                      overrides=["traffic=rag", "slo.ttft_p99_ms=800", "search.n_trials=400"])
    assert r.traffic.name == "rag" and r.traffic.input_len.mean == 4000
    assert r.slo.ttft_p99_ms == 800
    assert r.slo.tpot_p99_ms == 100  # the default SLO's other target stays
    assert r.search.n_trials == 400


def test_list_and_nested_overrides():
    r = build_request(overrides=["search.allowed_quant=[bf16,fp8]", "traffic.input_len.mean=300",
                                 "search.pareto=true", "engine=trtllm"])
    assert r.search.allowed_quant == ("bf16", "fp8")
    assert r.traffic.input_len.mean == 300 and r.traffic.input_len.kind == "lognormal"
    assert r.search.pareto is True and r.engine.name == "trtllm"


# ------------------------------------------------------------------------------------------- traffic
@pytest.mark.parametrize("name", PRESETS)
def test_traffic_preset_means_match_yaml(presets, name):
    doc = yaml.safe_load((CONF / "traffic" / f"{name}.yaml").read_text())
    tr = presets[name]
    assert tr.name == name
    for key in ("input_len", "output_len"):
        dist = getattr(tr, key)
        assert dist.mean == doc[key]["mean"]
        # The distribution itself (sampled through its quantiles, clipped) has about that mean.
        g = dist.grid(2000)
        assert sum(g) / len(g) == pytest.approx(doc[key]["mean"], rel=0.03)
        assert dist.min <= min(g) and max(g) <= dist.max
    if doc.get("arrival") == "closed":
        assert tr.is_closed_loop and tr.concurrency == doc["concurrency"]
    else:
        assert tr.rate_rps == doc["rate_rps"]


def test_prefill_heavy_vs_decode_heavy(presets):
    def ratio(n):
        t = presets[n]
        return t.input_len.mean / t.output_len.mean

    assert ratio("rag") > 10 and ratio("summarize") > 10
    assert ratio("long-generation") < 1


def test_traffic_file_with_override(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\ninput_len: {kind: fixed, mean: 700, max: 700}\n"
                 "output_len: {kind: fixed, mean: 90, max: 90}\narrival: poisson\nrate_rps: 1.5\n")
    r = build_request(model="llama-8b", traffic=str(f), overrides=["traffic.rate_rps=3"])
    assert r.traffic.name == "mine"
    assert r.traffic.input_len.kind == "fixed" and r.traffic.input_len.mean == 700
    assert r.traffic.output_len.mean == 90
    assert r.traffic.rate_rps == 3
    # load_traffic takes bare field overrides too.
    t = load_traffic(str(f), ["output_len.mean=50", "output_len.max=50"])
    assert t.output_len.mean == 50 and t.rate_rps == 1.5


def test_missing_traffic_file():
    with pytest.raises(ConfigError) as ei:
        build_request(traffic="/nonexistent/traffic.yaml")
    msg = str(ei.value)
    assert "\n" not in msg and "traffic.yaml" in msg and "rag" in msg


def test_local_hf_config(tmp_path):
    d = tmp_path / "tiny-llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 1024, "intermediate_size": 2816,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 32000,
        "max_position_embeddings": 4096, "tie_word_embeddings": False}))
    r = build_request(model=str(d), gpus="1xL4")
    m = r.model
    assert m.name == "tiny-llama"
    assert (m.num_layers, m.hidden_size, m.num_kv_heads, m.head_dim) == (8, 1024, 4, 64)
    # 8 x (q 1M + kv 0.5M + o 1M + mlp 8.65M + norms) + 2 x 32.8M embeddings + final norm.
    expect = 8 * (1024 * 1024 * 2 + 2 * 1024 * 256 + 3 * 1024 * 2816 + 2 * 1024) + 2 * 32000 * 1024 + 1024
    assert m.total_params == expect
    # The file itself, and a model.* override on top of a file.
    r2 = build_request(model=str(d / "config.json"), overrides=["model.num_layers=4"])
    assert r2.model.num_layers == 4 and r2.model.hidden_size == 1024



def test_sliding_window_in_a_config_json_is_ignored(tmp_path):
    """Mistral-7B v0.1's config.json says sliding_window 4096; the memory model does not read it (how vLLM sizes
    sliding-window layers is not modelled), so the model loads and costs the same KV as without the key."""
    from serveplan.planner.memory import kv_bytes_per_token_per_gpu
    from serveplan.planner.spec import ModelSpec

    cfg = {"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
           "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
           "max_position_embeddings": 32768}
    specs = []
    for name, extra in (("with-window", {"sliding_window": 4096}), ("without-window", {})):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({**cfg, **extra}))
        specs.append(catalog.model_from_hf_config(d))
    with_window, without = specs
    assert "sliding_window" not in ModelSpec.model_fields
    assert with_window.model_dump(exclude={"name", "hf_id"}) == without.model_dump(exclude={"name", "hf_id"})
    assert kv_bytes_per_token_per_gpu(with_window, 1, 1, "auto") == 2 * 32 * 8 * 128 * 2
    # A plan.yaml or model file written while ModelSpec had the field still loads.
    legacy = {**without.model_dump(), "sliding_window": 4096}
    assert ModelSpec.model_validate(legacy) == without

# ------------------------------------------------------------------------------------------- errors
def _one_line_error(exc_type=ServeplanError, **kw) -> str:
    with pytest.raises(exc_type) as ei:
        build_request(**kw)
    msg = str(ei.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_unknown_model_suggests_close_matches():
    msg = _one_line_error(UnknownName, model="lama-70b")
    assert "lama-70b" in msg
    assert "Did you mean" in msg and "llama-3.1-70b" in msg.split("Known:")[0]


def test_unknown_gpu_lists_known():
    msg = _one_line_error(UnknownName, gpus="2xZ100")
    assert "Z100" in msg
    for g in ("a100-80gb-sxm", "h100-sxm", "l4"):
        assert g in msg


@pytest.mark.parametrize("bad", ["2x", "2 A100", "2x3x4xA100", "-1xA100", "0xA100", "17xH100"])
def test_bad_gpus_syntax(bad):
    msg = _one_line_error(ConfigError, gpus=bad)
    assert bad in msg
    assert "2x8xH100" in msg or "at least 1" in msg


def test_unknown_field_override():
    msg = _one_line_error(ConfigError, overrides=["slo.ttft_p99=5"])
    assert "ttft_p99" in msg and "ttft_p99_ms" in msg  # names the typo and the valid field


@pytest.mark.parametrize("ov,field", [("slo.ttft_p99_ms=-5", "slo.ttft_p99_ms"),
                                      ("search.n_trials=0", "search.n_trials"),
                                      ("traffic.prefix_share=1.5", "traffic.prefix_share")])
def test_out_of_range_value(ov, field):
    msg = _one_line_error(ConfigError, overrides=[ov])
    assert field in msg and ov.split("=")[1] in msg


def test_unknown_group_option():
    msg = _one_line_error(UnknownName, overrides=["traffic=nope"])
    assert "nope" in msg
    for p in PRESETS:
        assert p in msg


def test_unknown_group_and_engine():
    assert "groups are" in _one_line_error(ConfigError, overrides=["foo.bar=1"])
    msg = _one_line_error(UnknownName, engine="lmdeploy")
    assert "vllm" in msg and "sglang" in msg and "trtllm" in msg and "tgi" in msg


def test_every_config_and_result_field_is_documented():
    """Typed config is the single source of truth: every field says what it holds (CLI help and docs come
    from these descriptions)."""
    import inspect

    import pydantic

    import serveplan.planner.result as result
    import serveplan.planner.spec as spec

    missing = [f"{cls.__name__}.{name}" for mod in (spec, result)
               for _, cls in inspect.getmembers(mod, inspect.isclass)
               if issubclass(cls, pydantic.BaseModel) and cls.__module__ == mod.__name__
               for name, info in cls.model_fields.items() if not info.description]
    assert not missing, missing


def test_search_lists_hold_positive_values():
    from serveplan.errors import ConfigError

    for ov in ("search.max_num_seqs=[0]", "search.tp=[-2]", "search.max_num_batched_tokens=[0,2048]"):
        with pytest.raises(ConfigError):
            build_request(model="llama-8b", gpus="1xH100", overrides=[ov])
