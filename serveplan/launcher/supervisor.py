"""Start engine processes, wait for them to be healthy, watch them, stop them: the Supervisor.

Each process runs in its own process group (start_new_session), with stdout and stderr going to
`<log_dir>/<name>.log`, which a thread follows and echoes line by line as `[name] line` (files rather
than pipes, so a detached engine never dies of a broken pipe). Start = port check, Popen, wait for every
health URL (with a progress display), one short smoke completion per process. Failures are told in one
sentence with the log line that shows them: the engine exited, CUDA ran out of memory, the port was
taken, health never came. Any failure stops everything started and raises LaunchError. Stop = SIGTERM to
each whole process group, a grace period, then SIGKILL to the group; children are always reaped.
"""


from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
from rich.console import Console
from rich.text import Text

from serveplan.errors import LaunchError
from serveplan.launcher.logwatch import (FailureLines, compile_pattern, error_line, first_exception_after,
                                        follow_lines, last_line)
from serveplan.launcher.procs import port_free, stop_groups

TAIL_LINES = 200


@dataclass
class ProcSpec:
    """One process to supervise."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict, metadata={"doc": "Added to os.environ."})
    cwd: Path | None = None
    port: int | None = None
    health_url: str | None = None
    oom_patterns: tuple[str, ...] = ()
    crash_patterns: tuple[str, ...] = ()
    """Log lines after which the engine never serves (a worker's exception): the launch fails at once."""
    crash_hints: tuple[tuple[str, str], ...] = ()
    """(pattern, sentence): a line the log showed that explains a crash, and what to do about it."""
    base_url: str | None = None
    """Server root (http://127.0.0.1:8000) for the smoke completion; none = no smoke request."""
    model: str | None = None
    """The served model name the smoke request asks for."""
    bind_host: str = "0.0.0.0"


@dataclass
class ProcState:
    spec: ProcSpec
    log_path: Path
    popen: subprocess.Popen | None = None
    pgid: int | None = None
    started_at: float | None = None  # time.monotonic()
    healthy_at: float | None = None
    exit_code: int | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    failure: tuple[str, str] | None = None  # (kind, line) seen in the log: "oom" | "port" | "crash"
    follower: threading.Thread | None = None
    last_line_at: float | None = None  # time.monotonic() of the log's newest line
    hints: list[str] = field(default_factory=list)  # crash_hints whose pattern a log line matched

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def health_s(self) -> float | None:
        if self.healthy_at is None or self.started_at is None:
            return None
        return round(self.healthy_at - self.started_at, 3)


class Supervisor:
    """Runs a set of engine processes; see the module docstring. Use start(), then wait() or detach(),
    and stop() (also a context manager: `with Supervisor(...) as sup:` starts and always stops)."""

    def __init__(self, procs: list[ProcSpec], *, log_dir: Path, health_timeout_s: float,
                 on_line: Callable[[str, str], None] | None = None, grace_s: float = 10.0,
                 console: Console | None = None, smoke: bool = True, smoke_timeout_s: float = 60.0,
                 check_ports: bool = True, poll_s: float = 0.1,
                 on_spawn: Callable[[ProcState], None] | None = None):
        if not procs:
            raise ValueError("Supervisor needs at least one process")
        names = [p.name for p in procs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self.log_dir = Path(log_dir)
        self.health_timeout_s = health_timeout_s
        self.on_line = on_line
        self.grace_s = grace_s
        self.console = console or Console(stderr=True, highlight=False)
        self.smoke = smoke
        self.smoke_timeout_s = smoke_timeout_s
        self.check_ports = check_ports
        self.poll_s = poll_s
        self.on_spawn = on_spawn
        self.states = [ProcState(p, self.log_dir / f"{p.name}.log") for p in procs]
        self._stop_evt = threading.Event()  # a following thread saw a fatal line, or a signal came
        self._signal: int | None = None
        self._hurry = False
        self._stopped = False
        self._detached = False
        self._followers_stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ public
    @property
    def procs(self) -> list[ProcState]:
        return self.states

    @property
    def pids(self) -> dict[str, int | None]:
        return {s.spec.name: s.pid for s in self.states}

    @property
    def signal_received(self) -> int | None:
        """The signal (SIGINT/SIGTERM) that made wait() return or start() give up, if any."""
        return self._signal

    def start(self) -> None:
        """Check ports, start every process, wait until all are healthy, send the smoke requests.
        On failure everything started is stopped and LaunchError raised; on SIGINT/SIGTERM everything is
        stopped and KeyboardInterrupt raised."""
        with self.handling_signals():
            try:
                if self.check_ports:
                    self._check_ports()
                self.log_dir.mkdir(parents=True, exist_ok=True)
                atexit.register(self._atexit)
                for st in self.states:
                    self._spawn(st)
                    if self.on_spawn:
                        self.on_spawn(st)
                self._wait_healthy()
                if self.smoke:
                    self._smoke_all()
            except BaseException:
                self.stop()
                raise

    def wait(self) -> int | None:
        """Supervise until SIGINT/SIGTERM (returns the signal number, processes still running: call stop())
        or until a process exits or logs a fatal error (stops the rest, raises LaunchError)."""
        with self.handling_signals():
            while self._signal is None:
                try:
                    for st in self.states:
                        self._raise_if_failed(st, "while serving")
                except LaunchError:
                    self.stop()
                    raise
                self._stop_evt.wait(self.poll_s)
                self._stop_evt.clear()
            return self._signal

    def run(self) -> int | None:
        """start(), wait() and stop(): returns the signal that ended it (None if none)."""
        with self.handling_signals():
            self.start()
            try:
                return self.wait()
            finally:
                self.stop()

    def detach(self) -> None:
        """Leave the processes running after this object (and this Python) goes away."""
        self._detached = True
        self._followers_stop.set()
        for st in self.states:
            if st.follower:
                st.follower.join(timeout=2)
        atexit.unregister(self._atexit)

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every process group, wait up to the grace period, SIGKILL what is left, reap."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        grace = self.grace_s if grace_s is None else grace_s
        groups = [st.pgid for st in self.states if st.pgid is not None]

        def reap() -> None:
            for st in self.states:
                if st.popen is not None and st.popen.poll() is not None:
                    st.exit_code = st.popen.returncode

        stop_groups(groups, grace, reap=reap, hurry=lambda: self._hurry)
        for st in self.states:
            if st.popen is not None:
                try:
                    st.exit_code = st.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
                    pass
        self._followers_stop.set()
        for st in self.states:
            if st.follower:
                st.follower.join(timeout=2)
        atexit.unregister(self._atexit)

    def __enter__(self) -> "Supervisor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ start
    def _check_ports(self) -> None:
        seen: dict[int, str] = {}
        for st in self.states:
            port = st.spec.port
            if port is None:
                continue
            if port in seen:
                raise LaunchError(f"{st.spec.name} and {seen[port]} would both listen on port {port}; "
                                  f"give each process its own port.")
            seen[port] = st.spec.name
            if not port_free(port, st.spec.bind_host):
                raise LaunchError(f"Port {port} is already in use, so {st.spec.name} could not listen on it; "
                                  f"stop whatever holds it (ss -ltnp 'sport = :{port}') or choose another "
                                  f"base port.")

    def _spawn(self, st: ProcState) -> None:
        env = {**os.environ, **st.spec.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        st.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(st.log_path, "wb") as out:
            try:
                st.popen = subprocess.Popen(st.spec.argv, env=env, cwd=st.spec.cwd, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            except FileNotFoundError:
                raise LaunchError(f"{st.spec.name}: the command `{st.spec.argv[0]}` was not found on PATH; "
                                  f"install the engine (or run inside its container image).") from None
            except PermissionError as e:
                raise LaunchError(f"{st.spec.name}: cannot run `{st.spec.argv[0]}`: {e}.") from None
        st.started_at = time.monotonic()
        st.pgid = st.popen.pid  # a new session: its leader's pid is the group id
        st.follower = threading.Thread(target=self._follow, args=(st,), name=f"follow-{st.spec.name}",
                                       daemon=True)
        st.follower.start()

    def _follow(self, st: ProcState) -> None:
        """Echo the log file as it grows; note lines that show a failure."""
        failures = FailureLines(st.spec.oom_patterns, st.spec.crash_patterns)
        hints = [(compile_pattern(p), sentence) for p, sentence in st.spec.crash_hints]
        for line, complete in follow_lines(st.log_path, self._followers_stop):
            st.tail.append(line)
            st.last_line_at = time.monotonic()
            for pattern, sentence in hints:
                if sentence not in st.hints and pattern.search(line):
                    st.hints.append(sentence)
            # a crash may still turn out to be an OOM or a taken port: the worker logs "hit an exception" first
            # and the exception's own line after its traceback
            if complete and (st.failure is None or st.failure[0] == "crash"):
                kind = failures.kind(line)
                if kind and (st.failure is None or kind != "crash"):
                    st.failure = (kind, line)
                    self._stop_evt.set()
            self._emit(st.spec.name, line)

    def _emit(self, name: str, line: str) -> None:
        if self.on_line is not None:
            try:
                self.on_line(name, line)
            except Exception:
                pass
            return
        self.console.print(Text.assemble((f"[{name}] ", "dim cyan"), line), soft_wrap=True)

    def _wait_healthy(self) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        deadline = time.monotonic() + self.health_timeout_s
        pending = list(self.states)
        with httpx.Client(timeout=httpx.Timeout(1.0, connect=0.5), trust_env=False) as client, \
                Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                         console=self.console, transient=True, disable=self.on_line is not None) as progress:
            tasks = {st.spec.name: progress.add_task(f"waiting for {st.spec.name} to become healthy", total=1)
                     for st in self.states}
            while pending:
                if self._signal is not None:
                    raise KeyboardInterrupt
                for st in list(pending):
                    self._raise_if_failed(st, "while starting")
                    if st.spec.health_url is None or _healthy(client, st.spec.health_url):
                        st.healthy_at = time.monotonic()
                        pending.remove(st)
                        progress.update(tasks[st.spec.name], completed=1,
                                        description=f"{st.spec.name} healthy after {st.health_s:.1f} s")
                if not pending:
                    break
                if time.monotonic() > deadline:
                    st = pending[0]
                    last = last_line(st.tail)
                    raise LaunchError(
                        f"{st.spec.name} did not become healthy within {self.health_timeout_s:g} s "
                        f"(GET {st.spec.health_url} never answered 200)"
                        + (f"; its last log line: `{last}`" if last else "; it wrote no log")
                        + f". Full log: {st.log_path}")
                self._stop_evt.wait(self.poll_s)
                self._stop_evt.clear()

    def _raise_if_failed(self, st: ProcState, when: str) -> None:
        if st.failure:
            if st.failure[0] == "crash":
                self._let_log_settle(st)
            raise LaunchError(self._failure_message(st, when))
        if st.popen is not None and st.popen.poll() is not None:
            st.exit_code = st.popen.returncode
            if st.follower:  # let the follower read the last lines the process wrote
                time.sleep(0.15)
            if st.failure:
                raise LaunchError(self._failure_message(st, when))
            raise LaunchError(self._exit_message(st, when))

    def _smoke_all(self) -> None:
        with httpx.Client(timeout=self.smoke_timeout_s, trust_env=False) as client:
            for st in self.states:
                if st.spec.base_url is None:
                    continue
                url = st.spec.base_url.rstrip("/") + "/v1/completions"
                body = {"prompt": "Hello, my name is", "max_tokens": 8, "temperature": 0}
                if st.spec.model:
                    body["model"] = st.spec.model
                try:
                    r = client.post(url, json=body)
                except httpx.HTTPError as e:
                    self._raise_if_failed(st, "during the smoke request")
                    raise LaunchError(f"{st.spec.name} is healthy but a smoke completion to {url} failed: "
                                      f"{type(e).__name__}: {e}. Full log: {st.log_path}") from None
                try:
                    ok = r.status_code == 200 and bool(r.json().get("choices"))
                except ValueError:
                    ok = False
                if not ok:
                    detail = r.text.strip().replace("\n", " ")[:300]
                    raise LaunchError(f"{st.spec.name} is healthy but a smoke completion (max_tokens=8) to {url} "
                                      f"got HTTP {r.status_code}: `{detail}`. Full log: {st.log_path}")

    # ------------------------------------------------------------------------------------------ messages
    def _let_log_settle(self, st: ProcState, quiet_s: float = 1.0, most_s: float = 5.0) -> None:
        """Wait (at most `most_s`) until the log has been quiet for `quiet_s`: the traceback after a worker's
        "hit an exception" names the cause, and may show it was out of memory after all."""
        deadline = time.monotonic() + most_s
        while time.monotonic() < deadline and st.follower is not None and st.follower.is_alive():
            if st.last_line_at is not None and time.monotonic() - st.last_line_at >= quiet_s:
                return
            time.sleep(0.1)

    def _failure_message(self, st: ProcState, when: str) -> str:
        kind, line = st.failure  # type: ignore[misc]
        if kind == "crash":
            cause = first_exception_after(st.tail, line) or line.strip()
            hint = "".join(f" {h}" for h in st.hints)
            code = st.popen.poll() if st.popen is not None else None
            exited = f" (exited with code {code})" if code is not None else " (still running: stopped)"
            return f"{st.spec.name} crashed {when}{exited}: `{cause}`.{hint} Full log: {st.log_path}"
        if kind == "oom":
            return (f"{st.spec.name} ran out of GPU memory {when} (the configuration does not fit this GPU as "
                    f"launched: lower max_num_seqs / max_model_len / gpu_memory_utilization, or use the next "
                    f"candidate): `{line.strip()}`. Full log: {st.log_path}")
        port = f" {st.spec.port}" if st.spec.port else ""
        return (f"{st.spec.name} could not listen on port{port}, which is already in use: `{line.strip()}`. "
                f"Stop whatever holds it or choose another base port. Full log: {st.log_path}")

    def _exit_message(self, st: ProcState, when: str) -> str:
        code = st.exit_code
        how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else \
            f"exited with code {code}"
        line = error_line(st.tail) or last_line(st.tail)
        shown = f": `{line}`" if line else " without writing a log"
        return f"{st.spec.name} {how} {when}{shown}. Full log: {st.log_path}"

    # ------------------------------------------------------------------------------------------ signals
    def handling_signals(self):
        """Context manager: while inside, SIGINT/SIGTERM only mark a stop request (main thread only)."""
        sup = self

        class _Ctx:
            def __enter__(self):
                self.old = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for s in (signal.SIGINT, signal.SIGTERM):
                    self.old[s] = signal.signal(s, sup._on_signal)
                return self

            def __exit__(self, *exc):
                for s, h in self.old.items():
                    signal.signal(s, h)

        return _Ctx()

    def _on_signal(self, signum, frame) -> None:
        if self._signal is not None:
            self._hurry = True  # a second Ctrl-C: do not wait out the grace period
        # Only flags: wait() and _wait_healthy() look at _signal every poll_s. Setting _stop_evt here deadlocked: the
        # handler runs on the main thread, which may hold the event's lock inside _stop_evt.wait() when the signal
        # lands (a Ctrl-C that `plan launch` never answered; tests/test_supervisor.py -k deadlock).
        self._signal = signum

    def _atexit(self) -> None:
        if not self._detached:
            self.stop(grace_s=min(self.grace_s, 5.0))


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
