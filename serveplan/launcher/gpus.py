"""Which GPUs this machine shows, and whether they are the ones the plan was made for.

`visible_gpus()` asks nvidia-smi and keeps what CUDA_VISIBLE_DEVICES lets a process see;
SERVEPLAN_FAKE_GPUS (comma-separated nvidia-smi names, e.g. "NVIDIA H100 80GB HBM3,NVIDIA H100 80GB HBM3")
stands in for nvidia-smi in tests. `check_gpus()` refuses a launch on the wrong GPU type or too few GPUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from serveplan.errors import LaunchError
from serveplan.planner.catalog import gpu_matches  # noqa: F401  (re-exported: the one name matcher)

FAKE_ENV = "SERVEPLAN_FAKE_GPUS"


@dataclass(frozen=True)
class VisibleGPU:
    """One GPU a launched process would see: its CUDA_VISIBLE_DEVICES token and its nvidia-smi name."""

    token: str
    name: str


def _query() -> list[tuple[str, str, str]]:
    """(index, uuid, name) of every GPU on the machine, or [] when nvidia-smi is missing or fails."""
    fake = os.environ.get(FAKE_ENV)
    if fake is not None:
        names = [n.strip() for n in fake.split(",") if n.strip()]
        return [(str(i), f"GPU-fake-{i}", n) for i, n in enumerate(names)]
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,uuid,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    rows = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",", 2)]
        if len(parts) == 3 and parts[0].isdigit():
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def visible_devices() -> list[VisibleGPU]:
    """The GPUs a child process would see, in CUDA order, honouring CUDA_VISIBLE_DEVICES.

    Like CUDA: an empty value or "-1" hides every GPU; the list stops at the first entry that names no GPU;
    entries may be indices or (prefixes of) UUIDs. MIG entries are kept as given.
    """
    rows = _query()
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return [VisibleGPU(idx, name) for idx, _, name in rows]
    out: list[VisibleGPU] = []
    for tok in (t.strip() for t in cvd.split(",")):
        if not tok:
            break
        if tok.lstrip("-").isdigit():
            match = [r for r in rows if r[0] == tok]
        elif tok.startswith("MIG-"):
            match = [(tok, tok, rows[0][2])] if rows else []
        else:
            match = [r for r in rows if r[1].startswith(tok)]
        if not match:
            break
        out.append(VisibleGPU(tok, match[0][2]))
    return out


def visible_gpus() -> list[str]:
    """nvidia-smi names of the GPUs this process may use ([] when there are none)."""
    return [g.name for g in visible_devices()]


def check_gpus(plan, force: bool = False) -> list[str]:
    """Refuse (LaunchError) a launch on GPUs that are not the plan's type or too few; with force, return the
    same findings as warnings instead. Returns [] when everything matches."""
    gpu = plan.request.inventory.gpu
    need = plan.winner.config.total_gpus
    names = visible_gpus()
    problems: list[str] = []
    if not names:
        problems.append(f"No NVIDIA GPU is visible (nvidia-smi found none, or CUDA_VISIBLE_DEVICES hides "
                        f"them), but the plan needs {need}x {gpu.display_name}.")
    else:
        wrong = sorted({n for n in names if not gpu_matches(gpu, n)})
        if wrong:
            problems.append(f"The plan was made for {gpu.display_name} ({gpu.name}) but this machine has "
                            f"{', '.join(wrong)}; re-plan with this GPU (hardware=...) for numbers that hold.")
        if len(names) < need:
            problems.append(f"The plan needs {need} GPUs but only {len(names)} are visible "
                            f"({', '.join(names)}).")
    if problems and not force:
        raise LaunchError(" ".join(problems) + " Pass --force to launch anyway.")
    return problems
