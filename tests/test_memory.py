"""Per-GPU memory (planner.memory) against architecture arithmetic and physical invariants.

Pinned figures come from outside the code: Llama-3.1-70B has 70.55 B parameters (model card / safetensors
index: 141.1 GB in bf16), Llama-3.1-8B has 8.03 B (16.06 GB in bf16); a KV token of Llama-3.1-70B is
2 (K and V) x 80 layers x 8 KV heads x 128 head dim x 2 bytes = 327,680 bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serveplan.planner import catalog, memory
from serveplan.planner.spec import Candidate, LengthDist, Traffic

MODELS = catalog.options("model")
PAR = [1, 2, 4, 8]


from serveplan.testing.factories import engine as _engine
from serveplan.testing.factories import gpu as _gpu
from serveplan.testing.factories import model as _model


SPECS = {n: _model(n) for n in MODELS}
CHAT = Traffic(input_len=LengthDist(kind="fixed", mean=1000, max=1000),
               output_len=LengthDist(kind="fixed", mean=200, max=200), rate_rps=1.0)


# ------------------------------------------------------------------------------------------- pinned figures
def test_llama_70b_bf16_weights_match_model_card():
    w = memory.weight_bytes_per_gpu(SPECS["llama-3.1-70b"], 1, 1, "bf16")
    assert w / 1e9 == pytest.approx(141.1, rel=0.01)


def test_llama_8b_bf16_weights_match_model_card():
    w = memory.weight_bytes_per_gpu(SPECS["llama-3.1-8b"], 1, 1, "bf16")
    assert w / 1e9 == pytest.approx(16.06, rel=0.01)


def test_llama_70b_kv_bytes_per_token():
    assert memory.kv_bytes_per_token_per_gpu(SPECS["llama-3.1-70b"], 1, 1, "auto") == 327_680


def test_tp_splits_weights_roughly_evenly():
    # TP8 of a 70B holds about an eighth of the weights (K/V projections are split, not replicated, at 8
    # KV heads), well under 1/7.
    m = SPECS["llama-3.1-70b"]
    w1 = memory.weight_bytes_per_gpu(m, 1, 1, "bf16")
    w8 = memory.weight_bytes_per_gpu(m, 8, 1, "bf16")
    assert w1 / 8 <= w8 < w1 / 7


# ------------------------------------------------------------------------------------------- properties
@settings(max_examples=120, deadline=None)
@given(name=st.sampled_from(MODELS), tp=st.sampled_from(PAR), pp=st.sampled_from(PAR),
       dtype=st.sampled_from(["bf16", "fp8", "awq"]))
def test_more_gpus_never_more_weight_memory_per_gpu(name, tp, pp, dtype):
    m = SPECS[name]
    w = memory.weight_bytes_per_gpu(m, tp, pp, dtype)
    if tp < 8:
        assert memory.weight_bytes_per_gpu(m, tp * 2, pp, dtype) <= w
    if pp < 8:
        assert memory.weight_bytes_per_gpu(m, tp, pp * 2, dtype) <= w


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(MODELS), tp=st.sampled_from(PAR), pp=st.sampled_from(PAR))
def test_int4_smaller_than_fp8_smaller_than_bf16(name, tp, pp):
    m = SPECS[name]
    awq = memory.weight_bytes_per_gpu(m, tp, pp, "awq")
    fp8 = memory.weight_bytes_per_gpu(m, tp, pp, "fp8")
    bf16 = memory.weight_bytes_per_gpu(m, tp, pp, "bf16")
    assert awq < fp8 < bf16
    # The linear layers dominate: 8-bit is well under 3/4 of bf16 for every catalog model at TP1 PP1.
    if tp == pp == 1:
        assert fp8 < 0.75 * bf16


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(MODELS), tp=st.sampled_from(PAR), pp=st.sampled_from(PAR))
def test_kv_split_across_tp_then_replicated(name, tp, pp):
    m = SPECS[name]
    kv1 = memory.kv_bytes_per_token_per_gpu(m, 1, pp, "auto")
    kv = memory.kv_bytes_per_token_per_gpu(m, tp, pp, "auto")
    assert kv <= kv1
    if tp >= m.num_kv_heads:
        # Every rank holds at least one whole KV head: past TP = kv heads the per-GPU bytes stop falling.
        assert kv == pytest.approx(kv1 / m.num_kv_heads)
        assert memory.kv_bytes_per_token_per_gpu(m, tp * 2, pp, "auto") == pytest.approx(kv)
    elif m.num_kv_heads % tp == 0:
        assert kv == pytest.approx(kv1 / tp)


def test_kv_replicated_for_llama_70b_past_8_ranks():
    m = SPECS["llama-3.1-70b"]  # 8 KV heads
    per = [memory.kv_bytes_per_token_per_gpu(m, tp, 1, "auto") for tp in (1, 2, 4, 8, 16)]
    assert per[:4] == [327_680, 163_840, 81_920, 40_960]
    assert per[4] == per[3]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(MODELS), tp=st.sampled_from(PAR), pp=st.sampled_from(PAR))
def test_fp8_kv_halves_kv_bytes(name, tp, pp):
    m = SPECS[name]
    auto = memory.kv_bytes_per_token_per_gpu(m, tp, pp, "auto")
    fp8 = memory.kv_bytes_per_token_per_gpu(m, tp, pp, "fp8")
    assert fp8 == pytest.approx(auto / 2)


# ------------------------------------------------------------------------------------------- breakdown
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_kv_tokens_grow_with_gpu_memory_utilization(engine):
    m, gpu, eng = SPECS["llama-3.1-8b"], _gpu("h100-sxm"), _engine(engine)
    tokens = []
    for u in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        mb = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192, gpu_memory_utilization=u), CHAT)
        assert mb.fits
        tokens.append(mb.kv_tokens)
    assert all(b > a for a, b in zip(tokens, tokens[1:])), tokens
    # 10% of an 80 GiB GPU is ~8.6 GB: ~65K tokens at 131,072 bytes per token (8B, bf16 KV).
    m9 = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192, gpu_memory_utilization=0.9), CHAT)
    m8 = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192, gpu_memory_utilization=0.8), CHAT)
    assert (m9.kv_tokens - m8.kv_tokens) == pytest.approx(0.1 * gpu.usable_gib * 2**30 / 131_072, rel=0.02)


def test_breakdown_adds_up_to_budget():
    m, gpu, eng = SPECS["llama-3.1-8b"], _gpu("h100-sxm"), _engine("vllm")
    mb = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192, gpu_memory_utilization=0.9), CHAT)
    # vLLM 0.26.0 sizes the KV cache before capturing CUDA graphs: they live above the budget.
    graphs = eng.cuda_graph_memory_gb
    assert mb.weights_gb + mb.kv_cache_gb + mb.other_gb - graphs == pytest.approx(mb.budget_gb, rel=1e-6)
    assert mb.budget_gb == pytest.approx(0.9 * gpu.usable_gib * 1.073741824, rel=1e-6)
    assert mb.capacity_gb - mb.budget_gb >= graphs
    # KV tokens are what the cache holds, rounded down to whole blocks.
    assert mb.kv_tokens % eng.kv_block_size == 0
    assert mb.kv_tokens * mb.kv_bytes_per_token <= mb.kv_cache_gb * 1e9
    assert mb.max_concurrent_seqs == mb.kv_tokens // 1200


def test_fp8_kv_doubles_kv_tokens():
    m, gpu, eng = SPECS["llama-3.1-8b"], _gpu("h100-sxm"), _engine("vllm")
    a = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192), CHAT)
    b = memory.memory_breakdown(m, gpu, eng, Candidate(max_model_len=8192, kv_cache_dtype="fp8"), CHAT)
    assert b.kv_tokens == pytest.approx(2 * a.kv_tokens, abs=2 * eng.kv_block_size)


def test_non_fitting_candidate_says_why():
    # 141 GB of bf16 weights on one 24 GB L4.
    mb = memory.memory_breakdown(SPECS["llama-3.1-70b"], _gpu("l4"), _engine("vllm"),
                                 Candidate(max_model_len=8192), CHAT)
    assert mb.fits is False
    assert mb.kv_tokens == 0
    assert mb.reason and "\n" not in mb.reason
    assert "weights" in mb.reason and "141" in mb.reason and "L4" in mb.reason


def test_too_long_context_does_not_fit():
    # 8B bf16 on an L4: ~5 GB of KV (~41K tokens) cannot hold one 128K-token sequence.
    mb = memory.memory_breakdown(SPECS["llama-3.1-8b"], _gpu("l4"), _engine("vllm"),
                                 Candidate(max_model_len=131072, max_num_batched_tokens=2048), CHAT)
    assert not mb.fits
    assert "max_model_len" in mb.reason or "KV cache" in mb.reason
