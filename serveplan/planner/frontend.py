"""How many API-server processes a vLLM replica gets (`--api-server-count`).

vLLM's API server is one Python process by default: it tokenizes every prompt, and detokenizes and streams every
output token over SSE. Past some thousands of output tokens/s it holds a whole core and requests wait in front of
the engine, whatever the GPU could do. Session 30 (one H200, benchmarks/gpu/results/session30, docs/accuracy.md
"Session 30"): the 8B FP8 plan's flags at chat 27 req/s, one API server against two on one host:
- one: the process averaged 64% of a core and held a full core in the busiest tenth of the seconds at ~6,000
  output tokens/s; TTFT P50 613 ms (engine prefill 83 ms), TPOT mean 28.6 ms, 22.7 req/s served while loaded;
- two: 40% and 26% of a core; TTFT P50 318 ms, TPOT mean 19.6 ms, 26.3 req/s served.
The same flags at the same rate on session 24's host (a faster CPU: the load generator's own event-loop lag P99 54
against 159 ms) gave TTFT P50 161 ms with one server: the front end's ceiling is the host's single-core speed, which
a plan does not know. Below ~2,500 output tokens/s (session 29's 32B servers) one API server used 18-21% of a core.

So a replica gets one API server per OUTPUT_TOK_S_PER_API_SERVER output tokens/s it serves at capacity: two thirds
of the rate that saturated one on the slower host, which keeps each near session 30's 40%. More processes cost a
little host memory and nothing on the GPU (the engine core is one process either way). engine.api_server_count
fixes the number instead.
"""

from __future__ import annotations

import math

from serveplan.planner.spec import Candidate, PlanRequest

OUTPUT_TOK_S_PER_API_SERVER = 4_000.0
MAX_API_SERVERS = 4  # a replica's host also runs the engine core, and with TP>1 a worker per GPU


def api_servers_for(req: PlanRequest, cand: Candidate, replica_rps: float) -> int:
    """API servers for one replica of cand serving replica_rps requests/s of req's traffic: engine.api_server_count
    where set, else one per OUTPUT_TOK_S_PER_API_SERVER output tokens/s (at most MAX_API_SERVERS); 1 for an engine
    other than vLLM (none of the others has the flag)."""
    if cand.engine != "vllm":
        return 1
    if req.engine.api_server_count is not None:
        return req.engine.api_server_count
    output_tok_s = max(0.0, replica_rps) * req.traffic.output_len.mean
    return max(1, min(MAX_API_SERVERS, math.ceil(output_tok_s / OUTPUT_TOK_S_PER_API_SERVER)))
