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
    FAKE_ENGINE_MODE             normal | crash | hang | oom | ignore_sigterm | fail_requests
    FAKE_ENGINE_CRASH_AFTER_S    crash mode: become healthy, then crash this many seconds later
                                 (unset: crash at the end of startup, never healthy)
    FAKE_ENGINE_LIFETIME_S       exit by itself after this many seconds (0 = never); a safety net for tests
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, field

VERSION = "0.26.0"
MODES = ("normal", "crash", "hang", "oom", "ignore_sigterm", "fail_requests")
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
         "under bright northern lights").split()
OOM_LINE = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
            "capacity of 79.19 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has "
            "78.16 GiB memory in use. Of the allocated memory 76.40 GiB is allocated by PyTorch, and 1.11 GiB "
            "is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


# ---------------------------------------------------------------------------------------------- config
@dataclass
class Args:
    model: str = "facebook/opt-125m"
    host: str = "0.0.0.0"
    port: int = 8000
    served_model_name: str | None = None
    max_model_len: int = 8192
    max_num_seqs: int = 256
    other: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.served_model_name or self.model


def parse_args(argv: list[str]) -> Args:
    """Parse `[serve] MODEL [--flag [value...]]...` the way vLLM's CLI accepts it, keeping unknown flags."""
    args = Args()
    rest = list(argv)
    if rest and rest[0] == "serve":
        rest.pop(0)
    flags: dict[str, list[str]] = {}
    positional: list[str] = []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("--") and len(tok) > 2:
            key, eq, val = tok[2:].partition("=")
            key = key.replace("_", "-")
            vals = [val] if eq else []
            if not eq:
                while i + 1 < len(rest) and not _looks_like_flag(rest[i + 1]):
                    vals.append(rest[i + 1])
                    i += 1
            flags[key] = vals
        elif tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
            flags[tok[1:]] = []
        else:
            positional.append(tok)
        i += 1
    if positional:
        args.model = positional[0]
    for key, vals in flags.items():
        val = vals[0] if vals else ""
        if key in ("model", "model-path"):
            args.model = val
        elif key == "port":
            args.port = int(val)
        elif key == "host":
            args.host = val or args.host
        elif key == "served-model-name":
            args.served_model_name = val or None
        elif key in ("max-model-len", "context-length", "max-seq-len"):
            args.max_model_len = _parse_len(val)
        elif key in ("max-num-seqs", "max-running-requests", "max-batch-size"):
            args.max_num_seqs = int(val)
        else:
            args.other[key] = vals
    return args


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _looks_like_flag(s: str) -> bool:
    return s.startswith("-") and len(s) > 1 and not _is_number(s)


def _parse_len(val: str) -> int:
    """vLLM's human-readable ints: 8192, 8k (8000), 8K (8192), 1m, 1M."""
    v = val.strip()
    mult = {"k": 1000, "K": 1024, "m": 1000_000, "M": 1024 * 1024}.get(v[-1:])
    return int(float(v[:-1]) * mult) if mult else int(v)


@dataclass
class Behaviour:
    ttft_s: float = 0.020
    itl_s: float = 0.005
    itl_per_seq_s: float = 0.0
    startup_s: float = 0.2
    mode: str = "normal"
    max_concurrency: int | None = None
    crash_after_s: float | None = None
    lifetime_s: float = 0.0

    @classmethod
    def from_env(cls, env=os.environ) -> "Behaviour":
        def num(key: str, default: float) -> float:
            raw = env.get(key, "").strip()
            return float(raw) if raw else default

        mode = env.get("FAKE_ENGINE_MODE", "normal").strip().lower() or "normal"
        if mode not in MODES:
            raise SystemExit(f"FAKE_ENGINE_MODE must be one of {', '.join(MODES)}, not {mode!r}")
        cap = env.get("FAKE_ENGINE_MAX_CONCURRENCY", "").strip()
        crash_after = env.get("FAKE_ENGINE_CRASH_AFTER_S", "").strip()
        return cls(ttft_s=num("FAKE_ENGINE_TTFT_MS", 20) / 1000, itl_s=num("FAKE_ENGINE_ITL_MS", 5) / 1000,
                   itl_per_seq_s=num("FAKE_ENGINE_ITL_PER_SEQ_MS", 0) / 1000,
                   startup_s=num("FAKE_ENGINE_STARTUP_S", 0.2), mode=mode,
                   max_concurrency=int(cap) if cap else None,
                   crash_after_s=float(crash_after) if crash_after else None,
                   lifetime_s=num("FAKE_ENGINE_LIFETIME_S", 0))


# ---------------------------------------------------------------------------------------------- logging
def log(msg: str, *, level: str = "INFO", where: str = "api_server.py:1870", err: bool = False) -> None:
    """A log line in vLLM's format: `INFO 07-15 10:11:12 [api_server.py:1870] message`."""
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [{where}] {msg}", file=sys.stderr if err else sys.stdout, flush=True)


def uvicorn(msg: str) -> None:
    print(f"INFO:     {msg}", flush=True)


def traceback_lines(frames: list[tuple[str, int, str]], last: str) -> None:
    print("Traceback (most recent call last):", file=sys.stderr)
    for path, line, fn in frames:
        print(f'  File "{path}", line {line}, in {fn}', file=sys.stderr)
    print(last, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- metrics
class Histogram:
    BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.BUCKETS):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str, labels: str, help_: str) -> list[str]:
        out = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for b, c in zip(self.BUCKETS, self.counts):
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {float(c)}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.count)}')
        out.append(f"{name}_count{{{labels}}} {float(self.count)}")
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        return out


@dataclass
class Stats:
    running: int = 0
    waiting: int = 0
    kv_tokens: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    ttft: Histogram = field(default_factory=Histogram)
    e2e: Histogram = field(default_factory=Histogram)
    itl: Histogram = field(default_factory=Histogram)


# ---------------------------------------------------------------------------------------------- HTTP
class HTTPError(Exception):
    def __init__(self, status: int, message: str, type_: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return Request(method.upper(), target.split("?", 1)[0], headers, body)


class Server:
    def __init__(self, args: Args, beh: Behaviour):
        self.args, self.beh = args, beh
        self.stats = Stats()
        self.loaded = False
        self.created = int(time.time())
        cap = args.max_num_seqs if beh.max_concurrency is None else min(args.max_num_seqs, beh.max_concurrency)
        self.cap = max(1, cap)
        self.slots = asyncio.Semaphore(self.cap)
        self.stopping = asyncio.Event()
        self.labels = f'engine="0",model_name="{args.name}"'

    # ---- connection loop
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.stopping.is_set():
                req = await read_request(reader)
                if req is None:
                    break
                keep = req.headers.get("connection", "").lower() != "close"
                try:
                    await self.route(req, writer, keep)
                except HTTPError as e:
                    await self.send_json(writer, e.status, _error(e.status, e.message, e.type), keep)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def send(self, writer, status: int, body: bytes, ctype: str, keep: bool) -> None:
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\ncontent-type: {ctype}\r\n"
                f"content-length: {len(body)}\r\nserver: uvicorn\r\n"
                f"connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()

    async def send_json(self, writer, status: int, obj, keep: bool) -> None:
        await self.send(writer, status, json.dumps(obj).encode(), "application/json", keep)

    async def route(self, req: Request, writer, keep: bool) -> None:
        path = req.path.rstrip("/") or "/"
        get_routes = {"/health": self.health, "/ping": self.health, "/v1/models": self.models,
                      "/metrics": self.metrics, "/version": self.version}
        post_routes = {"/v1/completions": self.completions, "/v1/chat/completions": self.chat}
        if path in get_routes:
            if req.method not in ("GET", "HEAD"):
                raise HTTPError(405, "Method Not Allowed", "MethodNotAllowed")
            if path == "/health" and not self.loaded:
                await self.send(writer, 503, b"", "application/json", keep)
                return
            status, body, ctype = get_routes[path]()
            await self.send(writer, status, body, ctype, keep)
            return
        if path == "/ping" and req.method == "POST":
            status, body, ctype = self.health()
            await self.send(writer, status, body, ctype, keep)
            return
        if path not in post_routes:
            raise HTTPError(404, "Not Found", "NotFoundError")
        if req.method != "POST":
            raise HTTPError(405, "Method Not Allowed", "MethodNotAllowed")
        if not self.loaded:
            raise HTTPError(503, "The server is still loading the model.", "ServiceUnavailableError")
        if self.beh.mode == "fail_requests":
            raise HTTPError(500, "EngineCore encountered an issue. See stack trace (above) for the root cause.",
                            "InternalServerError")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError as e:
            raise HTTPError(400, f"Invalid JSON body: {e}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "The request body must be a JSON object.")
        await post_routes[path](body, writer, keep)

    # ---- GET handlers
    def health(self):
        return 200, b"", "application/json"

    def version(self):
        return 200, json.dumps({"version": VERSION}).encode(), "application/json"

    def models(self):
        card = {"id": self.args.name, "object": "model", "created": self.created, "owned_by": "vllm",
                "root": self.args.model, "parent": None, "max_model_len": self.args.max_model_len,
                "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                                "created": self.created, "allow_create_engine": False,
                                "allow_sampling": True, "allow_logprobs": True,
                                "allow_search_indices": False, "allow_view": True,
                                "allow_fine_tuning": False, "organization": "*", "group": None,
                                "is_blocking": False}]}
        return 200, json.dumps({"object": "list", "data": [card]}).encode(), "application/json"

    def metrics(self):
        s, lb = self.stats, self.labels
        kv_capacity = self.cap * self.args.max_model_len
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lb}}} {float(s.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lb}}} {float(s.waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{lb}}} {min(1.0, s.kv_tokens / kv_capacity) if kv_capacity else 0.0}",
            "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{{{lb}}} 0.0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{lb}}} {float(s.prompt_tokens)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lb}}} {float(s.generation_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason, n in s.finished.items():
            lines.append(f'vllm:request_success_total{{engine="0",finished_reason="{reason}",'
                         f'model_name="{self.args.name}"}} {float(n)}')
        lines += s.ttft.render("vllm:time_to_first_token_seconds", lb, "Histogram of time to first token in seconds.")
        lines += s.itl.render("vllm:inter_token_latency_seconds", lb, "Histogram of inter-token latency in seconds.")
        lines += s.e2e.render("vllm:e2e_request_latency_seconds", lb, "Histogram of e2e request latency in seconds.")
        return 200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8"

    # ---- generation
    def _check_model(self, body: dict) -> str:
        model = body.get("model") or self.args.name
        if model not in (self.args.name, self.args.model):
            raise HTTPError(404, f"The model `{model}` does not exist.", "NotFoundError")
        return model

    def _limits(self, body: dict, prompt_tokens: int, chat: bool) -> tuple[int, bool, int]:
        max_tokens = body.get("max_completion_tokens") if chat else None
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        room = self.args.max_model_len - prompt_tokens
        if max_tokens is None:
            max_tokens = room if chat else 16
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise HTTPError(400, f"max_tokens must be at least 1, got {max_tokens}.")
        if prompt_tokens + max_tokens > self.args.max_model_len:
            what = "messages" if chat else "prompt"
            raise HTTPError(400, f"This model's maximum context length is {self.args.max_model_len} tokens. "
                                 f"However, you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} "
                                 f"in the {what}, {max_tokens} in the completion). Please reduce the length "
                                 f"of the {what} or completion.")
        min_tokens = int(body.get("min_tokens") or 0)
        return max_tokens, bool(body.get("ignore_eos", False)), min_tokens

    @staticmethod
    def _natural_len(seed: str, min_tokens: int) -> int:
        """Where the 'model' would stop by itself (EOS) when ignore_eos is false: 8..127 tokens."""
        return max(min_tokens, 8 + zlib.crc32(seed.encode()) % 120)

    async def completions(self, body: dict, writer, keep: bool) -> None:
        model = self._check_model(body)
        prompt = body.get("prompt")
        if prompt is None:
            raise HTTPError(400, "Field 'prompt' is required.")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt:
            prompts = list(prompt)
        else:
            raise HTTPError(400, "Field 'prompt' must be a string, a list of strings or a list of token ids.")
        counts = [len(p) if isinstance(p, list) else len(str(p).split()) for p in prompts]
        limits = [self._limits(body, c, chat=False) for c in counts]
        seeds = [json.dumps(p) for p in prompts]
        await self._generate(body, writer, keep, model, counts, limits, seeds, chat=False)

    async def chat(self, body: dict, writer, keep: bool) -> None:
        model = self._check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPError(400, "Field 'messages' must be a non-empty list.")
        words = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            words += len(str(content or "").split())
        limits = [self._limits(body, words, chat=True)]
        await self._generate(body, writer, keep, model, [words], limits, [json.dumps(messages)], chat=True)

    async def _generate(self, body, writer, keep, model, counts, limits, seeds, *, chat: bool) -> None:
        stream = bool(body.get("stream", False))
        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage")) if stream else False
        continuous = bool(opts.get("continuous_usage_stats")) if stream else False
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        targets, stops = [], []
        for (max_tokens, ignore_eos, min_tokens), seed in zip(limits, seeds):
            natural = max_tokens if ignore_eos else self._natural_len(seed, min_tokens)
            targets.append(min(max_tokens, natural))
            stops.append("length" if natural >= max_tokens else "stop")
        n = len(counts)
        texts: list[list[str]] = [[] for _ in range(n)]
        t0 = time.perf_counter()

        self.stats.waiting += 1
        waiting = True
        started = False
        try:
            await self.slots.acquire()
            self.stats.waiting -= 1
            waiting = False
            self.stats.running += 1
            self.stats.kv_tokens += sum(counts)
            self.stats.prompt_tokens += sum(counts)
            started = True
            if stream:
                head = ("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                        "transfer-encoding: chunked\r\nserver: uvicorn\r\ncache-control: no-cache\r\n"
                        f"connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
                writer.write(head.encode())
                if chat:
                    await self._sse(writer, self._chunk(rid, obj, created, model, [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None}], include_usage, None))
            first_at = t0 + self.beh.ttft_s
            last_tok = None
            step = 0
            while any(len(texts[i]) < targets[i] for i in range(n)):
                if step == 0:
                    due = first_at
                else:
                    due = last_tok + self.beh.itl_s + self.beh.itl_per_seq_s * self.stats.running
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.perf_counter()
                if step == 0:
                    self.stats.ttft.observe(now - t0)
                else:
                    self.stats.itl.observe(now - last_tok)
                last_tok = now
                choices = []
                for i in range(n):
                    if len(texts[i]) >= targets[i]:
                        continue
                    word = WORDS[(len(texts[i]) + zlib.crc32(seeds[i].encode())) % len(WORDS)]
                    piece = word if not texts[i] else " " + word
                    texts[i].append(piece)
                    self.stats.generation_tokens += 1
                    self.stats.kv_tokens += 1
                    done = len(texts[i]) >= targets[i]
                    fin = stops[i] if done else None
                    if chat:
                        choices.append({"index": i, "delta": {"content": piece}, "logprobs": None,
                                        "finish_reason": fin, **({"stop_reason": None} if done else {})})
                    else:
                        choices.append({"index": i, "text": piece, "logprobs": None, "finish_reason": fin,
                                        "stop_reason": None})
                if stream:
                    usage = self._usage(counts, texts) if continuous else None
                    await self._sse(writer, self._chunk(rid, obj, created, model, choices, include_usage, usage))
                step += 1
            if stream:
                if include_usage:
                    await self._sse(writer, self._chunk(rid, obj, created, model, [], True, self._usage(counts, texts)))
                writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
                await writer.drain()
            else:
                if chat:
                    choices = [{"index": 0, "message": {"role": "assistant", "content": "".join(texts[0]),
                                                        "reasoning_content": None, "tool_calls": []},
                                "logprobs": None, "finish_reason": stops[0], "stop_reason": None}]
                    out_obj = "chat.completion"
                else:
                    choices = [{"index": i, "text": "".join(texts[i]), "logprobs": None,
                                "finish_reason": stops[i], "stop_reason": None, "prompt_logprobs": None}
                               for i in range(n)]
                    out_obj = "text_completion"
                await self.send_json(writer, 200, {"id": rid, "object": out_obj, "created": created,
                                                   "model": model, "choices": choices,
                                                   "usage": self._usage(counts, texts)}, keep)
            for i in range(n):
                self.stats.finished[stops[i]] += 1
            self.stats.e2e.observe(time.perf_counter() - t0)
        except (ConnectionError, asyncio.CancelledError):
            self.stats.finished["abort"] += 1
            raise
        finally:
            if waiting:
                self.stats.waiting -= 1
            if started:
                self.stats.running -= 1
                self.stats.kv_tokens -= sum(counts) + sum(len(t) for t in texts)
                self.slots.release()

    @staticmethod
    def _usage(counts: list[int], texts: list[list[str]]) -> dict:
        p, c = sum(counts), sum(len(t) for t in texts)
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c, "prompt_tokens_details": None}

    @staticmethod
    def _chunk(rid, obj, created, model, choices, include_usage: bool, usage) -> dict:
        out = {"id": rid, "object": obj, "created": created, "model": model, "choices": choices}
        if include_usage or usage is not None:
            out["usage"] = usage
        return out

    @staticmethod
    async def _sse(writer, obj: dict) -> None:
        data = b"data: " + json.dumps(obj).encode() + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()


def _error(status: int, message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": status}}


# ---------------------------------------------------------------------------------------------- main
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
    log(f"Resolved architecture: LlamaForCausalLM", where="model.py:547")
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
