"""The parts of the fake vLLM server (serveplan/testing/fake_engine.py is its entry point): config (argv and
environment), vllm_log (log lines), metrics (engine counters), http_io (HTTP/1.1 and SSE), openai_api (the
endpoints and token generation), process (startup, failure modes, shutdown).

Standard library only, and relative imports only: tests/bin/vllm runs fake_engine.py as a file with whatever
python3 is on PATH, where this folder is imported as the top-level package `fake_vllm`."""
