"""Process groups seen through /proc, shared by the Supervisor and `plan stop`: whether a port is free, whether
a process or group still lives, and the one way to stop a group (SIGTERM, grace period, SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import time


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    """Whether a server could listen on host:port now (a bind test, as the engine would do it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def stop_groups(groups: list[int], grace_s: float, *, reap=lambda: None, hurry=lambda: False) -> None:  # noqa: ANN001
    """The one process-group stop (Supervisor.stop and `plan stop`): SIGTERM each whole group, wait up to the
    grace period (reap() collects exit statuses meanwhile; hurry() cuts the wait short), SIGKILL what is
    left (a crashed TP engine's workers may ignore SIGTERM), and wait until no member remains."""
    for pg in groups:
        _killpg(pg, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not hurry():
        reap()
        if not any(group_members(pg) for pg in groups):
            break
        time.sleep(0.05)
    for pg in groups:
        if group_members(pg):
            _killpg(pg, signal.SIGKILL)
    end = time.monotonic() + 5
    while any(group_members(pg) for pg in groups) and time.monotonic() < end:
        reap()
        time.sleep(0.05)
    reap()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data[data.rindex(")") + 2:].split()


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot): with the pid, names a process uniquely."""
    st = _stat(pid)
    return int(st[19]) if st else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[2] == str(pgid) and st[0] not in ("Z", "X"):
                out.append(int(entry))
    return out
