"""Reading an engine's log: follow the file as it grows, recognise the lines that mean it failed (out of GPU
memory, port taken, a worker's exception), and pick the line that best says what went wrong."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT_OOM_PATTERNS: tuple[str, ...] = (
    r"CUDA out of memory",
    r"OutOfMemoryError",
    r"CUBLAS_STATUS_ALLOC_FAILED",
    r"No available memory for the cache blocks",
    r"larger than the available KV cache memory",
)
PORT_PATTERNS: tuple[str, ...] = (r"Address already in use", r"\[Errno 98\]")
_ERRORISH = re.compile(r"(^\s*[\w.]*(Error|Exception|Interrupt)\b.*:)|\bERROR\b|\bFATAL\b|Traceback|"
                       r"\berror\b|\bfailed\b|Killed|Segmentation fault|core dumped", re.IGNORECASE)
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b.*")
# What an engine puts before each line of a worker's traceback: vLLM's "(Worker_TP0 pid=7853) ERROR 11-29
# 00:06:03 [multiproc_executor.py:1007] ", SGLang's "[2026-11-29 00:06:03 TP0] ". Without it the exception line
# is found as in a bare traceback.
_ENGINE_PREFIX = re.compile(r"^(\([\w.-]+ pid=\d+\)\s*)?((DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\s+\S+\s+"
                            r"\[[^\]]*\]\s?)?(\[\d{4}-\d\d-\d\d [\d:]+( [\w ]+)?\]\s?)?")


def lines_after(path: str | Path, offset: int, patterns: Iterable[str], limit: int = 3) -> list[str]:
    """Up to `limit` lines of the log at `path`, from byte `offset` on, that match one of `patterns` (engine
    prefixes stripped); none when the file is gone or there are no patterns."""
    regexes = [compile_pattern(p) for p in patterns]
    if not regexes:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    found = [_bare(line) for line in text.splitlines() if any(r.search(line) for r in regexes)]
    return found[:limit]


def log_size(path: str | Path) -> int:
    """The log's size in bytes now (0 when it is not there yet): where a later `lines_after` starts."""
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


class FailureLines:
    """Which failure a log line shows: "oom" (the engine's and the spec's own patterns), "port", or "crash" (the
    spec's patterns for an engine process's exception, after which it never serves: vLLM's workers stay up and
    /health never answers, so without it a launch waits out its whole health timeout), else None."""

    def __init__(self, extra_oom_patterns: Iterable[str] = (), crash_patterns: Iterable[str] = ()):
        self.oom = [compile_pattern(p) for p in (*DEFAULT_OOM_PATTERNS, *extra_oom_patterns)]
        self.port = [compile_pattern(p) for p in PORT_PATTERNS]
        self.crash = [compile_pattern(p) for p in crash_patterns]

    def kind(self, line: str) -> str | None:
        if any(p.search(line) for p in self.oom):
            return "oom"
        if any(p.search(line) for p in self.port):
            return "port"
        if any(p.search(line) for p in self.crash):
            return "crash"
        return None


def follow_lines(path: Path, done: threading.Event, poll_s: float = 0.05) -> Iterator[tuple[str, bool]]:
    """(line, complete) for each line of the file as it is written, until `done` is set and all was read; the
    last, unterminated piece then comes with complete=False."""
    buf = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    yield raw.decode("utf-8", "replace").rstrip("\r"), True
                continue
            if done.is_set():
                if buf:
                    yield buf.decode("utf-8", "replace"), False
                return
            time.sleep(poll_s)


def compile_pattern(p: str) -> re.Pattern:
    """A regular expression, or the literal text where it is not a valid one (a user's pattern)."""
    try:
        return re.compile(p)
    except re.error:
        return re.compile(re.escape(p))


def last_line(tail: Iterable[str]) -> str:
    for line in reversed(list(tail)):
        if line.strip():
            return line.strip()
    return ""


def _bare(line: str) -> str:
    """The line without the engine's log prefix (_ENGINE_PREFIX) and surrounding blanks."""
    return _ENGINE_PREFIX.sub("", line.strip()).strip()


def error_line(tail: Iterable[str]) -> str:
    """The line that best says what went wrong: the last exception line, else the last error-looking one (each
    without the engine's log prefix)."""
    lines = [b for b in map(_bare, tail) if b]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    for line in reversed(lines):
        if _ERRORISH.search(line):
            return line
    return ""


def first_exception_after(tail: Iterable[str], marker: str) -> str:
    """The first exception line at or after the line `marker` (a worker's "hit an exception"): the cause, where
    the last one is often what tearing the process down raised (session 25's vLLM log ends in a symmetric-memory
    destructor's error, minutes after the GEMM that failed). Falls back to error_line."""
    lines = list(tail)
    start = next((i for i, l in enumerate(lines) if l.strip() == marker.strip()), 0)
    for line in map(_bare, lines[start:]):
        if _EXCEPTION_LINE.match(line):
            return line
    return error_line(lines)
