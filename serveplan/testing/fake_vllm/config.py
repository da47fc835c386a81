"""What the fake engine is asked to be: vLLM's command line (Args) and the FAKE_ENGINE_* environment
(Behaviour), which sets how fast it is and how it fails."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MODES = ("normal", "crash", "hang", "oom", "ignore_sigterm", "fail_requests", "worker_crash")


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
    jit_at_request: int | None = None

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
        jit_at = env.get("FAKE_ENGINE_JIT_AT_REQUEST", "").strip()
        return cls(ttft_s=num("FAKE_ENGINE_TTFT_MS", 20) / 1000, itl_s=num("FAKE_ENGINE_ITL_MS", 5) / 1000,
                   itl_per_seq_s=num("FAKE_ENGINE_ITL_PER_SEQ_MS", 0) / 1000,
                   startup_s=num("FAKE_ENGINE_STARTUP_S", 0.2), mode=mode,
                   max_concurrency=int(cap) if cap else None,
                   crash_after_s=float(crash_after) if crash_after else None,
                   lifetime_s=num("FAKE_ENGINE_LIFETIME_S", 0), jit_at_request=int(jit_at) if jit_at else None)
