"""Where a profile came from: device, driver, clocks sampled during the run, library versions; and its file."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import threading
from pathlib import Path
from typing import Any




def _smi(query: str, index: int = 0) -> list[str] | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", str(index)],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]


def _num(v: str | None) -> float | str | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return v


class _ClockSampler:
    """Samples SM/memory clocks, temperature and power with nvidia-smi while the profile runs."""

    def __init__(self, interval_s: float = 2.0):
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            s = _smi("clocks.sm,clocks.mem,temperature.gpu,power.draw")
            if s is None:
                return
            self.samples.append(s)
            self._stop.wait(interval_s)

    def __enter__(self) -> _ClockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> dict:
        cols = list(zip(*self.samples)) if self.samples else []
        out = {}
        for name, col in zip(("sm_mhz", "mem_mhz", "temperature_c", "power_w"), cols):
            vals = [v for v in (_num(x) for x in col) if isinstance(v, float)]
            if vals:
                out[name] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
        return {"samples": len(self.samples), **out} if out else {}


def provenance(torch: Any, device: str) -> dict:
    prov: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "torch": str(torch.__version__), "cuda": torch.version.cuda, "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        prov.update({
            "gpu_name": p.name, "memory_gib": round(p.total_memory / 2 ** 30, 2),
            "compute_capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
            "l2_mib": round(getattr(p, "L2_cache_size", 0) / 2 ** 20, 1) or None,
            "visible_gpus": torch.cuda.device_count(),
        })
        s = _smi("name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit")
        if s:
            prov["gpu_name"] = s[0]
            prov["driver"] = s[1]
            prov["memory_gib"] = round(float(s[2]) / 1024, 2) if _num(s[2]) else prov["memory_gib"]
            prov["clocks"] = {"sm_mhz_at_start": _num(s[3]), "mem_mhz_at_start": _num(s[4]),
                              "max_sm_mhz": _num(s[5]), "max_mem_mhz": _num(s[6])}
            prov["power_limit_w"] = _num(s[7])
    else:
        prov.update({"gpu_name": f"cpu ({platform.processor() or platform.machine()})", "device": device})
    return prov


def _plain(x: Any) -> Any:
    """Plain YAML types only (torch's version string, tuples and the like become str, list, ...)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    return str(x)


def _json_yaml(x: Any, indent: int = 0) -> str:
    """JSON that YAML 1.1 loaders (PyYAML) read back with the same types: floats keep a '.' and a signed
    exponent ('1.0e-05', not '1e-05', which PyYAML would read as a string)."""
    pad = " " * (indent + 1)
    if isinstance(x, dict):
        if not x:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {_json_yaml(v, indent + 1)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(x, list):
        return "[" + ", ".join(_json_yaml(v, indent + 1) for v in x) + "]"
    if isinstance(x, float) and math.isfinite(x):
        r = repr(x)
        if "e" in r:
            mant, exp = r.split("e")
            r = f"{mant if '.' in mant else mant + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"
        return r
    if isinstance(x, float):
        return json.dumps(str(x))
    return json.dumps(x)


def _dump(doc: dict, f: Any) -> None:
    doc = _plain(doc)
    try:
        import yaml
    except ImportError:  # JSON is YAML: any YAML loader reads it
        f.write(_json_yaml(doc) + "\n")
        return
    yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None, width=120)


def write_profile(doc: dict, path: str | os.PathLike) -> Path:
    """Write doc as YAML atomically: a temporary file beside path, then os.replace; on failure nothing is
    left behind and an existing file at path is untouched."""
    from serveplan.fileio import write_atomic

    return write_atomic(path, lambda f: _dump(doc, f))
