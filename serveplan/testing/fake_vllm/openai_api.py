"""The OpenAI-compatible API of the fake engine: routes, the GET endpoints, and completions / chat completions
generated word by word at the configured pace, plain or streamed, with the request slots and KV-cache tokens
accounted in Stats as the engine would."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import zlib

from .config import Args, Behaviour
from .http_io import (HTTPError, Request, end_event_stream, error_body, read_request, send, send_event, send_json,
                      start_event_stream)
from .metrics import Stats, prometheus_text
from .vllm_log import VERSION, log

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
         "under bright northern lights").split()


class Server:
    def __init__(self, args: Args, beh: Behaviour):
        self.args, self.beh = args, beh
        self.stats = Stats()
        self.loaded = False
        self.created = int(time.time())
        cap = args.max_num_seqs if beh.max_concurrency is None else min(args.max_num_seqs, beh.max_concurrency)
        self.cap = max(1, cap)
        self.slots = asyncio.Semaphore(self.cap)
        self.generations = 0  # generation requests received (FAKE_ENGINE_JIT_AT_REQUEST counts them)
        self.stopping = asyncio.Event()
        # vLLM's --api-key (or VLLM_API_KEY): /v1 requests need "Authorization: Bearer KEY"
        self.api_key = (args.other.get("api-key") or [None])[0] or os.environ.get("VLLM_API_KEY") or None
        # vLLM's --enable-per-request-metrics: the final usage chunk carries the request's engine-side timings
        self.per_request_metrics = "enable-per-request-metrics" in args.other

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
                    await send_json(writer, e.status, error_body(e.status, e.message, e.type), keep)
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

    async def route(self, req: Request, writer, keep: bool) -> None:
        path = req.path.rstrip("/") or "/"
        get_routes = {"/health": self.health, "/ping": self.health, "/v1/models": self.models,
                      "/metrics": self.metrics, "/version": self.version}
        post_routes = {"/v1/completions": self.completions, "/v1/chat/completions": self.chat}
        if path.startswith("/v1") and self.api_key and \
                req.headers.get("authorization", "") != f"Bearer {self.api_key}":
            await send_json(writer, 401, {"error": "Unauthorized"}, keep)  # vLLM --api-key: its /v1 routes only
            return
        if path in get_routes:
            if req.method not in ("GET", "HEAD"):
                raise HTTPError(405, "Method Not Allowed", "MethodNotAllowed")
            if path == "/health" and not self.loaded:
                await send(writer, 503, b"", "application/json", keep)
                return
            status, body, ctype = get_routes[path]()
            await send(writer, status, body, ctype, keep)
            return
        if path == "/ping" and req.method == "POST":
            status, body, ctype = self.health()
            await send(writer, status, body, ctype, keep)
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
        text = prometheus_text(self.stats, self.args.name, kv_capacity=self.cap * self.args.max_model_len)
        return 200, text.encode(), "text/plain; version=0.0.4; charset=utf-8"

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
        self.generations += 1
        if self.generations == self.beh.jit_at_request:  # vLLM 0.26.0's JIT monitor, word for word (session 26)
            log("Triton kernel JIT compilation during inference: fused_moe_kernel. This causes a latency spike; "
                "consider extending warmup to cover this shape/config.", level="WARNING", where="jit_monitor.py:135",
                proc=f"EngineCore pid={os.getpid()}")
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
            t_sched = time.perf_counter()
            self.stats.waiting -= 1
            waiting = False
            self.stats.running += 1
            self.stats.kv_tokens += sum(counts)
            self.stats.prompt_tokens += sum(counts)
            started = True
            if stream:
                start_event_stream(writer, keep)
                if chat:
                    await send_event(writer, self._chunk(rid, obj, created, model, [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None}], include_usage, None))
            first_at = t0 + self.beh.ttft_s
            last_tok = first_tok = None
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
                    first_tok = now
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
                    await send_event(writer, self._chunk(rid, obj, created, model, choices, include_usage, usage))
                step += 1
            if stream:
                if include_usage:
                    last = self._chunk(rid, obj, created, model, [], True, self._usage(counts, texts))
                    if self.per_request_metrics and n == 1 and first_tok is not None:
                        last["metrics"] = self._timings(t0, t_sched, first_tok, last_tok, len(texts[0]))
                    await send_event(writer, last)
                await end_event_stream(writer)
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
                await send_json(writer, 200, {"id": rid, "object": out_obj, "created": created,
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
    def _timings(t_queued: float, t_sched: float, t_first: float, t_last: float, tokens: int) -> dict:
        """vLLM's PerRequestTimingMetrics (entrypoints/generate/base/serving.py): queue = queued to scheduled,
        time_to_first_token = scheduled to first token, generation = first to last token, all in ms."""
        out = {"time_to_first_token_ms": (t_first - t_sched) * 1000,
               "generation_time_ms": (t_last - t_first) * 1000, "queue_time_ms": (t_sched - t_queued) * 1000,
               "tokens_per_second": tokens / max(t_last - t_sched, 1e-9)}
        if tokens > 1:
            out["mean_itl_ms"] = (t_last - t_first) / (tokens - 1) * 1000
        return out

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
