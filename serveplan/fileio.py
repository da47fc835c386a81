"""One way to write a file so that nothing half-written is ever seen: a temporary file beside the target,
flushed to disk, then renamed over it (readers see the old file or the new one). Standard library only, so
import-light modules (the GPU profiler) can use it too."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: str | os.PathLike, content: str | Callable[[IO[str]], None], *,
                 mode: int = 0o644) -> Path:
    """Write `content` (text, or a function that writes to the open file) to `path` atomically. On any
    failure the temporary file is removed and an existing file at `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0600
        with os.fdopen(fd, "w") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_tree_atomic(outdir: str | os.PathLike, files: dict[str, str], *,
                      carry_over: tuple[str, ...] = ("checkpoints",)) -> list[Path]:
    """Replace the folder `outdir` whole with `files` (relative path -> text; `.sh` files executable).

    Everything is written into a new folder beside `outdir`, which then takes its place: no file of an
    earlier content is left behind (re-planning into a used `-o` leaves no stale launch file), and on any
    failure `outdir` is as it was and no temporary folder remains. Entries named in `carry_over` (e.g. the
    checkpoints a quantize step made there) move into the new folder."""
    outdir = Path(outdir)
    parent = outdir.parent
    parent.mkdir(parents=True, exist_ok=True)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(outdir))
    new = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.new-", dir=parent))
    old = parent / f"{new.name.replace('.new-', '.old-', 1)}"
    carried: list[str] = []
    swapped = False
    try:
        for rel, text in files.items():
            path = new / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if path.suffix == ".sh":
                path.chmod(0o755)
        if outdir.exists():
            for name in carry_over:
                if (outdir / name).exists() and name not in files:
                    os.replace(outdir / name, new / name)
                    carried.append(name)
            os.replace(outdir, old)
        swapped = True
        os.replace(new, outdir)
    except BaseException:
        if swapped and old.exists() and not outdir.exists():
            os.replace(old, outdir)
        for name in carried:  # put what was moved back where it was
            with contextlib.suppress(OSError):
                os.replace(new / name, outdir / name)
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return sorted(outdir / rel for rel in files)


def read_document(path: str | os.PathLike, what: str, *, expect: type = dict):
    """A user-given YAML or JSON document (plan.yaml, run.json, bench JSON, traffic file, config.json, profile),
    parsed; a missing, unreadable, empty, corrupt or wrongly shaped one raises ConfigError with one sentence
    naming the file and what it should hold. JSON is YAML 1.2, but .json files are read as JSON for the
    exact error position."""
    from serveplan.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder, not a file.")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} '{path}' does not exist.") from None
    except OSError as e:
        raise ConfigError(f"Cannot read {what} '{path}': {e.strerror or e}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not text (binary content); give a YAML or JSON file.") from None
    if not text.strip():
        raise ConfigError(f"{what} '{path}' is empty.")
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            doc = yaml_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} '{path}' is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError and its subclasses; yaml is imported lazily
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} '{path}' is not valid YAML ({getattr(e, 'problem', None) or e}{where}).") from None
    if not isinstance(doc, expect):
        shape = {dict: "a mapping", list: "a list"}.get(expect, expect.__name__)
        raise ConfigError(f"{what} '{path}' holds {type(doc).__name__}, not {shape}.")
    return doc


def yaml_load(stream):  # noqa: ANN001, ANN201 - str or a text file -> the document
    """yaml.safe_load with libyaml's C parser where PyYAML has it (the same documents, ~5x faster: a plan reads
    ~50 catalog and profile files, a third of its YAML time before this)."""
    import yaml

    return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
