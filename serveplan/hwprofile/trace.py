"""Traces of the measured kernels: PyTorch profiler Chrome traces, NVTX ranges for Nsight Systems.

    profile --quick --trace torch DIR     one Chrome trace + key_averages table per section in DIR
    profile --trace nsys DIR              the profile re-run under `nsys profile`, NVTX range per measurement

A region is one measurement, labelled as the progress bar labels it ('GEMM bf16 llama-8b qkv tp8 M=64',
'prefill attention seq=128'): it opens when the measurement starts and closes when the next one starts or
its section ends, so it holds the warmup, the CUDA-graph capture and the timed repetitions (and any operand
set-up before the next measurement of its section). A section (memory-bandwidth, launch-overhead,
gemm-<dtype>, prefill-attention, decode-attention, collectives) is one torch.profiler session, written when
it ends, and one NVTX range around its measurements. Collectives run in child processes: their kernels are
not in the torch traces.

Both tracers add work of their own while timing, so a profile written with a trace says so in its
provenance ('trace'); use it to look at kernels, not as the profile the planner reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys

from typing import Any, Callable, Iterator


from serveplan.hwprofile.common import ProfileError

TRACE_KINDS = ("torch", "nsys")
UNDER_NSYS_ENV = "SERVEPLAN_PROFILE_UNDER_NSYS"  # set by the nsys re-exec: the child adds NVTX ranges, runs no nsys
NSYS_MISSING = ("--trace nsys needs NVIDIA Nsight Systems' `nsys` on PATH, and there is none; install Nsight "
                "Systems, or record a PyTorch profiler trace instead with --trace torch DIR.")


class NoTrace:
    """No tracing: sections and regions cost nothing."""

    kind: str | None = None
    written: list[str]

    def __init__(self) -> None:
        self.written = []

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        yield

    def region(self, what: str) -> None:
        """A measurement named `what` starts (the previous one of this section ends)."""

    def ticker(self, tick: Callable[[str], None]) -> Callable[[str], None]:
        """tick (the progress bar's) that also opens a region per measurement."""
        def both(what: str) -> None:
            tick(what)
            self.region(what)
        return both

    def provenance(self) -> dict | None:
        return None


class TorchTrace(NoTrace):
    """torch.profiler per section (CPU, and CUDA where the device is a GPU), record_shapes on; regions are
    torch.profiler.record_function labels. Each section writes DIR/<section>.json (Chrome trace: open it in
    https://ui.perfetto.dev or chrome://tracing) and DIR/<section>.txt (key_averages table)."""

    kind = "torch"

    def __init__(self, torch: Any, out_dir: str | os.PathLike, cuda: bool, row_limit: int = 25):
        super().__init__()
        self.torch, self.out_dir, self.cuda, self.row_limit = torch, os.fspath(out_dir), cuda, row_limit
        self._open: Any = None
        self._prof: Any = None
        make_dir(self.out_dir)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        prof_mod = self.torch.profiler
        acts = [prof_mod.ProfilerActivity.CPU] + ([prof_mod.ProfilerActivity.CUDA] if self.cuda else [])
        with prof_mod.profile(activities=acts, record_shapes=True) as prof:
            self._prof = prof
            try:
                yield
            finally:
                self._close_region()
                self._prof = None
        if self.cuda:
            self.torch.cuda.synchronize()
        stem = os.path.join(self.out_dir, _file_name(name))
        prof.export_chrome_trace(stem + ".json")
        sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=self.row_limit)
        with open(stem + ".txt", "w") as f:
            f.write(f"# section {name}: torch.profiler key_averages, sorted by {sort}, top {self.row_limit}\n")
            f.write(table + "\n")
        self.written += [stem + ".json", stem + ".txt"]

    def region(self, what: str) -> None:
        self._close_region()
        if self._prof is None:
            return
        self._open = self.torch.profiler.record_function(what)
        self._open.__enter__()

    def _close_region(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    def provenance(self) -> dict:
        return {"kind": "torch", "dir": self.out_dir,
                "note": "measured under torch.profiler: its overhead is in these timings"}


class NvtxTrace(NoTrace):
    """One NVTX range per measurement (torch.cuda.nvtx), for a run under Nsight Systems; nothing where
    torch has no CUDA/NVTX (a CPU build) or the device is not a GPU."""

    kind = "nsys"

    def __init__(self, torch: Any, cuda: bool, out_dir: str | os.PathLike | None = None):
        super().__init__()
        self.torch, self.out_dir = torch, os.fspath(out_dir) if out_dir else None
        self._depth, self._region_open = 0, False
        self.enabled = cuda and _nvtx_works(torch)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        self._push(name)
        try:
            yield
        finally:
            self._close_region()
            self._pop()

    def region(self, what: str) -> None:
        self._close_region()
        if self._depth:  # inside a section
            self._push(what)
            self._region_open = True

    def _close_region(self) -> None:
        if self._region_open:
            self._pop()
            self._region_open = False

    def _push(self, name: str) -> None:
        if self.enabled:
            self.torch.cuda.nvtx.range_push(name)
        self._depth += 1

    def _pop(self) -> None:
        if self.enabled:
            self.torch.cuda.nvtx.range_pop()
        self._depth -= 1

    def provenance(self) -> dict:
        return {"kind": "nsys", "dir": self.out_dir, "nvtx": self.enabled,
                "note": "measured under nsys: its overhead is in these timings"}


def _nvtx_works(torch: Any) -> bool:
    try:
        torch.cuda.nvtx.range_push("serveplan")
        torch.cuda.nvtx.range_pop()
        return True
    except (AttributeError, RuntimeError):  # CPU build: "NVTX functions not installed"
        return False


def make_dir(path: str | os.PathLike) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ProfileError(f"cannot write traces into '{os.fspath(path)}': {e.strerror or e}") from e


def _file_name(section: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", section).strip("-") or "section"


def make_trace(kind: str | None, out_dir: str | os.PathLike | None, torch: Any, cuda: bool) -> NoTrace:
    """The tracer for run_profile: None -> no tracing; 'torch' -> TorchTrace; 'nsys' -> NVTX ranges (the
    process is expected to run under nsys: see nsys_command)."""
    if kind is None:
        return NoTrace()
    if kind not in TRACE_KINDS:
        raise ProfileError(f"unknown trace kind '{kind}'; known: {', '.join(TRACE_KINDS)}")
    if out_dir is None:
        raise ProfileError(f"--trace {kind} needs a folder to write into (--trace {kind} DIR)")
    if kind == "torch":
        return TorchTrace(torch, out_dir, cuda)
    return NvtxTrace(torch, cuda, out_dir)


def nsys_command(out_dir: str | os.PathLike, argv: list[str], nsys: str | None = None) -> list[str]:
    """The command that re-runs `profile argv` under Nsight Systems, writing DIR/profile.nsys-rep: CUDA
    API + kernels, NVTX ranges and OS runtime calls; kernels inside CUDA graphs traced one by one (the
    profile times small kernels in graphs). Raises the one-sentence ProfileError where nsys is missing."""
    nsys = nsys or shutil.which("nsys")
    if nsys is None:
        raise ProfileError(NSYS_MISSING)
    return [nsys, "profile", "-o", os.path.join(os.fspath(out_dir), "profile"), "--trace=cuda,nvtx,osrt",
            "--cuda-graph-trace=node", "--force-overwrite", "true",
            sys.executable, "-m", "serveplan.cli.profile", *argv]


def run_under_nsys(out_dir: str | os.PathLike, argv: list[str]) -> int:
    """Re-run `profile argv` under nsys (the child sees UNDER_NSYS_ENV and adds NVTX ranges); its exit status."""
    import subprocess

    cmd = nsys_command(out_dir, argv)
    make_dir(out_dir)
    print(f"running under Nsight Systems: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    try:
        rc = subprocess.run(cmd, env={**os.environ, UNDER_NSYS_ENV: "1"}).returncode
    except OSError as e:
        raise ProfileError(f"could not run {cmd[0]}: {e.strerror or e}") from e
    reports = sorted(p for p in os.listdir(out_dir) if p.startswith("profile."))
    if reports:
        print(f"nsys report: {', '.join(os.path.join(os.fspath(out_dir), p) for p in reports)} "
              "(open in nsight-sys, or `nsys stats` it)")
    return rc
