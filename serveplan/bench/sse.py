"""The OpenAI protocol on the wire: endpoint URLs, server-sent-event lines, and what a failed request was."""

from __future__ import annotations

import asyncio
import json

import httpx

from serveplan.bench.results import Endpoint, ErrorKind


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
    """One SSE line -> (event, usage): event is "content" (a chunk carrying text), "done", or None."""
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
    usage = chunk.get("usage") or None
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            raise _Malformed(f"malformed stream: a choice is not an object: {data[:80]!r}")
        if chat or "delta" in choice:
            d = choice.get("delta") or {}
            text = d.get("content") or d.get("reasoning_content") or d.get("reasoning")
        else:
            text = choice.get("text")
        if text:
            return "content", usage
    return None, usage
