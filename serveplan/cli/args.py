"""Argument parsing shared by the commands: the parser whose errors are one sentence, argparse types with
readable refusals, and the flags that describe a request (model, GPUs, traffic, engine) with the Hydra overrides
that may follow them."""

from __future__ import annotations

import argparse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        from serveplan.errors import ConfigError

        raise ConfigError(f"{message} (see {self.prog} --help).")


def split_overrides(argv: list[str], value_flags: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Flags for argparse vs Hydra overrides (key=value without a leading dash). The word after one of
    value_flags is that flag's value even when it holds a '=' (`--a "weights=awq tp=2"`)."""
    flags, overrides = [], []
    take_next = False
    for a in argv:
        if take_next:
            flags.append(a)
            take_next = False
            continue
        (overrides if "=" in a and not a.startswith("-") else flags).append(a)
        take_next = a in value_flags
    return flags, overrides


REQUEST_VALUE_FLAGS = ("--checkpoint",)  # add_request_flags' flags whose value holds a '=' (METHOD=PATH)


def add_request_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="catalog name or alias (llama-70b), or a path to a HF config.json / folder")
    p.add_argument("--gpus", help="COUNTxGPU or NODESxCOUNTxGPU, e.g. 2xA100, 8xH100, 2x8xH100, 1xRTX4090")
    p.add_argument("--traffic", help="preset (chat, rag, summarize, codegen, long-generation, offline-batch) "
                                     "or a YAML file")
    p.add_argument("--engine", help="vllm (default), trtllm, sglang or tgi")
    p.add_argument("--json", action="store_true", help="print a machine-readable document instead of tables")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[METHOD=]PATH_OR_ID",
                   help="serve your own checkpoint for a weight method (awq=./llama-awq); METHOD may be left out "
                        "for a local folder whose config.json declares its quantization")


def checkpoint_overrides(specs: list[str]) -> list[str]:
    """--checkpoint [METHOD=]PATH_OR_ID -> model.checkpoints.METHOD=PATH_OR_ID overrides."""
    from serveplan.errors import ConfigError
    from serveplan.planner.checkpoints import QUANTIZE_METHOD, detect_format

    out = []
    for spec in specs:
        method, eq, where = spec.partition("=")
        if not eq:
            where = spec
            method, _ = detect_format(where)
            if method is None:
                raise ConfigError(f"--checkpoint {spec}: cannot tell its weight method (no quantization_config "
                                  f"in a local config.json); write METHOD=PATH with METHOD one of "
                                  f"{', '.join(QUANTIZE_METHOD)}.")
        elif method not in QUANTIZE_METHOD:
            raise ConfigError(f"--checkpoint {spec}: '{method}' is not a weight method; use one of "
                              f"{', '.join(QUANTIZE_METHOD)}.")
        out.append(f"model.checkpoints.{method}={where}")
    return out


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _number(text: str, what: str) -> float:
    """The float in `text`, or an argparse refusal naming `what` it should have been; NaN and infinities pass (the
    callers' bounds refuse them)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    import math

    v = _number(text, "a number")
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return v


def seconds_or_zero(text: str) -> float:
    """argparse type: a finite number of seconds >= 0 (0 turns the thing off)."""
    import math

    v = _number(text, "a number of seconds")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 (off) or a finite number of seconds")
    return v


def port(text: str) -> int:
    """argparse type: a TCP port a server can listen on."""
    v = positive_int(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a port (1-65535)")
    return v
