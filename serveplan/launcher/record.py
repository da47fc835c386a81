"""run.json, the record of a launch beside its plan.yaml: what `plan launch` started (commands, ports, pids,
process groups), where, and how it ended; written atomically, read by `plan stop`, re-planning and verify."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from serveplan.errors import LaunchError
from serveplan.fileio import write_atomic as _write_atomic

RUN_FILE = "run.json"

Status = Literal["dry-run", "starting", "running", "detached", "stopped", "failed"]


class ReplicaRecord(BaseModel):
    replica: int
    name: str
    argv: list[str]
    env: dict[str, str] = Field(description="What the launch adds to the inherited environment.")
    command: str = Field(description="The shell line equivalent to argv + env.")
    port: int
    gpus: list[int]
    cuda_visible_devices: str | None = None
    files: dict[str, str] = Field(default_factory=dict, description="Files written before the start.")
    url: str = Field(description="OpenAI-compatible base URL (…/v1).")
    health_url: str
    log: str | None = None
    pid: int | None = None
    pgid: int | None = None
    pid_start_ticks: int | None = Field(default=None, description="/proc start time, to recognise the pid.")
    health_s: float | None = Field(default=None, description="Seconds from start to the first healthy answer.")
    exit_code: int | None = None


class RunRecord(BaseModel):
    """What `plan launch` started, where, and how it ended (run.json)."""

    plan_dir: str
    status: Status
    engine: str
    engine_version: str
    image: str = ""
    model: str
    served_model_name: str
    candidate: str = Field(description="The winner's label.")
    gpu: str
    started_at: str | None = None
    stopped_at: str | None = None
    supervisor_pid: int | None = None
    replicas: list[ReplicaRecord]
    endpoints: list[str]
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    stop_signal: str | None = None
    stop_hint: str = ""

    @property
    def pgids(self) -> list[int]:
        return [r.pgid for r in self.replicas if r.pgid is not None]

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def write(self, plan_dir: Path) -> Path:
        return write_atomic(Path(plan_dir) / RUN_FILE, self.model_dump_json(indent=2) + "\n")


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temp file in the same folder and os.replace: readers see the old or the new file."""
    return _write_atomic(path, text)


def read_run(plan_dir: str | Path) -> RunRecord:
    p = Path(plan_dir)
    if not p.exists():  # not "No run.json in /" for a mistyped folder
        raise LaunchError(f"Plan folder '{p}' does not exist; give the folder `plan -o` wrote.")
    p = p / RUN_FILE if p.is_dir() else p
    if not p.exists():
        raise LaunchError(f"No {RUN_FILE} in {p.parent}: nothing was launched from this plan folder.")
    from pydantic import ValidationError

    from serveplan.errors import validation_sentence
    from serveplan.fileio import read_document

    try:
        return RunRecord.model_validate(read_document(p, "run record"))
    except ValidationError as e:
        raise LaunchError(f"'{p}' is not a run record of `plan launch`: "
                          f"{validation_sentence(e).removeprefix('Invalid configuration: ')}") from None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")
