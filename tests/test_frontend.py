"""How many API servers a vLLM replica gets (planner/frontend.py, session 30) and what the model makes of them."""

from __future__ import annotations

import pytest

from serveplan.planner.capacity import capacity_at_slo
from serveplan.planner.config import build_request
from serveplan.planner.estimate import Scorer
from serveplan.planner.frontend import MAX_API_SERVERS, OUTPUT_TOK_S_PER_API_SERVER, api_servers_for
from serveplan.planner.spec import Candidate


@pytest.fixture(scope="module")
def req():
    return build_request(model="llama-3.1-8b", gpus="1xH200")


def test_api_servers_grow_with_the_output_rate_and_stop_at_the_cap(req):
    cand = Candidate(max_model_len=8192)
    per_request = req.traffic.output_len.mean
    counts = [api_servers_for(req, cand, rps) for rps in (0, 1, 10, 20, 40, 80, 1e4)]
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == MAX_API_SERVERS
    just_over = OUTPUT_TOK_S_PER_API_SERVER / per_request * 1.01
    assert api_servers_for(req, cand, just_over * 0.98) == 1 and api_servers_for(req, cand, just_over) == 2


def test_a_fixed_count_and_other_engines(req):
    fixed = req.model_copy(update={"engine": req.engine.model_copy(update={"api_server_count": 3})})
    assert api_servers_for(fixed, Candidate(max_model_len=8192), 0.1) == 3
    assert api_servers_for(req, Candidate(engine="sglang", max_model_len=8192), 1e4) == 1


def test_more_api_servers_never_slow_the_front_end(req):
    one = Scorer(req).step_model(Candidate(max_model_len=8192))
    two = Scorer(req).step_model(Candidate(max_model_len=8192, api_server_count=2))
    for tok_s in (0.0, 5e3, 3e4):
        assert two.request_ms(1024, tok_s) <= one.request_ms(1024, tok_s)
    assert two.request_ms(1024, 3e4) < one.request_ms(1024, 3e4)  # the shipped front-end term is not zero
    for batch in (1, 64, 512):
        assert two.step_ms(batch, batch * 1500) <= one.step_ms(batch, batch * 1500)


def test_the_capacity_sets_the_count_the_launch_renders(req):
    # The 8B FP8 plan for an H200 serves ~27 req/s of chat (~7,000 output tokens/s): session 30's one API server held
    # a full core there, two did not.
    cand = Candidate(weight_dtype="fp8", max_num_seqs=512, max_num_batched_tokens=8192, max_model_len=16384)
    sc = Scorer(req)
    est = capacity_at_slo(sc, sc.score(cand, simulated=True))
    per_replica_tok_s = est.predictions.max_rps / est.config.replicas * req.traffic.output_len.mean
    assert per_replica_tok_s > OUTPUT_TOK_S_PER_API_SERVER
    assert est.config.api_server_count == api_servers_for(req, cand, est.predictions.max_rps) >= 2
    assert "api_servers" in est.predictions.sources
    # a 70B on two A100s streams a fraction of that: one server, no flag, no note
    big = build_request(model="llama-70b", gpus="2xA100")
    sc = Scorer(big)
    est = capacity_at_slo(sc, sc.score(Candidate(tp=2, weight_dtype="fp8", max_model_len=8192), simulated=True))
    assert est.config.api_server_count == 1 and "api_servers" not in est.predictions.sources
