"""The built-in catalogs (serveplan/conf/model, serveplan/conf/hardware) against their specs and external facts.

Every figure pinned here comes from outside the code under test: model cards, Hugging Face config.json files,
NVIDIA datasheets. Parameter counts are never typed into the catalog; they are derived by ModelSpec from the
architecture numbers, and this file checks the derivation against what the model cards state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serveplan.planner.spec import GPUSpec, Inventory, ModelSpec

CONF = Path(__file__).resolve().parents[1] / "serveplan" / "conf"
MODEL_DIR = CONF / "model"
HARDWARE_DIR = CONF / "hardware"

MODEL_FILES = sorted(MODEL_DIR.glob("*.yaml"))
HARDWARE_FILES = sorted(HARDWARE_DIR.glob("*.yaml"))


def _load(path: Path) -> dict:
    with path.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), f"{path.name}: top level must be a mapping"
    return doc


@pytest.fixture(scope="module")
def models() -> dict[str, ModelSpec]:
    return {p.stem: ModelSpec(**_load(p)) for p in MODEL_FILES}


@pytest.fixture(scope="module")
def inventories() -> dict[str, Inventory]:
    return {p.stem: Inventory(**_load(p)) for p in HARDWARE_FILES}


@pytest.fixture(scope="module")
def gpus(inventories) -> dict[str, GPUSpec]:
    return {k: v.gpu for k, v in inventories.items()}


# ---------------------------------------------------------------------------------------------- the lists
EXPECTED_MODEL_ALIASES: dict[str, set[str]] = {
    "llama-2-7b": {"llama-7b", "llama2-7b"},
    "llama-2-13b": {"llama-13b", "llama2-13b"},
    "llama-2-70b": {"llama2-70b"},
    "llama-3.1-8b": {"llama-8b", "llama3-8b", "llama-3-8b", "llama3.1-8b"},
    "llama-3.1-70b": {"llama-70b", "llama3-70b", "llama-3-70b", "llama3.1-70b"},
    "llama-3.1-405b": {"llama-405b", "llama3.1-405b"},
    "llama-3.2-1b": {"llama-1b", "llama3.2-1b"},
    "llama-3.2-3b": {"llama-3b", "llama3.2-3b"},
    "mistral-7b": {"mistral"},
    "mixtral-8x7b": set(),
    "mixtral-8x22b": set(),
    "qwen2.5-7b": {"qwen-7b"},
    "qwen2.5-14b": {"qwen-14b"},
    "qwen2.5-32b": {"qwen-32b"},
    "qwen2.5-72b": {"qwen-72b"},
    "qwen3-8b": set(),
    "qwen3-32b": set(),
    "qwen3-30b-a3b": set(),
    "gemma-2-9b": {"gemma-9b"},
    "gemma-2-27b": {"gemma-27b"},
    "phi-3-mini": {"phi3-mini"},
    "phi-3-medium": {"phi3-medium"},
}

EXPECTED_GPUS = {"a100-40gb-sxm", "a100-80gb-sxm", "a100-40gb-pcie", "a100-80gb-pcie", "h100-sxm", "h100-pcie",
                 "h200", "b200", "l40s", "l4", "a10g", "a10", "rtx-3090", "rtx-4090"}

# A selector (name or alias, any case) and the catalog entry it must pick.
GPU_SELECTORS = {
    "a100": "a100-80gb-sxm", "A100": "a100-80gb-sxm", "a100-80gb": "a100-80gb-sxm", "a100-40gb": "a100-40gb-sxm",
    "a100-pcie": "a100-80gb-pcie", "h100": "h100-sxm", "H100": "h100-sxm", "h100-sxm": "h100-sxm",
    "h100-pcie": "h100-pcie", "h200": "h200", "b200": "b200", "l40s": "l40s", "L40S": "l40s", "l4": "l4",
    "a10g": "a10g", "A10G": "a10g", "a10": "a10", "4090": "rtx-4090", "rtx4090": "rtx-4090",
    "RTX-4090": "rtx-4090", "3090": "rtx-3090", "rtx3090": "rtx-3090",
}


def test_catalog_directories_hold_exactly_the_expected_entries():
    assert {p.stem for p in MODEL_FILES} == set(EXPECTED_MODEL_ALIASES)
    assert {p.stem for p in HARDWARE_FILES} == EXPECTED_GPUS


# ---------------------------------------------------------------------------------------------- models: shape
@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_file_validates_and_is_named_for_its_model(path):
    doc = _load(path)
    assert set(doc) == set(ModelSpec.model_fields), f"{path.name}: keys must be exactly the ModelSpec fields"
    spec = ModelSpec(**doc)
    assert spec.name == path.stem
    assert spec.hf_id and "/" in spec.hf_id
    first = path.read_text().splitlines()[0]
    assert first == f"# {spec.hf_id} config.json"


@pytest.mark.parametrize("name", sorted(EXPECTED_MODEL_ALIASES))
def test_model_aliases_are_the_agreed_ones(models, name):
    assert set(models[name].aliases) == EXPECTED_MODEL_ALIASES[name]
    assert all(a == a.lower() for a in models[name].aliases)


def _selectors(specs) -> dict[str, str]:
    """Map every lower-cased name/alias to its entry, failing on any selector claimed by two entries."""
    out: dict[str, str] = {}
    for key, spec in specs.items():
        for sel in {spec.name, *spec.aliases}:
            s = str(sel).lower()
            assert out.get(s, key) == key, f"selector {s!r} claimed by both {out[s]} and {key}"
            out[s] = key
    return out


def test_model_names_and_aliases_are_unique(models):
    sel = _selectors(models)
    assert sum(len(m.aliases) for m in models.values()) + len(models) == len(sel)


# ---------------------------------------------------------------------------------------------- models: facts
def test_llama_3_1_70b_weights_are_141_gb_in_bf16(models):
    # 70.55B params x 2 bytes = 141.1 GB: the figure the Llama 3.1 70B bf16 checkpoint totals.
    assert models["llama-3.1-70b"].total_params * 2 == pytest.approx(141.1e9, rel=0.01)


def test_llama_3_1_8b_weights_are_16_gb_in_bf16(models):
    # 8.03B params x 2 bytes = 16.06 GB.
    assert models["llama-3.1-8b"].total_params * 2 == pytest.approx(16.06e9, rel=0.01)


def test_llama_3_1_70b_kv_cache_is_320_kib_per_token_in_bf16(models):
    # 2 (K,V) x 80 layers x 8 KV heads x 128 dims x 2 bytes = 327,680 bytes.
    assert models["llama-3.1-70b"].kv_bytes_per_token(2) == 327680


# Parameter counts as the model cards (or the model's paper / announcement) state them.
CARD_PARAMS: dict[str, float] = {
    "llama-2-7b": 6.74e9,    # HF model page meta-llama/Llama-2-7b-chat-hf: "Model size 6.74B params" (card: "7B")
    "llama-2-13b": 13e9,     # Llama 2 model card: 13B
    "llama-2-70b": 70e9,     # Llama 2 model card: 70B
    "llama-3.1-8b": 8e9,     # Llama 3.1 model card: 8B
    "llama-3.1-70b": 70e9,   # Llama 3.1 model card: 70B
    "llama-3.1-405b": 405e9,  # Llama 3.1 model card: 405B
    "llama-3.2-1b": 1.23e9,  # Llama 3.2 model card, "Params" column: 1.23B
    "llama-3.2-3b": 3.21e9,  # Llama 3.2 model card, "Params" column: 3.21B
    "mistral-7b": 7.3e9,     # Mistral AI, "Mistral 7B" announcement: 7.3B parameters
    "mixtral-8x7b": 46.7e9,  # Mistral AI, "Mixtral of experts": 46.7B total parameters
    "mixtral-8x22b": 141e9,  # Mistral AI, "Cheaper, Better, Faster, Stronger" (Mixtral 8x22B): 141B total
    "qwen2.5-7b": 7.61e9,    # Qwen/Qwen2.5-7B-Instruct card: Number of Parameters 7.61B
    "qwen2.5-14b": 14.7e9,   # Qwen/Qwen2.5-14B-Instruct card: 14.7B
    "qwen2.5-32b": 32.5e9,   # Qwen/Qwen2.5-32B-Instruct card: 32.5B
    "qwen2.5-72b": 72.7e9,   # Qwen/Qwen2.5-72B-Instruct card: 72.7B
    "qwen3-8b": 8.2e9,       # Qwen/Qwen3-8B card: Number of Parameters 8.2B
    "qwen3-32b": 32.8e9,     # Qwen/Qwen3-32B card: 32.8B
    "qwen3-30b-a3b": 30.5e9,  # Qwen/Qwen3-30B-A3B card: 30.5B in total and 3.3B activated
    "gemma-2-9b": 9.24e9,    # Gemma 2 tech report, Table 2: 917,504,000 embedding + 8,324,201,984 non-embedding
    "gemma-2-27b": 27.2e9,   # Gemma 2 tech report, Table 2: 1,179,648,000 embedding + 26,047,480,320 non-embedding
    "phi-3-mini": 3.8e9,     # microsoft/Phi-3-mini-4k-instruct card: 3.8B parameters
    "phi-3-medium": 14e9,    # microsoft/Phi-3-medium-4k-instruct card: 14B parameters
}


def test_card_table_covers_every_model(models):
    assert set(CARD_PARAMS) == set(models)


@pytest.mark.parametrize("name", sorted(CARD_PARAMS))
def test_derived_parameter_count_matches_the_model_card(models, name):
    assert models[name].total_params == pytest.approx(CARD_PARAMS[name], rel=0.03)


def test_mixtral_active_parameters_match_the_announcements(models):
    # "Mixtral of experts": 12.9B parameters used per token; Mixtral 8x22B announcement: 39B active.
    assert models["mixtral-8x7b"].active_params == pytest.approx(12.9e9, rel=0.03)
    assert models["mixtral-8x22b"].active_params == pytest.approx(39e9, rel=0.03)


def test_architecture_facts_from_the_configs(models):
    for n in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b"):
        assert models[n].qkv_bias, n
    for n in ("qwen3-8b", "qwen3-32b"):
        assert not models[n].qkv_bias and models[n].head_dim == 128, n
    assert models["gemma-2-9b"].head_dim == 256 and models["gemma-2-27b"].head_dim == 128
    for n in ("gemma-2-9b", "gemma-2-27b"):
        assert models[n].tie_word_embeddings, n
    for n in ("llama-3.2-1b", "llama-3.2-3b"):
        assert models[n].tie_word_embeddings, n
    for n in ("mixtral-8x7b", "mixtral-8x22b"):
        assert (models[n].num_experts, models[n].experts_per_token) == (8, 2), n
    q = models["qwen3-30b-a3b"]
    assert (q.num_experts, q.experts_per_token, q.intermediate_size, q.num_kv_heads) == (128, 8, 768, 4)
    # the card's 3.3B activated counts the input embedding table, which a token only indexes
    assert q.active_params + q.vocab_size * q.hidden_size == pytest.approx(3.3e9, rel=0.03)
    for n, m in models.items():
        assert m.gated_mlp, n
        assert m.is_moe == (n.startswith("mixtral") or n == "qwen3-30b-a3b"), n
        if not m.is_moe:
            assert m.active_params <= m.total_params, n


# ---------------------------------------------------------------------------------------------- hardware
@pytest.mark.parametrize("path", HARDWARE_FILES, ids=lambda p: p.stem)
def test_hardware_file_validates_and_is_named_for_its_gpu(path):
    doc = _load(path)
    assert set(doc) == {"gpu", "nodes", "gpus_per_node", "inter_node_bw_gbs"}
    assert set(doc["gpu"]) == set(GPUSpec.model_fields)
    GPUSpec(**doc["gpu"])
    inv = Inventory(**doc)
    assert inv.gpu.name == path.stem
    assert path.read_text().startswith("# sources: ")
    assert inv.gpu.price_source


def test_gpu_names_and_aliases_are_unique_case_insensitively(gpus):
    sel = _selectors(gpus)
    for g in gpus.values():
        assert all(str(a) == str(a).lower() and isinstance(a, str) for a in g.aliases), g.name
    assert len(sel) >= len(gpus)


@pytest.mark.parametrize("selector,expected", sorted(GPU_SELECTORS.items()))
def test_gpu_selectors_pick_the_right_entry(gpus, selector, expected):
    assert _selectors(gpus)[selector.lower()] == expected


FP8_ARCHS = {"ada", "hopper", "blackwell"}
ALLOWED_DTYPES = {"bf16", "fp16", "fp8", "int8", "int4"}


@pytest.mark.parametrize("name", sorted(EXPECTED_GPUS))
def test_gpu_tflops_are_physically_sane(gpus, name):
    g = gpus[name]
    t = g.tflops
    assert set(t) <= ALLOWED_DTYPES
    assert {"bf16", "fp16", "int8"} <= set(t)
    assert t["bf16"] == t["fp16"]  # dense tensor rate is the same for both 16-bit formats on every part here
    if "fp8" in t:
        assert g.arch in FP8_ARCHS
        assert t["bf16"] < t["fp8"]
    else:
        assert g.arch == "ampere"  # every Ada/Hopper/Blackwell part has FP8 tensor cores
    assert t["int8"] >= t["bf16"]
    if "int4" in t:
        assert g.arch in {"ampere", "ada"} and t["int4"] >= t["int8"]


@pytest.mark.parametrize("name", sorted(EXPECTED_GPUS))
def test_gpu_arch_compute_capability_and_links_agree(gpus, name):
    g = gpus[name]
    cc = {"ampere": {8.0, 8.6}, "ada": {8.9}, "hopper": {9.0}, "blackwell": {10.0}}
    assert g.compute_capability in cc[g.arch]
    if g.interconnect == "nvlink":
        assert g.nvlink_generation is not None
        # NVLink 3/4/5 per direction: 300 / 450 / 900 GB/s
        assert g.intra_node_bw_gbs == {3: 300, 4: 450, 5: 900}[g.nvlink_generation]
    else:
        assert g.nvlink_generation is None
        # PCIe x16 per direction: Gen4 ~32 GB/s raw, Gen5 ~64 GB/s raw; effective is below raw
        assert g.intra_node_bw_gbs < {4: 32, 5: 64}[g.pcie_generation]
    assert g.memory_gib <= 200 and g.hbm_bandwidth_gbs < 10_000
    # Decode reads every weight once per step: even the smallest card must stream its memory in < 0.1 s.
    assert g.memory_gb / g.hbm_bandwidth_gbs < 0.1


def test_datasheet_figures_that_anchor_the_planner(gpus):
    h100 = gpus["h100-sxm"]
    assert (h100.memory_gib, h100.hbm_bandwidth_gbs, h100.tflops["bf16"], h100.tdp_w) == (80, 3350, 989, 700)
    a100 = gpus["a100-80gb-sxm"]
    assert (a100.hbm_bandwidth_gbs, a100.tflops["bf16"], a100.intra_node_bw_gbs) == (2039, 312, 300)
    assert gpus["h200"].tflops == h100.tflops and gpus["h200"].hbm_bandwidth_gbs == 4800
    assert gpus["rtx-4090"].tflops["bf16"] == 165.2  # Ada whitepaper, FP32 accumulate
    # Same silicon, different memory: the 40 GB and 80 GB A100s differ only in memory and bandwidth.
    assert gpus["a100-40gb-sxm"].tflops == a100.tflops and gpus["a100-40gb-sxm"].memory_gib == 40


def test_prices_rank_like_the_hardware(gpus):
    p = {k: g.price_per_hour_usd for k, g in gpus.items()}
    assert p["b200"] > p["h200"] > p["h100-sxm"] > p["a100-80gb-sxm"] > p["l40s"] > p["rtx-4090"]
    assert p["h100-sxm"] > p["h100-pcie"] and p["a100-80gb-sxm"] >= p["a100-80gb-pcie"]


# nvidia-smi names as the driver reports them -> the catalog GPU (one matcher for `profile` and `plan launch`).
SMI_NAMES = {
    "NVIDIA H100 80GB HBM3": "h100-sxm", "NVIDIA H100 PCIe": "h100-pcie", "NVIDIA H200": "h200",
    "NVIDIA A100-SXM4-80GB": "a100-80gb-sxm", "NVIDIA A100-SXM4-40GB": "a100-40gb-sxm",
    "NVIDIA A100 80GB PCIe": "a100-80gb-pcie", "NVIDIA L4": "l4", "NVIDIA L40S": "l40s", "NVIDIA A10G": "a10g",
    "NVIDIA A10": "a10", "NVIDIA GeForce RTX 4090": "rtx-4090", "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA B200": "b200",
}


@pytest.mark.parametrize("smi,option", sorted(SMI_NAMES.items()))
def test_device_names_map_to_catalog_gpus(smi, option):
    """`profile` names its output by the catalog GPU `plan launch` would accept, so find_profile finds it."""
    from serveplan.hwprofile.profile import catalog_name
    from serveplan.launcher.gpus import gpu_matches
    from serveplan.planner.catalog import gpu_for_device, gpu_spec

    assert gpu_for_device(smi) == option == catalog_name(smi)
    assert gpu_matches(gpu_spec(option), smi)
    assert gpu_for_device("NVIDIA Tesla K80") is None


def test_every_gpu_names_its_nvidia_smi_name_and_that_name_selects_it():
    """smi_name is what `plan launch` checks the GPUs against (gpu_matches) and, with dashes, the node label the
    Kubernetes manifests select by: each catalog GPU's own name must select it and no other."""
    from serveplan.planner.catalog import gpu_for_device, gpu_spec, options

    for opt in options("hardware"):
        g = gpu_spec(opt)
        assert g.smi_name, opt
        assert gpu_for_device(g.smi_name) == opt, (opt, g.smi_name)
        assert " " not in g.k8s_product_label and g.k8s_product_label.startswith("NVIDIA-")


def test_k8s_pods_are_pinned_to_the_planned_gpu_type(tmp_path):
    import yaml

    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.render.targets import render_artifacts

    for gpus, label in (("1xL40S", "NVIDIA-L40S"), ("2xH100", "NVIDIA-H100-80GB-HBM3")):
        files = render_artifacts(plan(build_request(model="llama-8b", gpus=gpus, overrides=["search.n_trials=30"])))
        docs = [d for d in yaml.safe_load_all(files["k8s/deployment.yaml"]) if d]
        (dep,) = [d for d in docs if d["kind"] == "Deployment"]
        assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": label}
