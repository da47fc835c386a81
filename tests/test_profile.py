"""launcher.profile: the measuring code on CPU tensors, the written profile, the atomic write, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serveplan.hwprofile import profile as P
from serveplan.hwprofile import provenance as PV
from serveplan.planner.profiles import find_profile, load_profile_file, parse_profile

SHIPPED = Path(P.__file__).resolve().parent.parent / "profiles" / "measured"


def _torch():
    return pytest.importorskip("torch", reason="torch not installed")


def _increasing(xs) -> bool:
    return all(a < b for a, b in zip(xs, xs[1:]))


# ------------------------------------------------------------------ pure helpers (no torch needed)
def test_module_imports_without_torch():
    code = ("import sys, serveplan.hwprofile.profile as p; "
            "bad = [m for m in ('torch', 'pydantic', 'rich', 'numpy') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_linear_shapes_split_by_tp():
    shapes = P.linear_shapes()
    assert len(shapes) == 3 * 4 * 4
    by = {(s["model"], s["layer"], s["tp"]): (s["n"], s["k"]) for s in shapes}
    assert by[("llama-8b", "qkv", 1)] == (6144, 4096)  # (32 + 2*8) * 128
    assert by[("llama-8b", "qkv", 8)] == (768, 4096)  # column-parallel: N split
    assert by[("llama-70b", "o", 8)] == (8192, 1024)  # row-parallel: K split
    assert by[("llama-70b", "gate_up", 2)] == (28672, 8192)  # fused 2 x 28672, halved
    assert by[("qwen-32b", "down", 4)] == (5120, 6912)
    assert by[("qwen-32b", "qkv", 1)] == (10240, 5120)


@pytest.mark.parametrize("name,expect", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"),
    ("NVIDIA H100 NVL", None), ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"), ("Quadro RTX 8000", None),
])
def test_catalog_name(name, expect):
    assert P.catalog_name(name) == expect


def test_write_profile_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "p.yaml"
    P.write_profile({"schema_version": 1, "x": [1, 2]}, target)
    assert yaml.safe_load(target.read_text()) == {"schema_version": 1, "x": [1, 2]}

    def boom(doc, f):
        f.write("schema_version: 1\npartial: [")
        raise OSError("disk full")

    monkeypatch.setattr(PV, "_dump", boom)
    with pytest.raises(OSError, match="disk full"):
        P.write_profile({"schema_version": 1, "x": [3]}, target)
    assert yaml.safe_load(target.read_text()) == {"schema_version": 1, "x": [1, 2]}  # old file untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["p.yaml"]  # no temp file left
    with pytest.raises(OSError):
        P.write_profile({"schema_version": 1}, tmp_path / "new.yaml")
    assert not (tmp_path / "new.yaml").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


def test_json_fallback_is_valid_yaml(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_yaml(name, *a, **kw):
        if name == "yaml":
            raise ImportError("no yaml")
        return real_import(name, *a, **kw)

    doc = {"schema_version": 1, "gpu": "h100-sxm", "kind": "measured", "memory_bandwidth_gbs": 2900.5,
           "gemm": {"bf16": {"tokens": [1, 2], "tflops": [0.5, 1e-05]}}}
    monkeypatch.setattr(builtins, "__import__", no_yaml)
    P.write_profile(doc, tmp_path / "j.yaml")
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert yaml.safe_load((tmp_path / "j.yaml").read_text()) == doc


def test_missing_torch_message(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(P.ProfileError, match=r"profile needs PyTorch with CUDA: pip install 'serveplan\[profile\]'"):
        P.run_profile(tmp_path / "x.yaml", gpu_name="h100-sxm")
    from serveplan.cli import main as cli_main

    assert cli_main(["profile", "--gpu", "h100-sxm", "-o", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()


# ------------------------------------------------------------------ measuring code on CPU tensors
def test_clock_measures_median():
    torch = _torch()
    clock = P._Clock(torch, "cpu")
    x = torch.randn(256, 256)
    res = clock.measure(lambda i: x @ x, rotations=2)
    assert res["s"] > 0 and res["reps"] >= 3 and res["n_inner"] % 2 == 0 and res["timing"] == "eager"


@pytest.mark.parametrize("dtype", P.DTYPES)
def test_gemm_dtypes_on_cpu(dtype):
    torch = _torch()
    ok, why = P.gemm_supported(torch, dtype, "cpu")
    if not ok:
        pytest.skip(f"{dtype} GEMM does not run on this CPU torch: {why}")
    clock = P._Clock(torch, "cpu")
    shapes = [{"model": "t", "layer": "qkv", "tp": 1, "n": 64, "k": 128},
              {"model": "t", "layer": "o", "tp": 1, "n": 128, "k": 64}]
    rows = P.measure_gemm(torch, "cpu", clock, shapes, (1, 4, 32), dtype)
    assert len(rows) == 6 and all(r["tflops"] > 0 for r in rows)
    curve = P.gemm_curve(rows, (1, 4, 32))
    assert curve["tokens"] == [1, 4, 32] and len(curve["tflops"]) == 3


def test_gemm_pads_small_m_where_the_op_refuses_it(monkeypatch):
    torch = _torch()
    real = torch._int_mm

    def picky(a, b):  # like the CUDA kernel: M must be > 16
        if a.shape[0] <= 16:
            raise RuntimeError("self.size(0) needs to be greater than 16")
        return real(a, b)

    monkeypatch.setattr(torch, "_int_mm", picky)
    clock = P._Clock(torch, "cpu")
    rows = P.measure_gemm(torch, "cpu", clock, [{"model": "t", "layer": "o", "tp": 1, "n": 64, "k": 64}],
                          (1, 8, 64), "int8")
    assert [(r["m"], r["m_run"]) for r in rows] == [(1, 32), (8, 32), (64, 64)]
    assert rows[0]["tflops"] < rows[1]["tflops"]  # same time, 8x the credited FLOPs


def test_attention_and_memory_on_cpu():
    torch = _torch()
    clock = P._Clock(torch, "cpu")
    pre = P.measure_prefill(torch, "cpu", clock, (64, 128), tokens_per_batch=128, backend=None)
    assert [r["seq_len"] for r in pre] == [64, 128] and [r["batch"] for r in pre] == [2, 1]
    assert all(r["tflops"] > 0 for r in pre)
    dec = P.measure_decode(torch, "cpu", clock, (1, 2), (64, 128), max_kv_bytes=2 ** 20, backend=None)
    # 2 x 128 tokens x 4 KiB = 1 MiB fits; every combo does
    assert {(r["batch"], r["context"]) for r in dec} == {(1, 64), (1, 128), (2, 64), (2, 128)}
    curve = P.decode_curve(dec)
    assert curve["kv_tokens"] == [64, 128, 256] and all(y > 0 for y in curve["bandwidth_gbs"])
    capped = P.measure_decode(torch, "cpu", clock, (1, 2), (64, 128), max_kv_bytes=300_000, backend=None)
    assert {r["kv_tokens"] for r in capped} == {64}
    bw = P.measure_copy_bandwidth(torch, "cpu", clock, 2 ** 20)
    assert bw["bytes"] == 2 * 2 ** 20 and bw["gbs"] > 0
    assert P.measure_launch_overhead(torch, "cpu", clock, 50)["us"] > 0


def test_decode_matches_reference_attention():
    torch = _torch()
    b, c, kvh, h = 2, 16, 8, 32
    q = torch.randn(b, h, 1, 128)
    k, v = torch.randn(b, kvh, c, 128), torch.randn(b, kvh, c, 128)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1))
    qg = q.view(b, kvh, 4, 128)
    p = torch.softmax(qg @ k.transpose(-1, -2) * 128 ** -0.5, dim=-1)
    out = (p @ v).reshape(b, h, 1, 128)  # the grouped bmm decode timed in measure_decode
    assert torch.allclose(out, ref, atol=1e-5)


def test_collectives_with_gloo():
    _torch()
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo not available")
    res = P.measure_collectives(2, (4096, 65536), backend="gloo", device_type="cpu", timeout_s=120)
    for op in ("allreduce", "allgather"):
        assert res[op]["2"]["bytes"] == [4096, 65536] and all(t > 0 for t in res[op]["2"]["time_us"])


def test_run_profile_quick_on_cpu(tmp_path, capsys):
    _torch()
    out = tmp_path / "prof" / "cpu-test.yaml"
    doc = P.run_profile(out, gpu_name="h100-sxm", quick=True, dtypes=("bf16", "int8"), device="cpu",
                        progress=True, command="pytest")
    on_disk = yaml.safe_load(out.read_text())
    assert on_disk == yaml.safe_load(yaml.safe_dump(PV._plain(doc)))
    assert on_disk["schema_version"] == 1 and on_disk["kind"] == "measured" and on_disk["gpu"] == "h100-sxm"
    prof = parse_profile(on_disk, str(out))
    assert set(prof.gemm) == {"bf16", "int8"}
    for curve in (*prof.gemm.values(), prof.prefill_attention, prof.decode_attention):
        assert _increasing(curve.x) and all(y > 0 for y in curve.y)
    assert on_disk["gemm"]["bf16"]["tokens"] == [1, 8, 64]  # as written, already increasing
    assert _increasing(on_disk["attention"]["decode"]["kv_tokens"])
    assert prof.memory_bandwidth_gbs > 0 and prof.launch_overhead_us > 0
    assert prof.gemm_tflops("bf16", 8) == (on_disk["gemm"]["bf16"]["tflops"][1], "measured")
    assert len(on_disk["gemm_shapes"]) == 4 and len(on_disk["gemm_shapes"][0]["bf16"]) == 3
    for key in ("date", "torch", "command", "gpu_name", "method"):
        assert key in on_disk["provenance"]
    assert on_disk["provenance"]["command"] == "pytest"
    assert [p.name for p in out.parent.iterdir()] == ["cpu-test.yaml"]


def test_run_profile_failure_leaves_nothing(tmp_path, monkeypatch):
    torch = _torch()

    def broken(*a, **kw):
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(P, "measure_prefill", broken)
    with pytest.raises(RuntimeError, match="kernel failed"):
        P.run_profile(tmp_path / "p.yaml", gpu_name="h100-sxm", quick=True, dtypes=("bf16",), device="cpu",
                      progress=False)
    assert list(tmp_path.iterdir()) == []
    if not torch.cuda.is_available():
        with pytest.raises(P.ProfileError, match="needs PyTorch with CUDA"):
            P.run_profile(tmp_path / "p.yaml", gpu_name="h100-sxm", quick=True)
    with pytest.raises(P.ProfileError, match="unknown GEMM dtype 'fp4'"):
        P.run_profile(tmp_path / "p.yaml", gpu_name="h100-sxm", dtypes=("fp4",), device="cpu")


@pytest.mark.gpu
def test_cli_quick(tmp_path, monkeypatch):
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / "q.yaml"
    from serveplan.cli import main as cli_main

    assert cli_main(["profile", "--quick", "--no-progress", "-o", str(out)]) == 0
    parse_profile(yaml.safe_load(out.read_text()), str(out))


# ------------------------------------------------------------------ the shipped measured profiles
@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_measured_profiles_load(path):
    prof = load_profile_file(path)
    assert prof.kind == "measured" and prof.gpu == path.stem
    assert find_profile(prof.gpu, (SHIPPED.parent,)).path == str(path)
    for dt in ("bf16", "int8"):
        assert dt in prof.gemm
    curves = [*prof.gemm.values(), prof.prefill_attention, prof.decode_attention]
    for curve in curves:
        assert _increasing(curve.x) and all(y > 0 for y in curve.y)
    peak = max(prof.gemm["bf16"].y)
    assert 300 < peak < 990  # dense bf16 on Hopper: under the 989 TFLOP/s datasheet peak
    assert 1500 < prof.memory_bandwidth_gbs < 5000
    assert 0 < prof.launch_overhead_us < 50
    assert prof.provenance["command"].startswith("python -m serveplan.hwprofile.profile")


# ------------------------------------------------------------------ traces (--trace torch / nsys)
def test_torch_trace_of_quick_cpu_profile(tmp_path):
    import json

    _torch()
    traces = tmp_path / "traces"
    doc = P.run_profile(tmp_path / "p.yaml", gpu_name="h100-sxm", quick=True, dtypes=("bf16",), device="cpu",
                        progress=False, command="pytest", trace="torch", trace_dir=traces)
    sections = ["decode-attention", "gemm-bf16", "launch-overhead", "memory-bandwidth", "prefill-attention"]
    assert sorted(p.name for p in traces.iterdir()) == sorted(f"{s}.{x}" for s in sections for x in ("json", "txt"))
    names = set()
    for s in sections:
        events = json.loads((traces / f"{s}.json").read_text())["traceEvents"]
        names |= {e.get("name") for e in events}
        assert "Name" in (traces / f"{s}.txt").read_text()  # the key_averages table
    for label in ("memory bandwidth (device-to-device copy)", "kernel launch overhead",
                  "GEMM bf16 llama-8b qkv tp8 M=1", "GEMM bf16 llama-8b down tp8 M=64",
                  "prefill attention seq=256", "decode attention batch=4 context=512"):
        assert label in names
    assert any(n and n.startswith("aten::mm") for n in names)  # the kernels themselves, under the labels
    assert doc["provenance"]["trace"]["kind"] == "torch"
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["provenance"]["trace"]["dir"] == str(traces)


def test_nvtx_trace_is_a_no_op_without_a_gpu(tmp_path):
    torch = _torch()
    from serveplan.hwprofile.trace import make_trace

    tr = make_trace("nsys", tmp_path, torch, cuda=False)
    assert not tr.enabled
    seen = []
    tick = tr.ticker(seen.append)
    with tr.section("gemm-bf16"):
        tick("a")
        tick("b")
    assert seen == ["a", "b"] and tr._depth == 0
    (tmp_path / "file").write_text("")
    with pytest.raises(P.ProfileError, match="cannot write traces into"):
        make_trace("torch", tmp_path / "file", torch, cuda=False)


def test_trace_kind_and_nsys_missing_are_one_sentence(tmp_path, monkeypatch, capsys):
    from serveplan.cli import main as cli_main

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no nsys here
    monkeypatch.delenv("SERVEPLAN_PROFILE_UNDER_NSYS", raising=False)
    out = tmp_path / "x.yaml"
    assert cli_main(["profile", "--quick", "-o", str(out), "--trace", "nsys", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "`nsys` on PATH" in err and "--trace torch DIR" in err
    assert cli_main(["profile", "--quick", "-o", str(out), "--trace", "perf", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown --trace kind 'perf'; known: torch, nsys (see profile --help)."
    assert not out.exists() and not (tmp_path / "t").exists()


def test_trace_nsys_reexecs_under_nsys(tmp_path, monkeypatch, capfd):
    import os

    from serveplan.cli import main as cli_main

    bindir, record = tmp_path / "bin", tmp_path / "nsys-argv"
    bindir.mkdir()
    fake = bindir / "nsys"  # records its argv, then runs the application part (from the interpreter on)
    fake.write_text("#!/bin/sh\n"
                    f"printf '%s\\n' \"$@\" >> '{record}'\n"
                    f"echo '=== end of call' >> '{record}'\n"
                    f"while [ \"$#\" -gt 0 ] && [ \"$1\" != '{sys.executable}' ]; do shift; done\n"
                    "exec \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("SERVEPLAN_PROFILE_UNDER_NSYS", raising=False)
    repo = str(Path(P.__file__).resolve().parents[2])  # the child imports this serveplan
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    traces, out = tmp_path / "traces", tmp_path / "p.yaml"
    # fp4 is refused by the child at once (exit 2), on a GPU or not: the profile itself never runs here
    argv = ["--quick", "--dtypes", "fp4", "-o", str(out), "--trace", "nsys", str(traces)]
    rc = cli_main(["profile", *argv])
    calls = record.read_text().split("=== end of call\n")[:-1]
    assert len(calls) == 1  # the child ran the profile under nsys, not nsys again
    assert calls[0].splitlines() == [
        "profile", "-o", str(traces / "profile"), "--trace=cuda,nvtx,osrt", "--cuda-graph-trace=node",
        "--force-overwrite", "true", sys.executable, "-m", "serveplan.cli.profile", *argv]
    err = capfd.readouterr().err
    assert "running under Nsight Systems: " in err and "Traceback" not in err
    assert rc == 2 and ("unknown GEMM dtype 'fp4'" in err or "needs PyTorch with CUDA" in err)
    assert traces.is_dir() and not out.exists()


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_readme_vllm_profiler_args_pass_the_flag_check(version):
    """The README's `plan launch --engine-args` for vLLM's own profiler: the JSON form passes the schema check
    at both versions; the dotted form vLLM also parses is unknown to it (the README says: --force)."""
    import shlex

    from serveplan.render.engines.base import load_schema, validate_flags

    schema = load_schema("vllm", version)
    arg = "--profiler-config '{\"profiler\": \"torch\", \"torch_profiler_dir\": \"/abs/vllm-traces\"}'"
    assert validate_flags(shlex.split(arg), schema) == []
    assert validate_flags(["--profiler-config.profiler=torch"], schema) != []
    readme = Path(P.__file__).resolve().parents[2] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the package (not a source checkout)")
    assert arg.replace('"', '\\"') in readme.read_text()
