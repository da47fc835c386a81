"""Where the checkpoint is written: a temporary folder beside OUT, renamed into place only when everything in it
is complete, so that OUT is either the whole new checkpoint or untouched."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from serveplan.quantize.methods import QuantizeError


def new_tmpdir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the final folder gets the usual permissions
    return tmp


def save_checkpoint(model: Any, tokenizer: Any, folder: Path) -> None:
    model.save_pretrained(str(folder), save_compressed=True)
    tokenizer.save_pretrained(str(folder))


def commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder into place: OUT is replaced only after the new one is complete."""
    if out.exists():
        if not overwrite:
            raise QuantizeError(f"{out} already exists; pass --overwrite or choose another -o.")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
