"""A stand-in for `vllm serve` that speaks the real OpenAI-compatible protocol over HTTP, without a GPU.

    python -m serveplan.testing.fake_engine serve MODEL [vllm flags...]
    python serveplan/testing/fake_engine.py serve MODEL [vllm flags...]   # what tests/bin/vllm runs

Stdlib only (asyncio streams), so it runs wherever Python does and can be exec'd by a shim named `vllm`:
a rendered `vllm serve ...` argv then runs unchanged. Every flag of the real CLI is accepted (unknown
`--x` flags take their value, if any); --port, --host, --served-model-name, --max-model-len and
--max-num-seqs are honoured.

Endpoints: GET /health, /v1/models, /metrics (Prometheus text, vLLM metric names), /version, /ping;
POST /v1/completions and /v1/chat/completions, plain or streamed (SSE, `data: [DONE]`, usage chunk with
`stream_options.include_usage`). Tokens are words: prompt_tokens is the whitespace-split word count of the
prompt, and the generated text has exactly completion_tokens words.

Behaviour comes from the environment, so a rendered argv stays unchanged:

    FAKE_ENGINE_TTFT_MS          time to first token (default 20)
    FAKE_ENGINE_ITL_MS           delay between tokens (default 5)
    FAKE_ENGINE_ITL_PER_SEQ_MS   extra delay per running sequence, to make throughput saturate (default 0)
    FAKE_ENGINE_STARTUP_S        delay before /health answers 200 (default 0.2)
    FAKE_ENGINE_MAX_CONCURRENCY  running-request cap beyond which requests wait (default: --max-num-seqs)
    FAKE_ENGINE_MODE             normal | crash | hang | oom | ignore_sigterm | fail_requests | worker_crash
                                 (worker_crash: a TP worker's exception in the memory profile, then the API
                                 server stays up and /health never answers, as vLLM 0.26.0 did in session 25)
    FAKE_ENGINE_CRASH_AFTER_S    crash mode: become healthy, then crash this many seconds later
                                 (unset: crash at the end of startup, never healthy)
    FAKE_ENGINE_LIFETIME_S       exit by itself after this many seconds (0 = never); a safety net for tests
    FAKE_ENGINE_JIT_AT_REQUEST   log vLLM's "Triton kernel JIT compilation during inference" warning when the N-th
                                 generation request arrives (session 26's fused-MoE compile under load); unset: never
"""


from __future__ import annotations

import asyncio
import os
import sys

if __package__:
    from serveplan.testing.fake_vllm.config import MODES, Args, Behaviour, parse_args
    from serveplan.testing.fake_vllm.http_io import REASONS, HTTPError, Request, read_request
    from serveplan.testing.fake_vllm.metrics import Histogram, Stats
    from serveplan.testing.fake_vllm.openai_api import WORDS, Server
    from serveplan.testing.fake_vllm.process import bind, serve
    from serveplan.testing.fake_vllm.vllm_log import OOM_LINE, VERSION, log, traceback_lines, uvicorn
else:
    # Run as a file (tests/bin/vllm, with any python3): importing the serveplan package would need its
    # dependencies, so the parts beside this file are imported as the top-level package fake_vllm.
    from fake_vllm.config import MODES, Args, Behaviour, parse_args
    from fake_vllm.http_io import REASONS, HTTPError, Request, read_request
    from fake_vllm.metrics import Histogram, Stats
    from fake_vllm.openai_api import WORDS, Server
    from fake_vllm.process import bind, serve
    from fake_vllm.vllm_log import OOM_LINE, VERSION, log, traceback_lines, uvicorn

# The names this module held before its parts moved to fake_vllm/, for code that imports them from here.
__all__ = ["MODES", "OOM_LINE", "REASONS", "VERSION", "WORDS", "Args", "Behaviour", "HTTPError", "Histogram",
           "Request", "Server", "Stats", "bind", "log", "main", "parse_args", "read_request", "serve",
           "traceback_lines", "uvicorn"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] in ("--version", "-v"):
        print(VERSION)
        return 0
    args = parse_args(argv)
    beh = Behaviour.from_env()
    code = asyncio.run(serve(args, beh))
    sys.stdout.flush()
    # Skip interpreter teardown: open client connections must not delay the exit.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())