"""The fake engine as a process: bind the port, start up (or fail to) with vLLM's log lines, serve until
SIGTERM/SIGINT, shut down as uvicorn does. FAKE_ENGINE_MODE picks the failure: crash, hang, oom, worker_crash,
ignore_sigterm (fail_requests is the API's)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from .config import Args, Behaviour
from .openai_api import Server
from .vllm_log import OOM_LINE, VERSION, log, traceback_lines, uvicorn, worker_crash_lines


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(args: Args, beh: Behaviour) -> int:
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    done = asyncio.Event()
    code = 0

    def on_signal(signum: int) -> None:
        log(f"Received {signal.Signals(signum).name}, shutting down.", where="launcher.py:99")
        done.set()

    if beh.mode == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, on_signal, s)
    if beh.lifetime_s > 0:
        loop.call_later(beh.lifetime_s, lambda: os._exit(3))

    log(f"vLLM API server version {VERSION}", where="api_server.py:1805")
    shown = {"model": args.model, "host": args.host, "port": args.port, "max_model_len": args.max_model_len,
             "max_num_seqs": args.max_num_seqs, **{k.replace("-", "_"): (v[0] if len(v) == 1 else v or True)
                                                    for k, v in args.other.items()}}
    log(f"non-default args: {shown}", where="utils.py:326")
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        traceback_lines([("/usr/local/bin/vllm", 10, "<module>"),
                         ("/usr/local/lib/python3.12/dist-packages/vllm/entrypoints/openai/api_server.py", 1884,
                          "run_server"),
                         ("/usr/local/lib/python3.12/dist-packages/vllm/entrypoints/openai/api_server.py", 1846,
                          "create_server_socket"),
                         ("/usr/local/lib/python3.12/dist-packages/vllm/entrypoints/openai/api_server.py", 1850,
                          "<lambda>")],
                        f"OSError: {e}")
        return 1

    server = Server(args, beh)
    srv = await asyncio.start_server(server.handle, sock=sock, limit=16 * 1024 * 1024)
    tp = args.other.get("tensor-parallel-size", ["1"])
    log("Resolved architecture: LlamaForCausalLM", where="model.py:547")
    log(f"Using max model len {args.max_model_len}", where="model.py:1510")
    log(f"Initializing a V1 LLM engine (v{VERSION}) with config: model='{args.model}', "
        f"tensor_parallel_size={tp[0] if tp else 1}, max_seq_len={args.max_model_len}", where="core.py:77")

    async def startup() -> int | None:
        """The engine's load; returns an exit code when the mode says it fails."""
        if beh.mode == "oom":
            await asyncio.sleep(beh.startup_s / 2)
            log("Model loading took 76.40 GiB and 12.345 seconds", where="gpu_model_runner.py:2392")
            log("EngineCore failed to start.", level="ERROR", where="core.py:708", err=True)
            traceback_lines([("/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", 699,
                              "run_engine_core"),
                             ("/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_worker.py", 263,
                              "determine_available_memory"),
                             ("/usr/local/lib/python3.12/dist-packages/torch/utils/_contextlib.py", 120,
                              "decorate_context")], OOM_LINE)
            print("RuntimeError: Engine core initialization failed. See root cause above. Failed core "
                  "proc(s): {}", file=sys.stderr, flush=True)
            return 1
        log("Loading weights took 0.42 seconds", where="default_loader.py:267")
        await asyncio.sleep(beh.startup_s)
        if beh.mode == "hang":
            log("Waiting for 1 local, 0 remote core engine proc(s) to start.", where="utils.py:853")
            await asyncio.Event().wait()
        if beh.mode == "worker_crash":
            worker_crash_lines(pid)
            await asyncio.Event().wait()
        if beh.mode == "crash" and beh.crash_after_s is None:
            await crash()
            return 1
        log(f"# GPU blocks: {server.cap * args.max_model_len // 16}", where="kv_cache_utils.py:1087")
        log(f"Maximum concurrency for {args.max_model_len} tokens per request: {server.cap:.2f}x",
            where="kv_cache_utils.py:1091")
        log(f"Starting vLLM API server 0 on http://{args.host}:{args.port}", where="api_server.py:1912")
        log(f"Starting vLLM API server on http://{args.host}:{args.port}", where="launcher.py:34")
        for route in ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"):
            log(f"Route: {route}", where="launcher.py:42")
        uvicorn(f"Started server process [{pid}]")
        uvicorn("Waiting for application startup.")
        server.loaded = True
        uvicorn("Application startup complete.")
        if beh.mode == "crash":
            await asyncio.sleep(beh.crash_after_s or 0)
            await crash()
            return 1
        return None

    async def crash() -> None:
        log("EngineCore encountered a fatal error.", level="ERROR", where="core.py:761", err=True)
        traceback_lines([("/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", 752,
                          "run_engine_core"),
                         ("/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", 779, "run_busy_loop"),
                         ("/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", 300, "step")],
                        "RuntimeError: CUDA error: an illegal memory access was encountered")

    start_task = asyncio.create_task(startup())
    stop_task = asyncio.create_task(done.wait())
    await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if start_task.done() and start_task.result() is not None:
        code = start_task.result()
    else:
        if not stop_task.done():
            await stop_task
        uvicorn("Shutting down")
        server.stopping.set()
        uvicorn("Waiting for application shutdown.")
        uvicorn("Application shutdown complete.")
        uvicorn(f"Finished server process [{pid}]")
    start_task.cancel()
    stop_task.cancel()
    srv.close()
    return code
