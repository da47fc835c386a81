"""The Supervisor and launch_plan, end to end over loopback with the fake engine (tests/bin/vllm).

Every test checks that no process it started is left running (/proc) and that nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from conftest import alive, free_base_port, free_port, group_alive, make_plan, temp_leftovers
from serveplan.errors import LaunchError
from serveplan.launcher.gpus import check_gpus, gpu_matches, visible_gpus
from serveplan.launcher.supervisor import ProcSpec, Supervisor

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def spec(name: str, port: int, *flags: str) -> ProcSpec:
    return ProcSpec(name=name, argv=["vllm", "serve", MODEL, "--host", "127.0.0.1", "--port", str(port),
                                     "--tensor-parallel-size", "1", *flags],
                    env={}, port=port, health_url=f"http://127.0.0.1:{port}/health",
                    base_url=f"http://127.0.0.1:{port}", model=MODEL, bind_host="127.0.0.1")


def specs(n: int) -> list[ProcSpec]:
    base = free_base_port(n)
    return [spec(f"replica-{i}", base + i) for i in range(n)]


def make_sup(tmp_path: Path, procs: list[ProcSpec], **kw) -> Supervisor:
    lines: list[tuple[str, str]] = []
    kw.setdefault("health_timeout_s", 10)
    kw.setdefault("grace_s", 3)
    sup = Supervisor(procs, log_dir=tmp_path / "logs", on_line=lambda n, l: lines.append((n, l)), **kw)
    sup.lines = lines  # type: ignore[attr-defined]
    return sup


def assert_all_gone(sup: Supervisor) -> None:
    for st in sup.states:
        if st.pid is not None:
            assert not alive(st.pid), f"{st.spec.name} (pid {st.pid}) is still running"
            assert not group_alive(st.pgid), f"process group {st.pgid} still has members"


# ---------------------------------------------------------------------------------------------- supervisor
def test_start_health_smoke_and_stop(fake_env, tmp_path):
    procs = specs(2)
    ports = [p.port for p in procs]
    sup = make_sup(tmp_path, procs)
    try:
        sup.start()
        assert all(st.health_s is not None and st.health_s > 0 for st in sup.states)
        r = httpx.post(f"http://127.0.0.1:{ports[1]}/v1/chat/completions",
                       json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                             "stream": True})
        assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    finally:
        sup.stop()
    assert_all_gone(sup)
    assert [st.exit_code for st in sup.states] == [0, 0]  # SIGTERM was enough
    names = {n for n, _ in sup.lines}
    assert names == {"replica-0", "replica-1"}
    assert any("Application startup complete." in l for _, l in sup.lines)
    assert (tmp_path / "logs" / "replica-0.log").read_text().count("Starting vLLM API server") >= 1


def test_a_signal_landing_inside_the_supervisors_wait_never_deadlocks(tmp_path):
    """SIGINT/SIGTERM run their handler on the main thread, which may then hold the stop event's lock inside
    Event.wait() (a Ctrl-C once hung a foreground `plan launch` that way, ~1 in 7 runs of a test that signalled right
    after "ready"). The handler must not take that lock: it only flags the signal, which the waits poll."""
    import threading

    sup = make_sup(tmp_path, specs(1))

    def handler_inside_the_wait():
        with sup._stop_evt._cond:  # what Event.wait() holds when it re-acquires after a timeout
            sup._on_signal(signal.SIGINT, None)

    t = threading.Thread(target=handler_inside_the_wait, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "the signal handler blocked on the stop event's lock"
    assert sup.signal_received == signal.SIGINT


def test_lines_are_printed_with_replica_prefix(fake_env, tmp_path):
    from rich.console import Console

    port = free_port()
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    sup = Supervisor([spec("replica-0", port)], log_dir=tmp_path / "logs", health_timeout_s=10, console=console)
    with sup:
        pass
    assert_all_gone(sup)
    assert "[replica-0] INFO:     Application startup complete." in console.export_text()


def test_sigint_to_supervisor_stops_children(fake_env, tmp_path):
    port = free_port()
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from serveplan.launcher.supervisor import ProcSpec, Supervisor
        p = ProcSpec(name="replica-0", argv=["vllm", "serve", "m", "--port", "{port}", "--host", "127.0.0.1"],
                     port={port}, health_url="http://127.0.0.1:{port}/health", base_url="http://127.0.0.1:{port}",
                     model="m", bind_host="127.0.0.1")
        sup = Supervisor([p], log_dir=Path(r"{tmp_path}") / "logs", health_timeout_s=10, grace_s=3,
                         on_line=lambda n, l: None)
        with sup.handling_signals():  # no gap between start() and wait() where Ctrl-C is not ours
            sup.start()
            print(json.dumps({{"pid": sup.states[0].pid, "pgid": sup.states[0].pgid}}), flush=True)
            sig = sup.wait()
            sup.stop()
        print("stopped", sup.states[0].exit_code, flush=True)
        sys.exit(128 + sig)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = json.loads(proc.stdout.readline())
        assert alive(child["pid"])
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=15)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT
    assert "stopped 0" in out
    assert not alive(child["pid"]) and not group_alive(child["pgid"])


def test_crash_before_healthy(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "crash")
    sup = make_sup(tmp_path, [spec("replica-0", free_port())])
    with pytest.raises(LaunchError) as e:
        sup.start()
    msg = str(e.value)
    assert "replica-0 exited with code 1 while starting" in msg
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in msg
    assert_all_gone(sup)


def test_crash_while_serving(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "crash")
    fake_env.setenv("FAKE_ENGINE_CRASH_AFTER_S", "0.5")
    sup = make_sup(tmp_path, specs(2))
    sup.start()
    with pytest.raises(LaunchError, match=r"exited with code 1 while serving: `RuntimeError: CUDA error"):
        sup.wait()
    assert_all_gone(sup)


def test_oom_is_named(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "oom")
    sup = make_sup(tmp_path, specs(2))
    with pytest.raises(LaunchError) as e:
        sup.start()
    msg = str(e.value)
    assert "ran out of GPU memory while starting" in msg
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB." in msg
    assert_all_gone(sup)


def test_port_in_use_is_refused_before_start(fake_env, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        sup = make_sup(tmp_path, [spec("replica-0", free_port()), spec("replica-1", port)])
        with pytest.raises(LaunchError, match=f"Port {port} is already in use"):
            sup.start()
    assert all(st.pid is None for st in sup.states)  # nothing was started


def test_port_in_use_found_in_the_log(fake_env, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        sup = make_sup(tmp_path, [spec("replica-0", port)], check_ports=False)
        with pytest.raises(LaunchError) as e:
            sup.start()
    assert f"could not listen on port {port}, which is already in use" in str(e.value)
    assert "OSError: [Errno 98] Address already in use" in str(e.value)
    assert_all_gone(sup)


def test_slow_start_within_timeout(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_STARTUP_S", "1.0")
    sup = make_sup(tmp_path, [spec("replica-0", free_port())], health_timeout_s=6)
    with sup:
        assert sup.states[0].health_s >= 1.0
    assert_all_gone(sup)


def test_hang_times_out(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "hang")
    sup = make_sup(tmp_path, [spec("replica-0", free_port())], health_timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as e:
        sup.start()
    assert "replica-0 did not become healthy within 1.5 s" in str(e.value)
    assert "Waiting for 1 local, 0 remote core engine proc(s) to start." in str(e.value)
    assert time.monotonic() - t0 < 6
    assert_all_gone(sup)
    assert sup.states[0].exit_code == 0  # it took SIGTERM


def test_ignore_sigterm_escalates_to_sigkill(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "ignore_sigterm")
    sup = make_sup(tmp_path, [spec("replica-0", free_port())], grace_s=0.6)
    sup.start()
    t0 = time.monotonic()
    sup.stop()
    assert time.monotonic() - t0 >= 0.55
    assert sup.states[0].exit_code == -signal.SIGKILL
    assert_all_gone(sup)


def test_smoke_failure(fake_env, tmp_path):
    fake_env.setenv("FAKE_ENGINE_MODE", "fail_requests")
    sup = make_sup(tmp_path, [spec("replica-0", free_port())])
    with pytest.raises(LaunchError, match=r"healthy but a smoke completion .* got HTTP 500"):
        sup.start()
    assert_all_gone(sup)


def test_missing_executable(fake_env, tmp_path):
    p = spec("replica-0", free_port())
    p.argv[0] = "no-such-engine-xyz"
    sup = make_sup(tmp_path, [p])
    with pytest.raises(LaunchError, match="`no-such-engine-xyz` was not found on PATH"):
        sup.start()


# ---------------------------------------------------------------------------------------------- gpus
def test_visible_gpus_and_check(fake_env):
    plan = make_plan(tp=2, replicas=2)
    assert len(visible_gpus()) == 8
    assert check_gpus(plan) == []
    fake_env.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
    assert visible_gpus() == ["NVIDIA H100 80GB HBM3"] * 3
    with pytest.raises(LaunchError, match="needs 4 GPUs but only 3 are visible"):
        check_gpus(plan)
    assert check_gpus(plan, force=True)
    fake_env.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    fake_env.delenv("CUDA_VISIBLE_DEVICES")
    fake_env.setenv("SERVEPLAN_FAKE_GPUS", "NVIDIA A100-SXM4-80GB,NVIDIA A100-SXM4-80GB,NVIDIA A100-SXM4-80GB,"
                                           "NVIDIA A100-SXM4-80GB")
    with pytest.raises(LaunchError, match="made for H100-SXM5-80GB .* this machine has NVIDIA A100-SXM4-80GB"):
        check_gpus(plan)


def test_gpu_name_matching():
    gpu = make_plan().request.inventory.gpu
    assert gpu_matches(gpu, "NVIDIA H100 80GB HBM3")
    assert not gpu_matches(gpu, "NVIDIA H100 PCIe")
    assert not gpu_matches(gpu, "NVIDIA H200")
    a100 = gpu.model_copy(update={"name": "a100-80gb-sxm", "display_name": "A100-SXM4-80GB", "aliases": ("a100",)})
    assert gpu_matches(a100, "NVIDIA A100-SXM4-80GB")
    assert not gpu_matches(a100, "NVIDIA A100-SXM4-40GB")


# ---------------------------------------------------------------------------------------------- launch
@pytest.fixture
def plan_dir(fake_env, tmp_path):
    try:
        from serveplan.launcher.launch import _engines

        _engines()[1]("vllm")
    except ImportError as e:
        pytest.skip(f"engine adapters not importable yet ({e})")
    d = tmp_path / "plan"
    d.mkdir()

    def write(**cand):
        (d / "plan.yaml").write_text(make_plan(**cand).to_yaml())
        return d

    return write


def records_gone(rec) -> None:
    for r in rec.replicas:
        assert r.pid is not None
        assert not alive(r.pid) and not group_alive(r.pgid)


def test_dry_run_touches_nothing(plan_dir, capsys):
    from rich.console import Console

    from serveplan.launcher.launch import launch_plan

    d = plan_dir(tp=2, replicas=2)
    before = sorted(p.name for p in d.iterdir())
    console = Console(record=True, width=300, file=open(os.devnull, "w"))
    rec = launch_plan(d, dry_run=True, console=console)
    assert sorted(p.name for p in d.iterdir()) == before
    assert rec.status == "dry-run" and len(rec.replicas) == 2
    out = console.export_text()
    assert "vllm serve" in out and "CUDA_VISIBLE_DEVICES=" in out
    assert rec.replicas[0].port != rec.replicas[1].port
    assert set(rec.replicas[0].gpus).isdisjoint(rec.replicas[1].gpus)
    # an H100 plan at TP=2 assumes NVLink multicast, and says so before anything starts
    assert any("assumes NVLink multicast at TP=2" in n and "hardware.nvlink_multicast=false" in n for n in rec.notes)
    assert "note: the plan assumes NVLink multicast" in out


def test_quantized_winner_needs_checkpoint(plan_dir):
    """A winner whose checkpoint nobody published stops before starting anything and says how to make it;
    once quantize's output is where the plan serves it from, the launch serves that folder."""
    from serveplan.launcher.launch import launch_plan
    from serveplan.planner.spec import Checkpoint

    ck = Checkpoint(id="checkpoints/llama-3.1-8b-awq", source="needs_quantize", format="compressed-tensors",
                    weight_dtype="awq", base_id="meta-llama/Llama-3.1-8B-Instruct", quantize_method="awq")
    d = plan_dir(weight_dtype="awq", checkpoint=ck)
    with pytest.raises(LaunchError) as e:
        launch_plan(d, base_port=free_base_port(2))
    assert f"serveplan quantize --model meta-llama/Llama-3.1-8B-Instruct --method awq -o {d}/checkpoints" in str(e.value)
    assert f"plan launch {d} --model PATH" in str(e.value)
    assert not (d / "run.json").exists()
    (d / "checkpoints" / "llama-3.1-8b-awq").mkdir(parents=True)
    (d / "checkpoints" / "llama-3.1-8b-awq" / "config.json").write_text("{}")
    rec = launch_plan(d, dry_run=True, base_port=free_base_port(2))
    assert rec.replicas[0].argv[2] == str((d / "checkpoints" / "llama-3.1-8b-awq").resolve())
    assert "--quantization" not in rec.replicas[0].argv
    assert not any("NVLink multicast" in n for n in rec.notes)  # TP=1: nothing to say


def test_a_gptq_folder_vllm_cannot_read_its_layers_from_is_refused(plan_dir, tmp_path):
    """vLLM finds an AutoGPTQ checkpoint's quantized layers in modules_in_block_to_quantize or, without it, in the
    safetensors' dtypes: a folder with neither would run the planned GPTQ configuration unquantized. The launch says
    so before starting anything; either one makes the folder servable."""
    import json

    from serveplan.launcher.launch import launch_plan

    d = plan_dir(weight_dtype="gptq")
    folder = tmp_path / "llama-gptq"
    folder.mkdir()
    q = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
    (folder / "config.json").write_text(json.dumps({"quantization_config": q}))
    with pytest.raises(LaunchError, match="modules_in_block_to_quantize") as e:
        launch_plan(d, model=str(folder), dry_run=True, base_port=free_base_port(1))
    assert "serve them all unquantized" in str(e.value) and not (d / "run.json").exists()
    (folder / "model.safetensors").write_bytes(b"")  # the layers' dtypes are there
    assert launch_plan(d, model=str(folder), dry_run=True, base_port=free_base_port(1)).status == "dry-run"
    (folder / "model.safetensors").unlink()
    q["modules_in_block_to_quantize"] = [["self_attn.q_proj"], ["mlp.down_proj"]]  # as AutoGPTQ writes it
    (folder / "config.json").write_text(json.dumps({"quantization_config": q}))
    assert launch_plan(d, model=str(folder), dry_run=True, base_port=free_base_port(1)).status == "dry-run"


def test_detach_then_stop_run(plan_dir):
    from serveplan.launcher.launch import launch_plan, stop_run
    from serveplan.launcher.record import read_run

    d = plan_dir(tp=1, replicas=2)
    rec = launch_plan(d, detach=True, base_port=free_base_port(2), health_timeout_s=10, quiet=True)
    try:
        on_disk = read_run(d)
        assert on_disk.status == "detached" and len(on_disk.pgids) == 2
        assert all(r.health_s is not None for r in on_disk.replicas)
        for url in on_disk.endpoints:
            r = httpx.post(f"{url}/completions", json={"model": on_disk.served_model_name, "prompt": "hi",
                                                       "max_tokens": 3})
            assert r.status_code == 200
        assert all(alive(r.pid) for r in on_disk.replicas)
    finally:
        stopped = stop_run(d, grace_s=3)
    assert stopped.status == "stopped" and read_run(d).status == "stopped"
    records_gone(rec)
    assert not temp_leftovers(d)


def test_detached_launch_warms_up_before_it_is_ready(plan_dir):
    """--warmup: the plan's own traffic for that long once healthy, before the launch reports ready, in no figure;
    run.json says how many requests it took."""
    from conftest import served
    from serveplan.launcher.launch import launch_plan, stop_run
    from serveplan.launcher.record import read_run

    from rich.console import Console

    from serveplan.bench.warmup import warm_up

    d = plan_dir(tp=1, replicas=2)
    con = Console(file=open(os.devnull, "w"))
    rec = launch_plan(d, detach=True, base_port=free_base_port(2), health_timeout_s=10, quiet=True,
                      warm_up=lambda r: warm_up(r, d, 1.0, con))
    try:
        on_disk = read_run(d)
        note = next(n for n in on_disk.notes if n.startswith("warmed up with "))
        sent = int(note.split()[3])
        assert note == f"warmed up with {sent} requests of the plan's traffic in 1 s" and sent >= 1
        # the two smoke completions and the warm-up's requests, all finished before the launch returned
        assert sum(served(u.removesuffix("/v1")) for u in on_disk.endpoints) >= sent + 2
        assert on_disk.status == "detached"
    finally:
        stop_run(d, grace_s=3)
    records_gone(rec)


def test_moe_plan_on_vllm_suggests_a_warmup(plan_dir):
    from conftest import make_plan
    from serveplan.launcher.launch import _prepare
    from serveplan.testing import factories

    d = plan_dir(tp=1)
    plan = make_plan(tp=1)
    moe = plan.model_copy(update={"request": plan.request.model_copy(update={"model": factories.model("mixtral-8x7b")})})
    (d / "plan.yaml").write_text(moe.to_yaml())
    notes: list[str] = []
    _prepare(d, model=None, force=True, base_port=free_port(), dry_run=True, notes=notes)
    assert any("fused MoE kernel" in n and "plan launch --warmup 30" in n for n in notes)
    dense: list[str] = []
    (d / "plan.yaml").write_text(plan.to_yaml())
    _prepare(d, model=None, force=True, base_port=free_port(), dry_run=True, notes=dense)
    assert not any("fused MoE kernel" in n for n in dense)


def test_int8_moe_plan_on_vllm_says_its_experts_run_weight_only(plan_dir):
    """Session 27: vLLM 0.26.0 runs an INT8 checkpoint's experts as int8_w8a16 with an untuned Triton config; the
    launch says so and how to tune one. An FP8 MoE plan and a dense INT8 plan get no such note."""
    from conftest import make_plan
    from serveplan.launcher.launch import _prepare
    from serveplan.testing import factories

    d = plan_dir(tp=1)

    def notes_of(weight_dtype: str, model: str) -> list[str]:
        plan = make_plan(tp=1, weight_dtype=weight_dtype)
        req = plan.request.model_copy(update={"model": factories.model(model)})
        (d / "plan.yaml").write_text(plan.model_copy(update={"request": req}).to_yaml())
        notes: list[str] = []
        _prepare(d, model=None, force=True, base_port=free_port(), dry_run=True, notes=notes)
        return notes

    said = [n for n in notes_of("int8", "mixtral-8x7b") if "int8_w8a16" in n]
    assert len(said) == 1 and "benchmark_moe.py --tune --dtype int8_w8a16" in said[0]
    assert "VLLM_TUNED_CONFIG_FOLDER" in said[0]
    assert not any("int8_w8a16" in n for n in notes_of("fp8", "mixtral-8x7b") + notes_of("int8", "llama-3.1-8b"))


def test_launched_context_manager(plan_dir):
    from serveplan.launcher.launch import launched
    from serveplan.launcher.record import read_run

    d = plan_dir(tp=2)
    with launched(d, base_port=free_base_port(2), health_timeout_s=10, grace_s=3) as rec:
        assert read_run(d).status == "running"
        r = httpx.post(f"{rec.endpoint}/completions",
                       json={"model": rec.served_model_name, "prompt": "x", "max_tokens": 2})
        assert r.status_code == 200
    final = read_run(d)
    assert final.status == "stopped" and final.stopped_at
    assert final.replicas[0].exit_code == 0 and final.replicas[0].health_s > 0
    records_gone(final)
    assert not temp_leftovers(d)


def test_launch_failure_is_recorded(plan_dir, fake_env):
    from serveplan.launcher.launch import launch_plan
    from serveplan.launcher.record import read_run

    fake_env.setenv("FAKE_ENGINE_MODE", "oom")
    d = plan_dir()
    with pytest.raises(LaunchError, match="ran out of GPU memory"):
        launch_plan(d, base_port=free_base_port(2), health_timeout_s=10, quiet=True)
    rec = read_run(d)
    assert rec.status == "failed" and "CUDA out of memory" in rec.error
    records_gone(rec)
    assert not temp_leftovers(d)


def _signal_after_line(script: str, marker: str, sig: int, wait_s: float = 0.0, timeout_s: float = 15):
    """Run `script` in a Python subprocess; once a line of its output starts with `marker`, wait `wait_s` and send
    `sig`. Returns (the finished process, the output up to the marker, the rest)."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(marker):
                break
        assert proc.poll() is None, "".join(seen)
        time.sleep(wait_s)
        proc.send_signal(sig)
        try:
            out = proc.communicate(timeout=timeout_s)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("".join(seen) + "\n--- after the signal:\n" + proc.communicate()[0]) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, "".join(seen), out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_foreground_launch_stops_on_signal(plan_dir, sig):
    d = plan_dir(replicas=2)
    port = free_base_port(2)
    script = textwrap.dedent(f"""
        import sys
        from serveplan.launcher.launch import launch_plan
        rec = launch_plan(r"{d}", base_port={port}, health_timeout_s=10, grace_s=3, quiet=True)
        print("RESULT", rec.status, rec.stop_signal, flush=True)
        sys.exit(128 + {int(sig)} if rec.stop_signal == "{sig.name}" else 1)
    """)
    proc, seen, out = _signal_after_line(script, "Stop: Ctrl-C here", sig)
    assert proc.returncode == 128 + sig, seen + out
    assert f"RESULT stopped {sig.name}" in out
    from serveplan.launcher.record import read_run

    rec = read_run(d)
    assert rec.status == "stopped" and rec.stop_signal == sig.name
    records_gone(rec)
    assert not temp_leftovers(d)


def test_ctrl_c_during_the_warmup_stops_the_launch(plan_dir):
    """A signal while a foreground launch warms up stops it as one during supervision would: the engines are
    stopped, run.json says so."""
    d = plan_dir(replicas=2)
    port = free_base_port(2)
    script = textwrap.dedent(f"""
        from rich.console import Console
        from serveplan.bench.warmup import warm_up
        from serveplan.launcher.launch import launch_plan
        con = Console(highlight=False)
        rec = launch_plan(r"{d}", base_port={port}, health_timeout_s=10, grace_s=3, quiet=True,
                          warm_up=lambda r: warm_up(r, r"{d}", 120, con))
        print("RESULT", rec.status, rec.stop_signal, rec.error, flush=True)
    """)
    # a second inside the warm-up's load (it is 120 s long)
    _, seen, out = _signal_after_line(script, "warming up: 120 s", signal.SIGINT, wait_s=1.0, timeout_s=30)
    assert "RESULT stopped SIGINT interrupted while warming up" in out, seen + out
    from serveplan.launcher.record import read_run

    rec = read_run(d)
    assert rec.status == "stopped" and rec.error == "interrupted while warming up"
    records_gone(rec)
    assert not temp_leftovers(d)


def test_second_launch_of_a_running_plan_is_refused(plan_dir):
    """A second `plan launch --detach` would orphan the first engines (run.json would name only the new ones):
    it is refused, and `plan stop` still stops the first."""
    from serveplan.launcher.launch import launch_plan, stop_run
    from serveplan.launcher.record import read_run

    d = plan_dir(tp=1, replicas=1)
    rec = launch_plan(d, detach=True, base_port=free_base_port(2), health_timeout_s=10, quiet=True)
    try:
        with pytest.raises(LaunchError, match="already running"):
            launch_plan(d, detach=True, base_port=free_base_port(2), health_timeout_s=10, quiet=True)
        assert read_run(d).replicas[0].pid == rec.replicas[0].pid
        # Re-planning into the folder would replace the run.json `plan stop` needs: refused too.
        from serveplan.cli import main as cli_main

        assert cli_main(["--model", "llama-8b", "--gpus", "1xH100", "-o", str(d), "search.n_trials=5"]) == 2
        assert read_run(d).replicas[0].pid == rec.replicas[0].pid
    finally:
        stop_run(d, grace_s=3)
    records_gone(rec)


def test_a_worker_crash_fails_the_launch_at_once_with_its_cause(fake_env, tmp_path):
    """vLLM 0.26.0 at TP=2 without NVLink multicast (session 25): a worker fails in the memory profile, the API
    server stays up and /health never answers. The launch names the worker's exception and the fix, instead of
    waiting out its health timeout and quoting the last line (a C++ frame)."""
    from serveplan.render.engines.vllm import VLLMAdapter

    fake_env.setenv("FAKE_ENGINE_MODE", "worker_crash")
    adapter = VLLMAdapter()
    proc = spec("replica-0", free_port())
    proc.crash_patterns, proc.crash_hints = adapter.crash_patterns, adapter.crash_hints
    sup = make_sup(tmp_path, [proc], health_timeout_s=600)
    with pytest.raises(LaunchError) as e:
        sup.start()
    msg = str(e.value)
    assert "replica-0 crashed while starting (still running: stopped): `RuntimeError: cutlass_gemm_caller" in msg
    assert "did not become healthy" not in msg
    assert "hardware.nvlink_multicast=false" in msg
    assert_all_gone(sup)


def test_an_oom_after_a_worker_exception_is_named_as_oom(fake_env, tmp_path):
    """A worker logs "hit an exception" before its traceback ends in the out-of-memory line: still an OOM."""
    fake_env.setenv("FAKE_ENGINE_MODE", "oom")  # "EngineCore failed to start." comes before the OOM line
    from serveplan.render.engines.vllm import VLLMAdapter

    proc = spec("replica-0", free_port())
    proc.crash_patterns = VLLMAdapter.crash_patterns
    sup = make_sup(tmp_path, [proc])
    with pytest.raises(LaunchError, match="ran out of GPU memory while starting"):
        sup.start()
    assert_all_gone(sup)


@pytest.mark.parametrize("log,cause,hint", [
    # session 25: TP2 INT8 on two H200s without NVLink multicast; the API server stayed up
    ("session25/V70T2B/replica-0.log.gz", "RuntimeError: Worker failed with error 'cutlass_gemm_caller", True),
    # session 21: an AWQ 70B served in float16, which vLLM's kernel refused in the memory profile
    ("session21/V70A-float16/replica-0.log.gz", "RuntimeError: For FP16/BF16 input, output must have the same dtype",
     False),
])
def test_real_vllm_crash_logs_fail_the_launch_with_their_cause(tmp_path, log, cause, hint):
    """Committed vLLM 0.26.0 logs of launches that failed, written by a process that then stays up as vLLM's API
    server did: the supervisor names the cause well before any health timeout."""
    from serveplan.render.engines.vllm import VLLMAdapter

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "results" / log
    writer = ("import gzip, sys, time; sys.stdout.write(gzip.open(sys.argv[1], 'rt').read()); sys.stdout.flush(); "
              "time.sleep(600)")
    port = free_port()
    a = VLLMAdapter()
    proc = ProcSpec(name="replica-0", argv=[sys.executable, "-c", writer, str(path)], port=port,
                    health_url=f"http://127.0.0.1:{port}/health", oom_patterns=a.oom_patterns,
                    crash_patterns=a.crash_patterns, crash_hints=a.crash_hints, bind_host="127.0.0.1")
    sup = make_sup(tmp_path, [proc], health_timeout_s=600)
    with pytest.raises(LaunchError) as e:
        sup.start()
    msg = str(e.value)
    assert "replica-0 crashed while starting" in msg and cause in msg
    assert ("hardware.nvlink_multicast=false" in msg) is hint
    assert_all_gone(sup)
