"""Measure a hardware profile (schema version 1, see `serveplan.planner.profiles`) on this machine's GPU.

    profile --gpu h100-sxm -o profiles/measured/h100-sxm.yaml      (serveplan.cli.profile)

What is measured, each with warmup and the median of several timed repetitions (CUDA events; small kernels
are captured `n_inner` at a time in a CUDA graph so that host launch gaps stay out of the kernel time):

- GEMM: the linear layers (QKV, O, fused gate_up, down) of Llama-3-8B, Llama-3-70B and Qwen-32B-class
  models at tensor-parallel splits 1, 2, 4, 8, token counts M = 1 .. 16384, in bf16 (`torch.mm`), fp8
  e4m3 with per-tensor scales (`torch._scaled_mm`, GPUs of compute capability >= 8.9) and int8
  (`torch._int_mm`). Weights rotate among several copies so that repetitions do not read them from L2.
  The profile's curve per dtype is the median across shapes of 2*M*N*K / time; `gemm_shapes` keeps the
  per-shape numbers.
- Attention: causal prefill through SDPA's flash backend (32 query / 8 KV heads, head_dim 128, batches of
  16384 tokens), TFLOP/s counting the causal half; decode (one query token per sequence) over batch x
  context, as GB/s of KV bytes read (K and V of one layer) vs KV tokens in the batch.
- Memory bandwidth: a large device-to-device copy, bytes read + written; launch overhead: host time of
  back-to-back tiny kernel launches.
- Collectives (more than one visible GPU): NCCL all-reduce and all-gather times, 4 KiB .. 1 GiB, for
  groups of 2, 4, 8 .. all GPUs, with NVLink multicast (NVLS) off.

Only the standard library is imported here at import time; PyTorch (and PyYAML, with a JSON fallback that
YAML loaders read too) are imported when a profile is run.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from typing import Any


from serveplan.hwprofile.attention import (decode_curve, measure_copy_bandwidth, measure_decode,
                                           measure_launch_overhead, measure_prefill)
from serveplan.hwprofile.collectives import measure_collectives
from serveplan.hwprofile.common import (COLL_SIZES, DECODE_BATCH, DECODE_CONTEXT, DTYPES, KV_BYTES_PER_TOKEN,
                                        MODELS, PREFILL_SEQ, ProfileError, TOKENS, TORCH_MISSING, _sig,
                                        catalog_name)
from serveplan.hwprofile.gemm import gemm_curve, gemm_supported, linear_shapes, measure_gemm
from serveplan.hwprofile.provenance import _ClockSampler, provenance, write_profile
from serveplan.hwprofile.timing import _Clock
from serveplan.hwprofile.trace import make_trace


class _Progress:
    """A rich progress bar, or plain lines on stderr where rich is missing, or nothing."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.done, self._phase, self._bar = total, enabled, 0, "", None
        if enabled:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn)
                self._bar = Progress(TextColumn("{task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), transient=False)
            except ImportError:
                self._bar = None

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
            self._task = self._bar.add_task("profiling", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def tick(self, what: str) -> None:
        """Start measuring `what` (the previous item is done)."""
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done - 1, description=what)
            return
        phase = " ".join(what.split()[:2])
        if phase != self._phase:
            self._phase = phase
            print(f"[{self.done}/{self.total}] {what}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.total, description="done")


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ProfileError(TORCH_MISSING) from e
    return torch


def run_profile(out_path: str | os.PathLike, *, gpu_name: str | None, quick: bool = False,
                dtypes: tuple[str, ...] | list[str] | None = None, n_gpus: int | None = None,
                progress: bool = True, device: str = "cuda", command: str | None = None,
                trace: str | None = None, trace_dir: str | os.PathLike | None = None) -> dict:
    """Measure this machine's GPU and write the profile YAML to out_path (atomically); returns the document.

    gpu_name: catalog name (e.g. 'h100-sxm'); None picks it from the device name. quick: a tiny subset
    (seconds; for tests). dtypes: GEMM dtypes among bf16, fp8, int8 (default: all the GPU runs).
    n_gpus: GPUs for the collectives (default: all visible; 1 skips them). device: 'cuda' (or 'cpu', which
    only tests use: its numbers describe no GPU). trace: 'torch' writes a torch.profiler Chrome trace per
    section into trace_dir, 'nsys' adds an NVTX range per measurement for a run under Nsight Systems (see
    serveplan.hwprofile.trace); either is noted in the provenance, as its overhead is in the timings."""
    torch = _import_torch()
    t_start = time.monotonic()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProfileError(f"profile needs PyTorch with CUDA: this torch ({torch.__version__}) sees no CUDA GPU")
    for dt in dtypes or ():
        if dt not in DTYPES:
            raise ProfileError(f"unknown GEMM dtype '{dt}'; known: {', '.join(DTYPES)}")
    cuda = device.startswith("cuda")
    tracer = make_trace(trace, trace_dir, torch, cuda)
    if cuda:
        device = str(torch.device(device, torch.cuda.current_device()) if device == "cuda" else torch.device(device))
        torch.cuda.set_device(torch.device(device))
    dev_name = torch.cuda.get_device_name(torch.device(device)) if cuda else "cpu"
    guess = catalog_name(dev_name) if cuda else None
    gpu = gpu_name or guess
    if gpu is None:
        raise ProfileError(f"cannot tell the catalog name of GPU '{dev_name}': pass --gpu NAME")
    notes = []
    if gpu_name and guess and gpu_name != guess:
        msg = f"--gpu {gpu_name} given, but the device '{dev_name}' looks like {guess}"
        notes.append(msg)
        print(f"warning: {msg}", file=sys.stderr)

    clock = _Clock(torch, device)
    if quick:
        shapes = linear_shapes({"llama-8b": MODELS["llama-8b"]}, (8,))
        tokens, seqs, batches, contexts = (1, 8, 64), (128, 256), (1, 4), (128, 512)
        prefill_tokens, copy_bytes, launches, coll_sizes = 512, 32 * 2 ** 20, 200, (4096, 65536, 2 ** 20)
    else:
        shapes, tokens, seqs, batches, contexts = linear_shapes(), TOKENS, PREFILL_SEQ, DECODE_BATCH, DECODE_CONTEXT
        prefill_tokens, copy_bytes, launches, coll_sizes = 16384, 4 * 2 ** 30, 2000, COLL_SIZES
    free = torch.cuda.mem_get_info()[0] if cuda else 8 * 2 ** 30
    copy_bytes = min(copy_bytes, int(free * 0.2) // 2 ** 20 * 2 ** 20)
    max_kv = min(16 * 2 ** 30 if not quick else 64 * 2 ** 20, int(free * 0.3))
    world = (n_gpus if n_gpus is not None else torch.cuda.device_count()) if cuda else 1
    backend = "flash" if cuda else None

    checks, skipped = {}, {}
    use = []
    for dt in dtypes or DTYPES:
        ok, why = gemm_supported(torch, dt, device)
        (checks if ok else skipped)[dt] = why
        if ok:
            use.append(dt)
    if not use:
        raise ProfileError(f"no GEMM dtype runs here: {skipped}")

    n_decode = sum(1 for b in batches for c in contexts if b * c * KV_BYTES_PER_TOKEN <= max_kv)
    total = len(use) * len(shapes) * len(tokens) + len(seqs) + n_decode + 2 + (1 if world > 1 else 0)
    doc: dict[str, Any] = {"schema_version": 1, "gpu": gpu, "kind": "measured"}
    prov = provenance(torch, device)
    prov["command"] = command or shlex.join([os.path.basename(sys.executable), *sys.argv])
    prov["quick"] = quick
    sampler = _ClockSampler() if cuda else None
    with _Progress(total, progress) as bar:
        if sampler:
            sampler.__enter__()
        try:
            tick = tracer.ticker(bar.tick)
            with tracer.section("memory-bandwidth"):
                tick("memory bandwidth (device-to-device copy)")
                bw = measure_copy_bandwidth(torch, device, clock, copy_bytes)
            with tracer.section("launch-overhead"):
                tick("kernel launch overhead")
                launch = measure_launch_overhead(torch, device, clock, launches)
            raw: list[dict] = []
            gemm = {}
            for dt in use:
                with tracer.section(f"gemm-{dt}"):
                    rows = measure_gemm(torch, device, clock, shapes, tokens, dt, tick)
                gemm[dt] = gemm_curve(rows, tokens)
                raw += rows
                if cuda:
                    torch.cuda.empty_cache()
            with tracer.section("prefill-attention"):
                pre = measure_prefill(torch, device, clock, seqs, tokens_per_batch=prefill_tokens,
                                      backend=backend, tick=tick)
            with tracer.section("decode-attention"):
                dec = measure_decode(torch, device, clock, batches, contexts, max_kv_bytes=max_kv,
                                     backend=backend, tick=tick)
            if cuda:
                torch.cuda.empty_cache()
            coll = None
            if world > 1:
                with tracer.section("collectives"):  # child processes: in nsys's timeline, not torch's
                    tick(f"collectives (NCCL, {world} GPUs)")
                    try:
                        coll = measure_collectives(world, coll_sizes)
                    except Exception as e:  # noqa: BLE001 - keep the single-GPU numbers
                        notes.append(f"collectives failed: {type(e).__name__}: {e}")
                        print(f"warning: collectives failed: {e}", file=sys.stderr)
            bar.finish()
        finally:
            if sampler:
                sampler.__exit__(None, None, None)

    if sampler:
        prov.setdefault("clocks", {})["during_run"] = sampler.summary()
    prov["duration_s"] = round(time.monotonic() - t_start, 1)
    prov["gemm_checks"] = checks
    padded = {}
    for dt in use:
        pad = [r for r in raw if r["dtype"] == dt and r["m_run"] > r["m"]]
        if pad:
            padded[dt] = (f"M in {sorted({r['m'] for r in pad})} timed at M={min(r['m_run'] for r in pad)} "
                          "(credited the real M's FLOPs)")
    if padded:
        prov["gemm_padded_m"] = padded
    if skipped:
        prov["gemm_skipped"] = skipped
    prov["method"] = {
        "timing": "CUDA events, warmup, median of >=3 passes; small kernels captured n_inner at a time in a "
                  "CUDA graph",
        "gemm": "(M,K) @ W^T with W (N,K) per TP split; bf16 torch.mm, fp8 torch._scaled_mm e4m3 per-tensor "
                "scales (use_fast_accum off), int8 torch._int_mm timed at M>=32 where it refuses smaller M; "
                "weights rotate among copies >= 256 MiB; curve = median across shapes",
        "prefill": f"causal SDPA ({backend or 'default'}), 32 q / 8 kv heads, head_dim 128, "
                   f"batches of {prefill_tokens} tokens; FLOPs = 2*2*heads*d*S^2/2 per sequence",
        "decode": "1 query token per sequence, best of SDPA and grouped bmm; bytes = K+V of one layer",
        "memory_bandwidth": f"{bw['bytes'] // 2 // 2 ** 20} MiB device-to-device copy, read + write counted",
        "launch_overhead": f"host time per x.add_(1) over {launches} back-to-back launches",
    }
    if tracer.provenance():
        prov["trace"] = tracer.provenance()
    if notes:
        prov["notes"] = notes
    doc["provenance"] = prov
    doc["memory_bandwidth_gbs"] = _sig(bw["gbs"])
    doc["launch_overhead_us"] = _sig(launch["us"], 3)
    if "graph_us" in launch:
        doc["launch_overhead_graph_us"] = _sig(launch["graph_us"], 3)
    doc["gemm"] = gemm
    att: dict[str, Any] = {"prefill": {"seq_len": [r["seq_len"] for r in pre],
                                       "tflops": [_sig(r["tflops"]) for r in pre]}}
    if dec:
        att["decode"] = decode_curve(dec)
    doc["attention"] = att
    if coll:
        doc["collectives"] = coll
    doc["gemm_shapes"] = [
        {"model": sh["model"], "layer": sh["layer"], "tp": sh["tp"], "n": sh["n"], "k": sh["k"],
         **{dt: [_sig(r["tflops"]) for r in raw if r["dtype"] == dt and r["model"] == sh["model"]
                 and r["layer"] == sh["layer"] and r["tp"] == sh["tp"]] for dt in use}}
        for sh in shapes]
    doc["attention_points"] = {
        "prefill": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in pre],
        "decode": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in dec],
    }
    write_profile(doc, out_path)
    return doc


def summary(doc: dict) -> str:
    """A few headline numbers of a profile, one per line."""
    lines = [f"{doc['gpu']}: {doc['provenance'].get('gpu_name')}",
             f"  copy bandwidth {doc['memory_bandwidth_gbs']:.0f} GB/s, launch {doc['launch_overhead_us']} us"]
    for dt, c in doc["gemm"].items():
        pts = ", ".join(f"M={m}: {y:.1f}" for m, y in zip(c["tokens"], c["tflops"]) if m in (1, 64, 1024, 4096, 16384))
        lines.append(f"  GEMM {dt} TFLOP/s {pts}")
    pre = doc["attention"]["prefill"]
    lines.append(f"  prefill attention {pre['tflops'][-1]:.0f} TFLOP/s at seq {pre['seq_len'][-1]}")
    if "decode" in doc["attention"]:
        d = doc["attention"]["decode"]
        lines.append(f"  decode attention {max(d['bandwidth_gbs']):.0f} GB/s best")
    return "\n".join(lines)
