"""Hardware profiles and engine calibrations: the measured (or datasheet) numbers behind every step time.

A hardware profile is one YAML file per GPU (schema below). `launcher.profile` writes measured ones on a
GPU; `benchmarks/make_datasheet_profiles.py` writes the datasheet fallbacks. The planner looks a GPU up in
the search path (user dirs first, then the shipped `serveplan/profiles/`) and prefers measured over
datasheet. Every lookup returns the value with where it came from: measured (a measured point),
interpolated (between measured points, log-scale in the x axis), extrapolated (outside them), or
datasheet (a datasheet profile).

Profile schema (version 1)::

    schema_version: 1
    gpu: h100-sxm                    # catalog name (conf/hardware/<gpu>.yaml)
    kind: measured | datasheet
    provenance: {command, date, gpu_name, memory_gib, driver, cuda, torch, clocks, ...}
    memory_bandwidth_gbs: 3000.0     # achieved device-to-device copy, read + write counted
    launch_overhead_us: 4.0          # one empty kernel launch, host side
    gemm:                            # achieved TFLOP/s on the catalog's linear-layer shapes vs tokens (M)
      bf16: {tokens: [1, 2, ...], tflops: [...]}
      fp8:  {tokens: [...], tflops: [...]}
      int8: {tokens: [...], tflops: [...]}
    attention:
      prefill: {seq_len: [...], tflops: [...]}          # causal attention FLOPs / time
      decode:  {kv_tokens: [...], bandwidth_gbs: [...]} # KV bytes read / time, vs KV tokens in the batch
    collectives:                     # NCCL, keyed by number of GPUs
      allreduce: {"2": {bytes: [...], time_us: [...]}, "4": ...}
      allgather: {...}

Engine calibration (`calibration/<engine>-<version>/<gpu>.yaml`): multiplicative and additive terms fitted
from benchmarks of a real engine (see `planner.calibrate`), with `source` saying which benchmark. A version with
no file of its own gets the newest older version's for that GPU, and the plan says so (`Calibration.describe`).
"""

from __future__ import annotations

import bisect
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serveplan.fileio import yaml_load

Source = Literal["measured", "interpolated", "extrapolated", "datasheet", "calibrated", "assumed"]
SHIPPED_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class Curve(_Model):
    """y as a function of x, measured at increasing x; interpolated in log(x)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def at(self, x: float) -> tuple[float, Literal["measured", "interpolated", "extrapolated"]]:
        return _interpolate(self.x, self.y, x, log_x=True)


def _interpolate(xs: tuple[float, ...], ys: tuple[float, ...], x: float, *,
                 log_x: bool) -> tuple[float, Literal["measured", "interpolated", "extrapolated"]]:
    """y at x from points at increasing xs: the nearest end's y outside them, linear in log(x) or in x between."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0], ("measured" if x == xs[0] else "extrapolated")
    if x >= xs[-1]:
        return ys[-1], ("measured" if x == xs[-1] else "extrapolated")
    i = bisect.bisect_left(xs, x)
    if xs[i] == x:
        return ys[i], "measured"
    x0, x1, xv = (math.log(xs[i - 1]), math.log(xs[i]), math.log(x)) if log_x else (xs[i - 1], xs[i], x)
    t = (xv - x0) / (x1 - x0)
    return ys[i - 1] + t * (ys[i] - ys[i - 1]), "interpolated"


def _curve(d: dict, xkey: str, ykey: str) -> Curve:
    pairs = sorted(zip(d[xkey], d[ykey]))
    return Curve(x=tuple(float(p[0]) for p in pairs), y=tuple(float(p[1]) for p in pairs))


class HardwareProfile(_Model):
    """A loaded profile, with its curves ready for lookups."""

    gpu: str
    kind: Literal["measured", "datasheet"]
    path: str = ""
    provenance: dict = Field(default_factory=dict)
    memory_bandwidth_gbs: float
    launch_overhead_us: float = 5.0
    gemm: dict[str, Curve]
    prefill_attention: Curve | None = None
    decode_attention: Curve | None = None
    allreduce: dict[int, Curve] = Field(default_factory=dict)
    allgather: dict[int, Curve] = Field(default_factory=dict)

    def source(self, raw: str) -> Source:
        return "datasheet" if self.kind == "datasheet" else raw  # type: ignore[return-value]

    def gemm_tflops(self, dtype: str, tokens: float) -> tuple[float, Source]:
        """Achieved TFLOP/s of linear layers in `dtype` at `tokens` rows; bf16's curve stands in for a
        dtype the profile lacks (marked extrapolated)."""
        curve = self.gemm.get(dtype)
        if curve is None:
            curve = self.gemm.get("bf16") or self.gemm.get("fp16")
            if curve is None:
                raise ValueError(f"profile {self.path} has no bf16 GEMM curve")
            v, _ = curve.at(tokens)
            return v, self.source("extrapolated")
        v, s = curve.at(tokens)
        return v, self.source(s)

    def collective_time_us(self, op: Literal["allreduce", "allgather"], n_gpus: int,
                           nbytes: float) -> tuple[float, Source] | None:
        """Measured time of one collective among n_gpus; None when the profile has no such table."""
        table = self.allreduce if op == "allreduce" else self.allgather
        curve = table.get(n_gpus)
        if curve is None:
            return None
        if nbytes > curve.x[-1]:  # bandwidth-bound beyond the table: scale linearly from the last point
            return curve.y[-1] * nbytes / curve.x[-1], self.source("extrapolated")
        v, s = curve.at(nbytes)
        return v, self.source(s)


def parse_profile(doc: dict, path: str = "") -> HardwareProfile:
    """Build a HardwareProfile from the YAML document (schema in the module docstring)."""
    if doc.get("schema_version") != 1:
        raise ValueError(f"profile {path or doc.get('gpu')}: unsupported schema_version "
                         f"{doc.get('schema_version')!r} (this serveplan reads 1)")
    gemm = {dt: _curve(c, "tokens", "tflops") for dt, c in (doc.get("gemm") or {}).items()}
    att = doc.get("attention") or {}
    coll = doc.get("collectives") or {}

    def _coll(name: str) -> dict[int, Curve]:
        return {int(n): _curve(c, "bytes", "time_us") for n, c in (coll.get(name) or {}).items()}

    return HardwareProfile(
        gpu=doc["gpu"], kind=doc.get("kind", "measured"), path=path,
        provenance=doc.get("provenance") or {},
        memory_bandwidth_gbs=float(doc["memory_bandwidth_gbs"]),
        launch_overhead_us=float(doc.get("launch_overhead_us", 5.0)),
        gemm=gemm,
        prefill_attention=_curve(att["prefill"], "seq_len", "tflops") if "prefill" in att else None,
        decode_attention=_curve(att["decode"], "kv_tokens", "bandwidth_gbs") if "decode" in att else None,
        allreduce=_coll("allreduce"), allgather=_coll("allgather"),
    )


USER_PROFILES = Path(os.environ.get("SERVEPLAN_HOME", Path.home() / ".serveplan")) / "profiles"


def search_path(extra: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """Where profiles are looked up, first match wins: explicit dirs, $SERVEPLAN_PROFILES, the user's
    ~/.serveplan/profiles (where `profile` and `plan calibrate` write by default), then the shipped ones."""
    env = tuple(p for p in os.environ.get("SERVEPLAN_PROFILES", "").split(os.pathsep) if p)
    return tuple(Path(p) for p in (*extra, *env)) + (USER_PROFILES, SHIPPED_PROFILES)


@lru_cache(maxsize=64)
def _load_yaml(path: str, mtime: float) -> dict:
    with open(path) as f:
        return yaml_load(f)


def load_profile_file(path: Path) -> HardwareProfile:
    return parse_profile(_load_yaml(str(path), path.stat().st_mtime), str(path))


def find_profile(gpu: str, dirs: tuple[Path, ...] | None = None) -> HardwareProfile | None:
    """The best profile for a GPU: a measured one anywhere on the path beats any datasheet one;
    within a kind, earlier directories win. Files: <dir>/<gpu>/*.yaml or <dir>/<kind>/<gpu>.yaml."""
    dirs = dirs if dirs is not None else search_path()
    best: dict[str, HardwareProfile] = {}
    for d in dirs:
        for kind in ("measured", "datasheet"):
            if kind in best:
                continue
            for f in sorted((d / kind).glob(f"{gpu}.yaml")) + sorted((d / kind / gpu).glob("*.yaml")):
                prof = load_profile_file(f)
                if prof.gpu == gpu and prof.kind == kind:
                    best[kind] = prof
                    break
    return best.get("measured") or best.get("datasheet")


class KernelFactor(_Model):
    """An engine's own GEMM kernel against the one the hardware profile timed, by M (tokens in the step), measured
    (not fitted): the engine's time over the profile kernel's at the same M and shape, relative to that ratio where
    the calibration's scales were fitted (`benchmarks/fp8_gemm.py` says where). Kernel libraries pick a tile config
    per range of M, so the ratio jumps at the ranges' edges (vLLM 0.26.0's CUTLASS FP8 GEMM at M = 17, 65, 129 on
    Hopper) and the measured M sit on both sides of each edge; between two measured M it is linear in M."""

    tokens: tuple[int, ...]
    factor: tuple[float, ...]
    source: str = ""
    measured_on: str = ""
    """The GPU the table was measured on where that is not the calibration's own (a table carried to a GPU of the same
    architecture, whose kernels were not timed on it); empty: measured on the calibration's GPU."""

    @model_validator(mode="after")
    def _a_table(self) -> "KernelFactor":
        if not self.tokens or len(self.tokens) != len(self.factor):
            raise ValueError(f"a kernel table needs as many factors as tokens, at least one "
                             f"(got {len(self.tokens)} tokens and {len(self.factor)} factors)")
        if any(b <= a for a, b in zip(self.tokens, self.tokens[1:])) or self.tokens[0] < 1:
            raise ValueError(f"a kernel table's tokens must be increasing from 1 or more (got {list(self.tokens)})")
        if any(not f > 0 for f in self.factor):
            raise ValueError(f"a kernel table's factors must be positive (got {list(self.factor)})")
        return self

    def at(self, m: float) -> float:
        return _interpolate(self.tokens, self.factor, m, log_x=False)[0]


def layout_name(tp: int, weight_dtype: str, pp: int = 1) -> str:
    """How HeldOutAccuracy.layouts names a configuration: its tensor- (and pipeline-) parallel sizes and weight
    precision."""
    return f"TP{tp}{f' PP{pp}' if pp > 1 else ''} {weight_dtype}"


class HeldOutAccuracy(_Model):
    """How far the calibrated model was from measured runs it was not fitted on, as `benchmarks/accuracy.py --shipped
    --write-held-out` last found them: mean absolute relative error of mean TTFT, TPOT and output tokens/s over the
    held-out closed-loop points of this GPU, and the worst optimism of any of them (predicted latency too low or
    throughput too high, as a ratio)."""

    points: int = Field(gt=0)
    ttft: float = Field(ge=0)
    tpot: float = Field(ge=0)
    throughput: float = Field(ge=0)
    worst_optimism: float = Field(gt=0)
    open_loop_runs: int = Field(default=0, ge=0)
    """Held-out open-loop runs (Poisson arrivals, as a plan's default traffic): their mean absolute error of TTFT P50
    and P99 and of mean TPOT, each run predicted as the median of open_loop_seeds simulations
    (`benchmarks/open_loop_accuracy.py --seeds N --write-held-out`); 0: none measured on this GPU."""
    open_loop_ttft_p50: float = Field(default=0.0, ge=0)
    open_loop_ttft_p99: float = Field(default=0.0, ge=0)
    open_loop_tpot: float = Field(default=0.0, ge=0)
    open_loop_seeds: int = Field(default=0, ge=0)
    layouts: tuple[str, ...] = ()
    """The layouts and weight precisions among the held-out closed-loop points ("TP2 fp8"): a plan whose winner is
    none of them says the numbers were not measured on its kind of configuration."""
    reference: str = "docs/accuracy.md"

    def covers(self, tp: int, weight_dtype: str, pp: int = 1) -> bool:
        return not self.layouts or layout_name(tp, weight_dtype, pp) in self.layouts

    def describe(self, engine: str, engine_version: str) -> str:
        name = ENGINE_DISPLAY.get(engine, engine)
        text = (f"on {self.points} held-out {name} {engine_version} closed-loop points TTFT was {self.ttft:.0%} off "
                f"on average, TPOT {self.tpot:.0%}, tokens/s {self.throughput:.0%}, at worst "
                f"{self.worst_optimism:.2f}x optimistic")
        if self.open_loop_runs:
            text += (f"; on {self.open_loop_runs} held-out open-loop runs TTFT P50 was {self.open_loop_ttft_p50:.0%} "
                     f"off, P99 {self.open_loop_ttft_p99:.0%}, TPOT {self.open_loop_tpot:.0%}")
        return f"{text} ({self.reference})"


class Calibration(_Model):
    """Engine-level terms fitted from benchmarks of a real engine on one GPU type (and, in fp8_gemm and int8_gemm,
    its W8A8 GEMM kernels measured against the profile's)."""

    engine: str
    engine_version: str
    gpu: str
    step_overhead_ms: float | None = None
    per_seq_overhead_us: float | None = None
    request_overhead_ms: float | None = None
    prefill_seq_overhead_ms: float | None = None
    max_stream_tok_s: float | None = None
    eager_step_ms: float | None = None
    bandwidth_scale: float = 1.0
    seq_layer_us: float = 0.0
    """GPU time per decoding sequence per layer per step beyond its bytes: a batch's step grows with the batch
    faster in a deeper model (the GEMMs leave the pure weight-streaming regime as M grows)."""
    attention_scale: float | None = None
    """Decode attention's bandwidth against the profile's curve; None: bandwidth_scale (files fitted before the
    two were told apart). Weights and KV are read by different kernels (GEMMs, paged attention)."""
    compute_scale: float = 1.0
    prefill_scale: float = 1.0
    fp8_gemm: KernelFactor | None = None
    """The engine's W8A8 FP8 GEMM over torch._scaled_mm (the profile's FP8 curve) by M, relative to its level where
    the scales above were fitted; None: the profile's kernel stands for the engine's. Measured
    (`benchmarks/fp8_gemm.py`), kept through refits."""
    int8_gemm: KernelFactor | None = None
    """The engine's W8A8 INT8 GEMM over torch._scaled_mm (the profile's FP8 curve) by M, relative to the level the
    scales above were fitted at. With it, INT8 W8A8 linear layers are timed on the profile's FP8 curve times this
    table: on Hopper INT8 and FP8 tensor cores share one peak, and vLLM 0.26.0's CUTLASS INT8 kernel is 1.4-1.8x
    faster than torch._int_mm, the profile's int8 curve (session 17). None: the profile's int8 curve. Measured
    (`benchmarks/fp8_gemm.py`), kept through refits."""
    moe_int8_kernel: dict[str, KernelFactor] = Field(default_factory=dict)
    """The engine's fused MoE kernel for INT8 W8A8 checkpoints over its FP8 one, by M (tokens in the step), per expert
    shape as vLLM names its tuned configs ("E=8,N=14336": experts, intermediate size per GPU). vLLM 0.26.0 runs a
    compressed-tensors INT8 checkpoint's experts (dynamic activation scales) as int8_w8a16, weight-only, with its
    default Triton config, and FP8 experts as fp8_w8a8 with a tuned one: the two run alike on memory-bound steps and
    ~3x apart on long prompt chunks (session 27). With a table, INT8 experts take the FP8 experts' modelled time
    times it (engine.moe_int8_compute_penalty stands in only without one). Measured (`benchmarks/moe_kernel.py`),
    kept through refits."""
    source: str = ""
    fit: dict = Field(default_factory=dict)
    held_out: HeldOutAccuracy | None = None
    """The terms' error on measured points they were not fitted on; None where nobody measured it (a `plan
    calibrate` refit on a user's own runs)."""
    path: str = ""
    applied_to: str = ""
    """The engine version the terms stand in for when none was measured at it (find_calibration's fallback to an
    older version's file); empty when they were measured at the version planned for."""

    def describe(self) -> str:
        """Where the terms came from, as a plan reports it: the file (or source), and for a fallback the version
        measured and the one it is applied to."""
        where = self.path or self.source
        if self.applied_to and self.applied_to != self.engine_version:
            name = ENGINE_DISPLAY.get(self.engine, self.engine)
            where += f" (measured on {name} {self.engine_version}, applied to {self.applied_to})"
        if self.held_out:
            where += f"; {self.held_out.describe(self.engine, self.engine_version)}"
        return where

    def kernel_tables(self) -> dict[str, Any]:
        """The measured kernel tables it carries, by field name (a refit keeps them: they are not fitted)."""
        return {f: getattr(self, f) for f in (*KERNEL_TABLES.values(), "moe_int8_kernel") if getattr(self, f)}

    def moe_int8_table(self, num_experts: int, intermediate: int) -> tuple[KernelFactor, str] | None:
        """The INT8 MoE kernel table for experts of this shape (intermediate size per GPU), and how it applies: its
        own shape's, else one measured with as many experts, else the first measured; None without any."""
        if not self.moe_int8_kernel:
            return None
        key = moe_shape_key(num_experts, intermediate)
        if key in self.moe_int8_kernel:
            return self.moe_int8_kernel[key], key
        same_e = [k for k in self.moe_int8_kernel if k.startswith(f"E={num_experts},")]
        other = same_e[0] if same_e else next(iter(self.moe_int8_kernel))
        return self.moe_int8_kernel[other], f"{other}, applied to {key}"


def moe_shape_key(num_experts: int, intermediate: int) -> str:
    """An expert shape as vLLM names its fused MoE configs: E=8,N=14336."""
    return f"E={num_experts},N={intermediate}"


# The Calibration field holding the engine's measured W8A8 GEMM table, by the compute dtype it times.
KERNEL_TABLES = {"fp8": "fp8_gemm", "int8": "int8_gemm"}

ENGINE_DISPLAY = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM", "tgi": "TGI"}


def version_key(version: str) -> tuple[int, ...] | None:
    """0.26.0 -> (0, 26, 0); None for a version that is not dotted integers (never a fallback)."""
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return None


def find_calibration(engine: str, version: str, gpu: str,
                     dirs: tuple[Path, ...] | None = None) -> Calibration | None:
    """The engine calibration for `gpu` at `version`: `<dir>/calibration/<engine>-<version>/<gpu>.yaml`, first
    directory on the path wins. With none at that version, the newest older version's file for the same engine
    and GPU (first directory wins among equals), marked `applied_to=version`: an engine release rarely moves the
    step and request overheads much, and the terms of the nearest measured release beat none. A newer version's
    file is never used for an older version."""
    dirs = dirs if dirs is not None else search_path()
    for d in dirs:
        f = d / "calibration" / f"{engine}-{version}" / f"{gpu}.yaml"
        if f.exists():
            return _calibration_file(f)
    want = version_key(version)
    if want is None:
        return None
    best: tuple[tuple[int, ...], Path] | None = None
    for d in dirs:
        for f in sorted((d / "calibration").glob(f"{engine}-*/{gpu}.yaml")):
            have = version_key(f.parent.name[len(engine) + 1:])
            if have is not None and have < want and (best is None or have > best[0]):
                best = (have, f)
    if best is None:
        return None
    return _calibration_file(best[1], applied_to=version)


def _calibration_file(f: Path, applied_to: str = "") -> Calibration:
    """A calibration file, or one sentence on what in it is wrong (a file a user wrote or edited by hand)."""
    from pydantic import ValidationError

    from serveplan.errors import ConfigError, validation_sentence

    doc = _load_yaml(str(f), f.stat().st_mtime)
    try:
        return Calibration(**(doc if isinstance(doc, dict) else {}), path=str(f), applied_to=applied_to)
    except ValidationError as e:
        raise ConfigError(f"Calibration file {f} is not valid: "
                          f"{validation_sentence(e).removeprefix('Invalid configuration: ')} Fix or remove it "
                          f"(`plan calibrate` writes valid ones).") from None
