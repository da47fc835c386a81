"""Launch a plan's winning configuration on this machine: `plan launch DIR`.

launch_plan() renders one engine command per replica (the engine adapter), checks the GPUs, starts them
under a Supervisor, waits for health and a smoke completion, prints the endpoints, and either supervises
until Ctrl-C / SIGTERM (foreground) or returns leaving them running (detach; stop_run() stops them).
Everything it did is in `run.json` next to plan.yaml, written atomically and updated at stop.
launched() is the same as a context manager for benchmark and verification code.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.text import Text

from serveplan.errors import LaunchError, ServeplanError
from serveplan.launcher.gpus import check_gpus
from serveplan.render.targets.common import Deployment
from serveplan.launcher.procs import group_members, pid_alive, proc_start_ticks, stop_groups
from serveplan.launcher.record import (RUN_FILE, ReplicaRecord, RunRecord, Status, now, read_run,
                                       write_atomic)
from serveplan.launcher.supervisor import ProcSpec, ProcState, Supervisor
from serveplan.planner.result import Plan, load_plan
from serveplan.planner.spec import Checkpoint

LOCAL_HOST = "127.0.0.1"


def _plan_dir(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.is_file() else p


# ---------------------------------------------------------------------------------------------- prepare
class _Prepared:
    def __init__(self, record: RunRecord, procs: list[ProcSpec], files: list[dict[str, str]]):
        self.record, self.procs, self.files = record, procs, files


def _resolve_checkpoint(plan: Plan, model: str | None, plan_dir: Path, notes: list[str], dry_run: bool) -> Checkpoint:
    """The checkpoint to serve: the plan's, or one named with --model (which must hold the planned precision).
    A checkpoint that `quantize` has still to make stops the launch (the dry run says how to make it)."""
    from serveplan.render.engines.base import served_checkpoint
    from serveplan.planner.checkpoints import user_checkpoint

    cfg, req = plan.winner.config, plan.request
    if model is not None:
        ckpt = user_checkpoint(model, cfg.weight_dtype, req.model)
        notes.append(f"weights: {ckpt.describe()}")
        return ckpt
    ckpt = served_checkpoint(cfg, req)
    if ckpt.source == "needs_quantize":
        local = plan_dir / ckpt.id
        if (local / "config.json").is_file():
            return ckpt.model_copy(update={"id": str(local.resolve())})
        how = (f"The winning configuration serves {cfg.weight_dtype} weights and no published {cfg.weight_dtype} "
               f"checkpoint of {req.model.name} exists for {cfg.engine}: make it with `{plan_dir}/quantize.sh` "
               f"(serveplan quantize --model {ckpt.base_id} --method {ckpt.quantize_method} -o {local}), or name "
               f"yours with `plan launch {plan_dir} --model PATH`.")
        if not dry_run:
            raise LaunchError(how)
        notes.append(how)
        return ckpt.model_copy(update={"id": str(local)})
    notes.append(f"weights: {ckpt.describe()}")
    if ckpt.engine_quantizes and not req.inventory.gpu.has_fp8_tensor_cores:
        notes.append(f"{req.inventory.gpu.display_name} has no FP8 tensor cores, so it runs weight-only FP8.")
    return ckpt


def _check_gptq_folder(ckpt: Checkpoint, engine: str) -> None:
    """Refuse a local AutoGPTQ folder in which vLLM would find no quantized layer: it would serve the plan's GPTQ
    configuration unquantized (dummy weights) or fail to load (real .bin weights)."""
    from serveplan.planner.checkpoints import gptq_layers_unfindable

    if engine == "vllm" and ckpt.format == "gptq" and gptq_layers_unfindable(ckpt.id):
        raise LaunchError(f"The GPTQ checkpoint {ckpt.id} has no *.safetensors and its quantization_config lists no "
                          f"modules_in_block_to_quantize, so vLLM cannot tell which layers are quantized and would "
                          f"serve them all unquantized; add modules_in_block_to_quantize (AutoGPTQ writes it, e.g. "
                          f'[["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"], '
                          f'["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]) or serve the safetensors checkpoint.')


def _prepare(plan_dir: Path, *, model: str | None, force: bool, base_port: int, dry_run: bool,
             notes: list[str], extra_args: tuple[str, ...] = ()) -> _Prepared:
    assign_gpus, get_adapter, replica_port = _engines()

    plan = load_plan(plan_dir)
    est = plan.winner
    cfg, req = est.config, plan.request
    inv = req.inventory
    if not est.memory.fits:
        notes.append(f"The winner does not fit in memory by the plan's estimate: {est.memory.reason}")
    if est.violations:
        notes.append("The winner misses the SLO by the plan's estimate: " + "; ".join(est.violations))
    if cfg.gpus_per_replica > inv.gpus_per_node or cfg.total_gpus > inv.gpus_per_node:
        raise LaunchError(f"The winner ({cfg.label()}) needs {cfg.total_gpus} GPUs, more than one node's "
                          f"{inv.gpus_per_node}; `plan launch` starts replicas on this machine only, so launch "
                          f"it node by node or re-plan with use of one node.")
    if cfg.tp > 1 and inv.nvlink_multicast:
        # session 25: a TP2 plan that assumed it crashed in vLLM's memory profile on two H200s without it
        notes.append(f"the plan assumes NVLink multicast at TP={cfg.tp} (vLLM's FlashInfer all-reduce fusion, NCCL "
                     f"NVLS); on nodes without it (many cloud VMs) the engine fails while starting: plan again with "
                     f"hardware.nvlink_multicast=false there.")
    if req.model.is_moe and cfg.engine == "vllm":
        notes.append("vLLM compiles its fused MoE kernel for each new batch shape under the first load (session 26: a "
                     "fresh Mixtral server's first ~25 s of load stalled on it); `plan launch --warmup 30` sends that "
                     "load before the launch reports ready.")
        if cfg.weight_dtype == "int8":  # session 27: the server logs "Config file not found ... dtype=int8_w8a16"
            notes.append("vLLM 0.26.0 runs an INT8 checkpoint's experts weight-only (int8_w8a16) with its default "
                         "Triton config, none being shipped for them: long prompt chunks take ~3x FP8 experts' time, "
                         "as the plan predicts. vLLM's benchmarks/kernels/benchmark_moe.py --tune --dtype int8_w8a16 "
                         "writes a tuned config; VLLM_TUNED_CONFIG_FOLDER points the server at it (the plan does not "
                         "assume one).")
    warnings = check_gpus(plan, force=force or dry_run)
    notes.extend(f"GPU check ({'dry run' if dry_run else 'forced'}): {w}" for w in warnings)
    ckpt = _resolve_checkpoint(plan, model, plan_dir, notes, dry_run)
    _check_gptq_folder(ckpt, cfg.engine)
    dep = Deployment.of(plan, ckpt, base_port)  # the one replica renderer, shared with the launch files
    cfg, adapter = dep.candidate, dep.adapter
    resolved, served = ckpt.id, dep.served_model_name
    assignment = assign_gpus(cfg, inv.gpus_per_node)
    parent_cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    tokens = [t.strip() for t in parent_cvd.split(",")] if parent_cvd else None
    replicas, procs, files = [], [], []
    for r, gpus in enumerate(assignment):
        phys = [tokens[i] if tokens and i < len(tokens) else str(i) for i in gpus]
        render_gpus = [int(t) for t in phys] if all(t.isdigit() for t in phys) else list(gpus)
        port = replica_port(base_port, r)
        launch = dep.render(r, render_gpus, port, extra_args=tuple(extra_args), check=False)
        problems = adapter.validate(list(launch.argv))
        if problems:
            msg = (f"The rendered {adapter.name} {adapter.version} command for replica {r} is not valid: "
                   + "; ".join(problems))
            if not force:
                raise LaunchError(msg + ". Pass --force to launch anyway.")
            notes.append(msg)
        env = dict(launch.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(phys)
        name = f"replica-{r}"
        health = adapter.health_url(LOCAL_HOST, launch.port)
        command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = (command + " " if command else "") + shlex.join(launch.argv)
        written = {str(_file_path(plan_dir, k)): v for k, v in dict(launch.files or {}).items()}
        replicas.append(ReplicaRecord(
            replica=r, name=name, argv=list(launch.argv), env=env, command=command, port=launch.port,
            gpus=list(launch.gpus), cuda_visible_devices=env["CUDA_VISIBLE_DEVICES"], files=written,
            url=f"http://{LOCAL_HOST}:{launch.port}/v1", health_url=health,
            log=str(plan_dir / "logs" / f"{name}.log")))
        procs.append(ProcSpec(name=name, argv=list(launch.argv), env=env, cwd=plan_dir, port=launch.port,
                              health_url=health, oom_patterns=tuple(adapter.oom_patterns),
                              crash_patterns=tuple(adapter.crash_patterns),
                              crash_hints=tuple(adapter.crash_hints),
                              base_url=f"http://{LOCAL_HOST}:{launch.port}", model=served))
        files.append(written)
    if len(replicas) > 1:
        notes.append(f"{len(replicas)} replicas serve on {len(replicas)} ports with no load balancer in front: "
                     f"spread requests over the endpoints, or put a router (e.g. nginx, LiteLLM) before them.")
    record = RunRecord(plan_dir=str(plan_dir), status="dry-run" if dry_run else "starting", engine=adapter.name,
                       engine_version=adapter.version, image=getattr(adapter, "image", "") or "",
                       model=resolved, served_model_name=served, candidate=cfg.label(),
                       gpu=inv.gpu.display_name, replicas=replicas, endpoints=[r.url for r in replicas],
                       notes=notes)
    return _Prepared(record, procs, files)


def _engines():
    """(assign_gpus, get_adapter, replica_port) from the engine-adapter package."""
    from serveplan.render.engines.base import assign_gpus, get_adapter, replica_port

    return assign_gpus, get_adapter, replica_port


def _file_path(plan_dir: Path, key: str) -> Path:
    p = Path(key)
    return p if p.is_absolute() else plan_dir / p


# ---------------------------------------------------------------------------------------------- printing
def _print_commands(console: Console, record: RunRecord) -> None:
    console.print(Text(f"{record.engine} {record.engine_version}: {record.candidate} on {record.gpu}", "bold"))
    if record.image:
        console.print(Text(f"image: {record.image}", "dim"))
    for r in record.replicas:
        console.print(Text(f"# {r.name}: GPUs {r.cuda_visible_devices}, port {r.port}", "dim"))
        for path, content in r.files.items():
            console.print(Text(f"# writes {path}:", "dim"))
            console.print(Text(content.rstrip("\n"), "dim"))
        console.print(Text(r.command), soft_wrap=True)
    for n in record.notes:
        console.print(Text(f"note: {n}", "yellow"), soft_wrap=True)


def _print_ready(console: Console, record: RunRecord, *, detach: bool) -> None:
    for r in record.replicas:
        t = f"{r.health_s:.1f} s" if r.health_s is not None else "?"
        console.print(Text.assemble(("ready ", "bold green"), f"{r.name}: {r.url}  (healthy after {t}, "
                                    f"pid {r.pid}, log {r.log})"), soft_wrap=True)
    console.print(Text(f"model name for requests: {record.served_model_name}"), soft_wrap=True)
    console.print(Text(record.stop_hint), soft_wrap=True)


# ---------------------------------------------------------------------------------------------- launch
def running_groups(plan_dir: Path) -> list[int]:
    """Process groups of a launch recorded in plan_dir/run.json that still have members ([] when none, or when
    the record is missing or unreadable: it then names nothing that could be stopped)."""
    if not (plan_dir / RUN_FILE).exists():
        return []
    try:
        rec = read_run(plan_dir)
    except ServeplanError:
        return []
    if rec.status not in ("starting", "running", "detached"):
        return []
    return [r.pgid for r in rec.replicas if r.pgid is not None and group_members(r.pgid)]


def _refuse_if_running(plan_dir: Path) -> None:
    """A second launch of a plan whose engines still run would orphan them (run.json would name only the new
    ones, and `plan stop` could no longer reach the first): refuse it."""
    live = running_groups(plan_dir)
    if live:
        raise LaunchError(f"{plan_dir} is already running (process groups {', '.join(map(str, live))}); stop it "
                          f"with `plan stop {plan_dir}` first, or launch a copy of the plan folder.")


class _Run:
    """One launch: prepare, start, and keep run.json in step."""

    def __init__(self, plan_dir: str | Path, *, model: str | None, force: bool, base_port: int,
                 health_timeout_s: float, console: Console | None, grace_s: float, quiet: bool,
                 extra_args: tuple[str, ...] = ()):
        self.plan_dir = _plan_dir(plan_dir)
        _refuse_if_running(self.plan_dir)
        self.console = console or Console(highlight=False)
        self.notes: list[str] = []
        self.prep = _prepare(self.plan_dir, model=model, force=force, base_port=base_port, dry_run=False,
                             notes=self.notes, extra_args=extra_args)
        self.record = self.prep.record
        on_line = (lambda name, line: None) if quiet else None
        self.sup = Supervisor(self.prep.procs, log_dir=self.plan_dir / "logs", health_timeout_s=health_timeout_s,
                              grace_s=grace_s, console=self.console, on_line=on_line, on_spawn=self._spawned)

    def _replica(self, name: str) -> ReplicaRecord:
        return next(r for r in self.record.replicas if r.name == name)

    def _spawned(self, st: ProcState) -> None:
        r = self._replica(st.spec.name)
        r.pid, r.pgid = st.pid, st.pgid
        r.pid_start_ticks = proc_start_ticks(st.pid) if st.pid else None
        self.record.write(self.plan_dir)

    def _sync(self) -> None:
        for st in self.sup.states:
            r = self._replica(st.spec.name)
            r.pid, r.pgid, r.health_s, r.exit_code = st.pid, st.pgid, st.health_s, st.exit_code

    def start(self) -> RunRecord:
        for files in self.prep.files:
            for path, content in files.items():
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                write_atomic(Path(path), content)
        rec = self.record
        rec.started_at = now()
        rec.supervisor_pid = os.getpid()
        rec.write(self.plan_dir)
        try:
            self.sup.start()
        except LaunchError as e:
            self.finish("failed", error=str(e))
            raise
        except BaseException as e:
            sig = self.sup.signal_received
            self.finish("stopped", error=f"interrupted while starting ({type(e).__name__})",
                        stop_signal=signal.Signals(sig).name if sig else None)
            raise
        self._sync()
        rec.status = "running"
        return rec

    def finish(self, status: Status, *, error: str | None = None, stop_signal: str | None = None) -> RunRecord:
        self.sup.stop()
        self._sync()
        self.record.status = status
        self.record.stopped_at = now()
        self.record.error = error
        self.record.stop_signal = stop_signal
        self.record.write(self.plan_dir)
        return self.record


def _warmed(run: _Run, warm_up: Callable[[RunRecord], bool] | None) -> bool:
    """Run the launch's warm-up hook, if any, and record what it noted. False when a signal stopped it; any error
    in it stops the engines before it propagates (run.json then says so)."""
    if warm_up is None:
        return True
    try:
        warmed = warm_up(run.record)
    except BaseException as e:
        run.finish("stopped", error=f"stopped while warming up ({type(e).__name__}: {e})")
        raise
    run.record.write(run.plan_dir)
    return warmed


def launch_plan(plan_dir: Path, *, model: str | None = None, dry_run: bool = False, force: bool = False,
                base_port: int = 8000, health_timeout_s: float = 900, detach: bool = False,
                console: Console | None = None, grace_s: float = 10.0, quiet: bool = False,
                extra_args: tuple[str, ...] = (),
                warm_up: Callable[[RunRecord], bool] | None = None) -> RunRecord:
    """Launch the winner of the plan in plan_dir (see the module docstring).

    dry_run prints the commands and environment and touches nothing. Foreground (detach=False) supervises
    until Ctrl-C / SIGTERM and returns the stopped record (record.stop_signal says which signal), or raises
    LaunchError when an engine fails. detach=True returns once every replica is healthy and answered a smoke
    completion, leaving them running (stop_run(plan_dir) or `kill -TERM -<pgid>` stops them).
    quiet drops the engines' log echo (the logs are still in <plan_dir>/logs). warm_up, when given, runs once the
    replicas are healthy and smoke-tested, before the launch says they are ready (`plan launch --warmup`: the plan's
    own traffic, serveplan.bench.warmup); it returns False when a signal stopped it, which stops the launch.
    """
    console = console or Console(highlight=False)
    if dry_run:
        pdir = _plan_dir(plan_dir)
        prep = _prepare(pdir, model=model, force=force, base_port=base_port, dry_run=True, notes=[],
                        extra_args=extra_args)
        prep.record.stop_hint = "dry run: nothing was started"
        _print_commands(console, prep.record)
        return prep.record

    run = _Run(plan_dir, model=model, force=force, base_port=base_port, health_timeout_s=health_timeout_s,
               console=console, grace_s=grace_s, quiet=quiet, extra_args=extra_args)
    rec = run.record
    _print_commands(console, rec)
    if detach:
        run.start()
        if not _warmed(run, warm_up):  # Ctrl-C during the warm-up of a detaching launch: it was not handed over yet
            run.finish("stopped", error="interrupted while warming up")
            raise KeyboardInterrupt
        run.sup.detach()
        rec.status = "detached"
        groups = " ".join(f"-{g}" for g in rec.pgids)
        rec.stop_hint = (f"Running in the background. Stop: kill -TERM -- {groups}   "
                         f"(or stop_run('{run.plan_dir}'))")
        rec.write(run.plan_dir)
        _print_ready(console, rec, detach=True)
        return rec
    with run.sup.handling_signals():  # a Ctrl-C anywhere below only asks for a stop; the stop always completes
        run.start()
        if not _warmed(run, warm_up):  # a signal during the warm-up: stop, as it would later
            # (the load generator took the signal, which it does not name: Ctrl-C is what stops a foreground launch)
            console.print(Text("stop received while warming up: stopping"), soft_wrap=True)
            return run.finish("stopped", error="interrupted while warming up", stop_signal="SIGINT")
        rec.stop_hint = f"Stop: Ctrl-C here, or kill -TERM {os.getpid()}"
        rec.write(run.plan_dir)
        _print_ready(console, rec, detach=False)
        try:
            sig = run.sup.wait()
        except LaunchError as e:
            run.finish("failed", error=str(e))
            raise
        except BaseException as e:
            run.finish("stopped", error=f"interrupted ({type(e).__name__})")
            raise
        name = signal.Signals(sig).name if sig else None
        console.print(Text(f"{name or 'stop'} received: stopping {len(rec.replicas)} replica(s)"), soft_wrap=True)
        return run.finish("stopped", stop_signal=name)


@contextlib.contextmanager
def launched(plan_dir: Path, *, model: str | None = None, force: bool = False, base_port: int = 8000,
             health_timeout_s: float = 900, console: Console | None = None, grace_s: float = 10.0,
             quiet: bool = True) -> Iterator[RunRecord]:
    """Start the plan's winner, yield its RunRecord (endpoints, served_model_name) once healthy, and always
    stop it on leaving. SIGTERM inside the block raises KeyboardInterrupt so the engines are still stopped."""
    run = _Run(plan_dir, model=model, force=force, base_port=base_port, health_timeout_s=health_timeout_s,
               console=console, grace_s=grace_s, quiet=quiet)
    run.start()
    run.record.stop_hint = "stops when the enclosing block ends"
    run.record.write(run.plan_dir)
    old = None
    if threading.current_thread() is threading.main_thread():
        def _term(signum, frame):
            raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")
        old = signal.signal(signal.SIGTERM, _term)
    status: Status = "stopped"
    error = None
    try:
        yield run.record
    except LaunchError as e:
        status, error = "failed", str(e)
        raise
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        run.finish(status, error=error)


def stop_run(plan_dir: str | Path, *, grace_s: float = 10.0, console: Console | None = None) -> RunRecord:
    """Stop what a detached launch left running (SIGTERM to each process group, then SIGKILL after the grace
    period) and mark run.json stopped. Processes whose pid now names another process are left alone."""
    pdir = _plan_dir(plan_dir)
    rec = read_run(pdir)
    groups = []
    for r in rec.replicas:
        if r.pgid is None:
            continue
        if r.pid is not None and pid_alive(r.pid) and r.pid_start_ticks is not None \
                and proc_start_ticks(r.pid) != r.pid_start_ticks:
            continue  # the pid was reused: not ours
        if group_members(r.pgid):
            groups.append(r.pgid)
    stop_groups(groups, grace_s, reap=lambda: _reap(rec))
    rec.status = "stopped"
    rec.stopped_at = now()
    rec.write(pdir)
    if console is not None:
        what = ", ".join(f"{r.name} (pid {r.pid}, port {r.port})" for r in rec.replicas if r.pgid in groups)
        console.print(Text(f"stopped {what} of {rec.candidate}" if groups else
                           f"nothing was running from {pdir / RUN_FILE}; marked it stopped"), soft_wrap=True)
    return rec


def _reap(rec: RunRecord) -> None:
    """Collect exit statuses of replicas that are this process's own children (a detach in this process)."""
    for r in rec.replicas:
        if r.pid is None:
            continue
        try:
            pid, status = os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if pid:
            r.exit_code = os.waitstatus_to_exitcode(status)
