"""The engine-adapter protocol: render a Candidate into engine processes, validate argv against the pinned
engine's extracted flag schema, and read the engine's health and Prometheus metrics.

One module per engine (`vllm.py`, `trtllm.py`, `sglang.py`, `tgi.py`); they import this module, never each other.
Flag schemas live in `schemas/<engine>-<version>.json`, written by `scripts/extract_engine_flags.py` from the
engine's own argument parser at the pinned version.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from serveplan.errors import ConfigError, UnknownName
from serveplan.planner.checkpoints import checkpoint_for
from serveplan.planner.spec import Candidate, Checkpoint, PlanRequest

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ENGINE_MODULES = {"vllm": "serveplan.render.engines.vllm",
                  "trtllm": "serveplan.render.engines.trtllm",
                  "sglang": "serveplan.render.engines.sglang",
                  "tgi": "serveplan.render.engines.tgi"}


@dataclass(frozen=True)
class ReplicaLaunch:
    replica: int
    argv: list[str]            # full engine command, argv[0] the executable ("vllm", "trtllm-serve", "python")
    env: dict[str, str]        # at least CUDA_VISIBLE_DEVICES
    port: int
    gpus: list[int]
    files: dict[str, str] = field(default_factory=dict)   # relative file name -> content, written next to the run
    health_path: str = "/health"


@runtime_checkable
class EngineAdapter(Protocol):
    name: str
    version: str
    image: str
    oom_patterns: tuple[str, ...]     # regexes that mean CUDA out-of-memory in this engine's log
    crash_patterns: tuple[str, ...]   # regexes for an engine process's exception after which it never serves
    crash_hints: tuple[tuple[str, str], ...]  # (regex of a log line, the sentence that explains such a crash)
    compile_stall_patterns: tuple[str, ...]  # regexes for a kernel compiled while serving (a latency spike)

    def render(self, candidate: Candidate, request: PlanRequest, *, replica: int, gpus: list[int],
               port: int, host: str = "0.0.0.0", model: str | None = None, served_model_name: str | None = None,
               extra_args: tuple[str, ...] = ()) -> ReplicaLaunch:
        """The replica's command. It serves `served_checkpoint(candidate, request)` (its id, or `model`: the
        same checkpoint at another path, e.g. inside a container) with the flags that checkpoint needs."""

    def validate(self, argv: list[str]) -> list[str]: ...

    def health_url(self, host: str, port: int) -> str: ...

    def parse_metrics(self, text: str) -> dict[str, float]: ...


def served_checkpoint(candidate: Candidate, request: PlanRequest) -> Checkpoint:
    """The checkpoint a candidate serves: the one the planner chose, else the catalog's for its precision."""
    if candidate.checkpoint is not None:
        return candidate.checkpoint
    ckpt = checkpoint_for(request.model, candidate.weight_dtype, candidate.engine)
    if ckpt is None:
        raise ConfigError(f"{candidate.engine} has no {candidate.weight_dtype} checkpoint of {request.model.name} "
                          f"to serve and cannot make one; name yours with --checkpoint {candidate.weight_dtype}=PATH.")
    return ckpt


def online_quantization_args(ckpt: Checkpoint, *, flag: str = "--quantization",
                             names: dict[str, str] | None = None) -> list[str]:
    """`--quantization fp8` where the engine quantizes an unquantized checkpoint while loading it (`names` maps a
    weight method to the engine's value where they differ: vLLM's `bitsandbytes` for bnb-nf4). A
    pre-quantized checkpoint declares its method in its config and gets no flag (vLLM and SGLang pick the
    fastest kernel for it, awq -> awq_marlin; an explicit flag that differs is refused)."""
    if not ckpt.engine_quantizes:
        return []
    return [flag, (names or {}).get(ckpt.weight_dtype, ckpt.weight_dtype)]


def multicast_off_env(request: PlanRequest, candidate: Candidate) -> dict[str, str]:
    """Environment for TP>1 on nodes without NVLink multicast: NCCL NVLS, torch symmetric memory and vLLM's
    FlashInfer / symm-mem all-reduce all need it (seen on 2x H100/H200 with vLLM 0.26.0: an illegal memory
    access in the memory profile, workers left spinning)."""
    if request.inventory.nvlink_multicast or candidate.tp == 1:
        return {}
    return {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
            "VLLM_ALLREDUCE_USE_SYMM_MEM": "0", "VLLM_ALLREDUCE_USE_FLASHINFER": "0"}


def get_adapter(name: str, version: str | None = None) -> EngineAdapter:
    """The adapter for an engine name (vllm, trtllm, sglang, tgi) at `version` (None: the engine's default, the
    version its conf/engine file names). A module with `adapter_for(version)` renders for every version that has
    a flag schema; the others render for their one pinned version. An unservable version is one ConfigError."""
    if name not in ENGINE_MODULES:
        raise UnknownName("engine", name, list(ENGINE_MODULES))
    mod = importlib.import_module(ENGINE_MODULES[name])
    if version is None or version == mod.ADAPTER.version:
        return mod.ADAPTER
    if hasattr(mod, "adapter_for"):
        return mod.adapter_for(version)
    load_schema(name, version)  # no schema: the sentence naming the versions that have one
    raise ConfigError(f"The {name} adapter renders for {name} {mod.ADAPTER.version} only; set "
                      f"engine.version={mod.ADAPTER.version}.")


def assign_gpus(candidate: Candidate, gpus_per_node: int) -> list[list[int]]:
    """Disjoint, contiguous GPU ids per replica on one node: replica i gets [i*g, (i+1)*g), g = tp*pp."""
    g = candidate.gpus_per_replica
    if candidate.total_gpus > gpus_per_node:
        raise ConfigError(f"{candidate.label()} needs {candidate.total_gpus} GPUs but one node has {gpus_per_node}; "
                          f"a plan spanning nodes is launched through the ray/ or k8s/ artifacts, not on one machine.")
    return [list(range(i * g, (i + 1) * g)) for i in range(candidate.replicas)]


def replica_port(base_port: int, replica: int) -> int:
    """Replica i listens on base_port + i."""
    return base_port + replica


def cuda_visible_devices(gpus: list[int]) -> str:
    return ",".join(str(g) for g in gpus)


def local_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


# ---------------------------------------------------------------------------------------------- schema
def schema_versions(engine: str) -> list[str]:
    """The versions of an engine that have a flag schema, oldest first."""
    def key(v: str) -> tuple:
        return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"[.\-]", v))
    return sorted((p.stem[len(engine) + 1:] for p in SCHEMA_DIR.glob(f"{engine}-*.json")), key=key)


@lru_cache(maxsize=None)
def load_schema(engine: str, version: str) -> dict:
    path = SCHEMA_DIR / f"{engine}-{version}.json"
    if not path.exists():
        have = schema_versions(engine)
        raise ConfigError(f"{engine} {version} has no flag schema here, so serveplan cannot render for it: set "
                          f"engine.version to {' or '.join(have) or 'a version with one'} "
                          f"(scripts/extract_engine_flags.py {engine} --version {version} extracts one).")
    return json.loads(path.read_text())


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _check_value(flag: str, spec: dict, value: str) -> list[str]:
    problems = []
    if spec.get("choices") is not None and value not in spec["choices"]:
        problems.append(f"{flag} {value!r}: not one of {', '.join(spec['choices'])}")
    typ = spec.get("type")
    if typ == "int":
        if not re.fullmatch(r"-?\d+", value) and not re.fullmatch(r"\d+(\.\d+)?[kKmMgGtT]", value):
            problems.append(f"{flag} {value!r}: not an integer")
    elif typ == "float" and not _is_number(value):
        problems.append(f"{flag} {value!r}: not a number")
    return problems


def validate_flags(tokens: list[str], schema: dict, *, normalize_underscores: bool = False,
                   max_positionals: int = 0) -> list[str]:
    """Check option tokens (argv after the executable/subcommand) against an extracted flag schema, the way
    argparse/click would read them: unknown flags, missing or extra values, bad choices, non-numeric numbers."""
    flags: dict = schema["flags"]
    problems: list[str] = []
    positionals = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("-") or tok == "-" or _is_number(tok):
            positionals += 1
            if positionals > max_positionals:
                problems.append(f"unexpected positional argument {tok!r}")
            i += 1
            continue
        name, eq, inline = tok.partition("=")
        key = name
        if normalize_underscores and key.startswith("--") and key not in flags:
            key = "--" + key[2:].replace("_", "-")
        spec = flags.get(key)
        if spec is None:
            close = [f for f in flags if f.replace("_", "-").lstrip("-") == name.replace("_", "-").lstrip("-")]
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown flag {name}{hint} for {schema['engine']} {schema['version']}")
            i += 1
            continue
        if not spec["takes_value"]:
            if eq:
                problems.append(f"{name} takes no value (got {inline!r})")
            i += 1
            continue
        nargs = spec.get("nargs")
        if eq:
            values = [inline]
            i += 1
        elif nargs in ("+", "*"):
            j = i + 1
            while j < len(tokens) and (not tokens[j].startswith("-") or _is_number(tokens[j])):
                j += 1
            values = tokens[i + 1:j]
            i = j
        elif nargs == "?":
            values = [tokens[i + 1]] if i + 1 < len(tokens) and not tokens[i + 1].startswith("-") else []
            i += 1 + len(values)
        else:
            n = nargs if isinstance(nargs, int) else 1
            values = tokens[i + 1:i + 1 + n]
            if len(values) < n or any(v.startswith("-") and not _is_number(v) for v in values):
                problems.append(f"{name} expects {n} value(s)")
                i += 1
                continue
            i += 1 + n
        if nargs == "+" and not values:
            problems.append(f"{name} expects at least one value")
        for v in values:
            problems.extend(_check_value(name, spec, v))
    return problems


# ---------------------------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {metric name: value summed over label sets}. Comments and NaN skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        if math.isnan(v):
            continue
        out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out


def pick_metrics(samples: dict[str, float], names: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Map engine metric names to serveplan's keys: the first name present wins."""
    out = {}
    for key, candidates in names.items():
        for n in candidates:
            if n in samples:
                out[key] = samples[n]
                break
    return out
