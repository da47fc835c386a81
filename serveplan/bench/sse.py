"""The OpenAI protocol on the wire: endpoint URLs, server-sent-event lines, and what a failed request was."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from serveplan.bench.results import TEXTLESS_ERROR, Endpoint, ErrorKind, RequestRecord


def _endpoint_url(url: str, endpoint: Endpoint) -> str:
    u = url.rstrip("/")
    if u.endswith("/completions"):
        return u
    if u.endswith("/v1"):
        u = u[:-3]
    return u + ("/v1/chat/completions" if endpoint == "chat" else "/v1/completions")


def _base_url(url: str) -> str:
    u = url.rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions", "/v1"):
        if u.endswith(suffix):
            return u[: -len(suffix)]
    return u


def _classify_exception(e: BaseException) -> tuple[ErrorKind, str]:
    msg = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return "timeout", msg if str(e) else "timeout"
    if isinstance(e, httpx.ConnectError):
        return "connection", msg
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "disconnected", msg
    if isinstance(e, httpx.TransportError):
        return "connection", msg
    if isinstance(e, _Malformed):
        return "malformed", str(e)
    if isinstance(e, _StreamError):
        return "stream_error", str(e)
    return "other", msg


class _Malformed(Exception):
    pass


class _StreamError(Exception):
    pass


_SSE_FIELDS = ("data", "event", "id", "retry")


def _parse_sse_line(bline: bytes, chat: bool) -> tuple[str | None, dict | None]:
    """One SSE line -> (event, chunk): event is "content" (a chunk carrying text), "done", or None; chunk is the
    parsed JSON object (for its usage and vLLM's per-request metrics), None where the line carried none."""
    line = bline.rstrip(b"\r")
    if not line or line.startswith(b":"):
        return None, None
    field, sep, value = line.partition(b":")
    if not sep or field.decode(errors="replace") not in _SSE_FIELDS:
        raise _Malformed(f"malformed stream: not an SSE line: {line[:80]!r}")
    if field != b"data":
        return None, None
    data = value.strip()
    if data == b"[DONE]":
        return "done", None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise _Malformed(f"malformed stream: data is not JSON: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise _Malformed(f"malformed stream: data is not a JSON object: {data[:80]!r}")
    if chunk.get("error") and not chunk.get("choices"):
        err = chunk["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise _StreamError(f"error in stream: {str(msg)[:200]}")
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            raise _Malformed(f"malformed stream: a choice is not an object: {data[:80]!r}")
        if chat or "delta" in choice:
            d = choice.get("delta") or {}
            text = d.get("content") or d.get("reasoning_content") or d.get("reasoning")
        else:
            text = choice.get("text")
        if text:
            return "content", chunk
    return None, chunk


async def stream_request(client: httpx.AsyncClient, rec: RequestRecord, body: dict, *, endpoint: Endpoint,
                         timeout_s: float, t0: float) -> None:
    """Send one streaming completion and time it into rec: TTFT, every token's arrival (ITL), TPOT, E2E,
    the server's usage counts; any failure is recorded in rec (kind + message), never raised."""
    # Build the request (JSON encoding of a long prompt included) before the clock starts.
    request = client.build_request("POST", _endpoint_url(rec.url, endpoint),
                                   content=json.dumps(body).encode(),
                                   headers={"content-type": "application/json"})
    t_start = time.perf_counter()
    rec.start_s = t_start - t0
    arrivals: list[float] = []
    usage: dict | None = None
    timings: dict | None = None  # vLLM's per-request metrics (--enable-per-request-metrics), in the last chunk
    got_done = False
    t_done = 0.0
    chat = endpoint == "chat"
    try:
        async with asyncio.timeout(timeout_s):
            resp = await client.send(request, stream=True)
            try:
                if resp.status_code >= 400:
                    text = (await resp.aread())[:300].decode(errors="replace").strip()
                    kind: ErrorKind = "http_5xx" if resp.status_code >= 500 else "http_4xx"
                    rec.error, rec.error_kind = f"HTTP {resp.status_code}: {text}", kind
                    return
                buf = b""
                async for raw in resp.aiter_bytes():
                    t_read = time.perf_counter()  # every event in this read arrived now
                    buf += raw
                    *lines, buf = buf.split(b"\n")
                    for bline in lines:
                        if got_done:
                            continue  # after [DONE]: drain the body, so the connection is reused
                        event, chunk = _parse_sse_line(bline, chat)
                        if chunk is not None:
                            usage = chunk.get("usage") or usage
                            timings = chunk.get("metrics") or timings
                        if event == "done":
                            got_done, t_done = True, t_read
                        elif event == "content":
                            arrivals.append(t_read)
                if buf.strip() and not got_done:
                    _parse_sse_line(buf, chat)  # a last line without a newline: still checked
            finally:
                await resp.aclose()
        if not got_done:
            raise _Malformed(f"malformed stream: ended without [DONE] after {len(arrivals)} chunks")
        if not arrivals:
            made = (usage or {}).get("completion_tokens")
            # a model whose tokens are all special ones (skipped in the text) streams none: session 28's dummy-weight
            # Gemma-2 did on 42% of its requests, and the server's usage still counted them
            raise _Malformed(f"malformed stream: {TEXTLESS_ERROR}" + (
                f" (the server generated {made} tokens, none with text: special tokens only?)" if made else ""))
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure is a measurement, never a crash
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        rec.error_kind, rec.error = _classify_exception(e)
        rec.error = rec.error[:300]
        if arrivals:
            rec.ttft_ms = (arrivals[0] - t_start) * 1000
            rec.chunks = len(arrivals)
        return
    rec.ok = True
    rec.chunks = len(arrivals)
    rec.ttft_ms = (arrivals[0] - t_start) * 1000
    rec.e2e_ms = (t_done - t_start) * 1000
    rec.itl_ms = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    if usage and usage.get("prompt_tokens") is not None:
        rec.prompt_tokens, rec.prompt_tokens_reported = int(usage["prompt_tokens"]), True
    if usage and usage.get("completion_tokens") is not None:
        rec.output_tokens, rec.output_tokens_reported = int(usage["completion_tokens"]), True
    else:
        rec.output_tokens = len(arrivals)
    if rec.output_tokens > 1:
        rec.tpot_ms = (rec.e2e_ms - rec.ttft_ms) / (rec.output_tokens - 1)
    if isinstance(timings, dict):
        rec.server_queue_ms = _ms(timings.get("queue_time_ms"))
        rec.server_prefill_ms = _ms(timings.get("time_to_first_token_ms"))
        rec.server_decode_ms = _ms(timings.get("generation_time_ms"))


def _ms(v: object) -> float | None:
    """A server-reported time in ms, or None where it is missing or not a number."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
