"""HTTP/1.1 on asyncio streams, as much of it as OpenAI clients use: one request in (Content-Length or chunked
body), a response or a chunked stream of server-sent events out, errors in OpenAI's JSON shape."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


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


async def send(writer, status: int, body: bytes, ctype: str, keep: bool) -> None:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\ncontent-type: {ctype}\r\n"
            f"content-length: {len(body)}\r\nserver: uvicorn\r\n"
            f"connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()


async def send_json(writer, status: int, obj, keep: bool) -> None:
    await send(writer, status, json.dumps(obj).encode(), "application/json", keep)


def start_event_stream(writer, keep: bool) -> None:
    """The head of a `text/event-stream` response; its events follow as chunks (send_event)."""
    head = ("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            "transfer-encoding: chunked\r\nserver: uvicorn\r\ncache-control: no-cache\r\n"
            f"connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
    writer.write(head.encode())


async def send_event(writer, obj: dict) -> None:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def end_event_stream(writer) -> None:
    """`data: [DONE]` and the last, empty chunk."""
    writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    await writer.drain()


def error_body(status: int, message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": status}}
