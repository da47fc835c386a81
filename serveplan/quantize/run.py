"""`serveplan quantize`: make a quantized checkpoint that vLLM loads, and measure what it costs.

    serveplan quantize --model meta-llama/Llama-3.1-8B-Instruct --method gptq -o ./ckpt \
        [--calibration FILE] [--samples 256] [--seq-len 512] [--eval FILE] [--gpu A100]

Methods (llm-compressor `oneshot`, written as compressed-tensors, which vLLM detects from config.json):
  fp8   QuantizationModifier(scheme="FP8_DYNAMIC"): FP8 e4m3 weights per channel, activations per token at run
        time; no calibration data.                                               planner weight dtype: fp8
  w8a8  SmoothQuantModifier(0.8) + GPTQModifier(scheme="W8A8"): INT8 weights per channel, INT8 activations
        per token (alias: int8).                                                 planner weight dtype: int8
  gptq  GPTQModifier(scheme="W4A16"): 4-bit symmetric weights, group 128.        planner weight dtype: gptq
  awq   AWQModifier + QuantizationModifier(scheme="W4A16_ASYM"): 4-bit asymmetric weights, group 128, after
        AWQ's activation-aware scaling.                                          planner weight dtype: awq
lm_head (and the embeddings, norms) stay in bf16, as the planner's memory model assumes.

The output is written into a temporary folder beside OUT and renamed into place only when everything
succeeded, so OUT is either complete or absent. It holds the checkpoint, the tokenizer and
`quantize-report.json`: checkpoint sizes on disk vs the planner's predicted weight bytes
(`memory.weight_bytes_per_gpu` at TP1), perplexity of the original and the quantized model on a held-out text
(built-in `serveplan/data/heldout.txt` or --eval), optional lm-eval accuracy, library versions, the command.

Only the standard library and serveplan's planner are imported at import time; torch, transformers and
llm-compressor when a checkpoint is made.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from serveplan.errors import ConfigError, ServeplanError
from serveplan.quantize.perplexity import BUILTIN_CALIBRATION, BUILTIN_EVAL, read_text

MISSING = "quantize needs llm-compressor: pip install 'serveplan[quantize]'"
REPORT = "quantize-report.json"
GB = 1e9
HOST_MEMORY_FACTOR = 1.2   # bf16 weights + calibration activations, Hessians, Python overhead
DISK_MARGIN = 1.10         # checkpoint + config/tokenizer files + filesystem slack
DISK_EXTRA = 50e6


class QuantizeError(ServeplanError):
    """A quantization cannot start or did not finish; nothing was written to OUT."""


@dataclass(frozen=True)
class Method:
    name: str
    planner_dtype: str        # conf/quantization.yaml key the planner uses for this checkpoint
    scheme: str               # compressed-tensors preset scheme
    calibrated: bool          # needs calibration data
    algorithm: str


METHODS: dict[str, Method] = {
    "awq": Method("awq", "awq", "W4A16_ASYM", True, "AWQ scaling + 4-bit asymmetric weights, group 128"),
    "gptq": Method("gptq", "gptq", "W4A16", True, "GPTQ 4-bit symmetric weights, group 128"),
    "fp8": Method("fp8", "fp8", "FP8_DYNAMIC", False,
                  "FP8 e4m3 weights per channel, dynamic per-token FP8 activations"),
    "w8a8": Method("w8a8", "int8", "W8A8", True,
                   "SmoothQuant + GPTQ INT8 weights per channel, dynamic per-token INT8 activations"),
}
ALIASES = {"int8": "w8a8"}  # the planner's weight dtype name (plan launch suggests `--method int8`)


def resolve_method(name: str) -> Method:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in METHODS:
        raise ConfigError(f"Unknown quantization method '{name}'; valid: {', '.join(METHODS)} "
                          f"(int8 is an alias of w8a8).")
    return METHODS[key]


# ---------------------------------------------------------------------------------------------- checks
def check_gpu(method: Method, gpu: Any) -> list[str]:
    """Whether the serving GPU (a planner GPUSpec) runs the method's kernels; notes, or QuantizeError."""
    notes = []
    if gpu.compute_capability < 8.0 and method.name in ("awq", "gptq", "fp8"):
        raise QuantizeError(f"{method.name} checkpoints run on vLLM's Marlin/FP8 kernels, which need compute "
                            f"capability 8.0 or newer; the {gpu.display_name} has {gpu.compute_capability:g}.")
    if method.name == "fp8" and not gpu.has_fp8_tensor_cores:
        notes.append(f"the {gpu.display_name} has no FP8 tensor cores: vLLM runs this checkpoint weight-only "
                     f"(FP8 Marlin, W8A16), so it saves the memory but not the FP8 compute")
    if method.name == "w8a8" and not gpu.has_int8_tensor_cores:
        raise QuantizeError(f"w8a8 needs INT8 tensor cores, which the {gpu.display_name} lacks; use fp8, gptq "
                            f"or awq for it.")
    return notes


def gpu_spec(name: str) -> Any:
    """The planner's GPUSpec for a catalog name or alias (A100, h100-sxm, 2xL40S)."""
    from serveplan.planner import catalog

    option, _, _ = catalog.parse_gpus(name)
    return catalog.gpu_spec(option)


def mem_available_bytes(meminfo: str | Path = "/proc/meminfo") -> float | None:
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def predicted_bytes(spec: Any, planner_dtype: str) -> dict[str, float]:
    """The planner's weight bytes at TP1/PP1: all weights, and the linear layers alone."""
    from serveplan.planner.catalog import quant_method
    from serveplan.planner.memory import linear_params_per_gpu_per_layer, weight_bytes_per_gpu

    total = weight_bytes_per_gpu(spec, 1, 1, planner_dtype)
    linear = spec.num_layers * linear_params_per_gpu_per_layer(spec, 1) * quant_method(planner_dtype).bytes_per_weight
    return {"total": total, "linear": linear}


def preflight(spec: Any, method: Method, out: Path, *, mem_available: float | None = None,
              disk_free: float | None = None) -> dict[str, float | None]:
    """Refuse before loading anything when the host cannot hold the bf16 model or the disk the output."""
    bf16 = predicted_bytes(spec, "bf16")["total"]
    need_mem = bf16 * HOST_MEMORY_FACTOR
    avail = mem_available_bytes() if mem_available is None else mem_available
    if avail is not None and need_mem > avail:
        raise QuantizeError(f"{spec.name} needs about {need_mem / GB:.1f} GB of host memory to quantize (its bf16 "
                            f"weights are {bf16 / GB:.1f} GB), but only {avail / GB:.1f} GB is available; use a "
                            f"machine with more memory.")
    need_disk = predicted_bytes(spec, method.planner_dtype)["total"] * DISK_MARGIN + DISK_EXTRA
    if disk_free is None:
        parent = out.resolve().parent
        while not parent.exists():
            parent = parent.parent
        disk_free = shutil.disk_usage(parent).free
    if need_disk > disk_free:
        raise QuantizeError(f"the {method.name} checkpoint of {spec.name} needs about {need_disk / GB:.2f} GB on "
                            f"disk, but only {disk_free / GB:.2f} GB is free beside {out}; free space or choose "
                            f"another -o.")
    return {"host_memory_needed_gb": need_mem / GB, "host_memory_available_gb": None if avail is None else avail / GB,
            "disk_needed_gb": need_disk / GB, "disk_free_gb": disk_free / GB}


# ---------------------------------------------------------------------------------------------- sizes on disk
def safetensors_sizes(folder: Path) -> dict[str, int]:
    """Bytes of tensor data in a folder's *.safetensors (from their headers), split into linear layers
    (projections with their scales/zero points) and the rest (embeddings, LM head, norms)."""
    out = {"total": 0, "linear": 0, "other": 0, "files": 0}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        out["files"] += 1
        for name, t in header.items():
            if name == "__metadata__":
                continue
            size = t["data_offsets"][1] - t["data_offsets"][0]
            other = any(k in name for k in ("embed_tokens", "lm_head", "norm", "wte", "wpe"))
            out["other" if other else "linear"] += size
            out["total"] += size
    return out


def _first_sentence(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text.split(". ")[0].rstrip(".")[:limit]


def _rel(measured: float, predicted: float) -> float | None:
    return (measured - predicted) / predicted if predicted else None


# ---------------------------------------------------------------------------------------------- model source
def resolve_model(model: str) -> tuple[str, Path | None, Any]:
    """(what to load: a local folder or a HF id, the local folder if any, planner ModelSpec)."""
    from serveplan.planner import catalog

    local = Path(model).expanduser()
    if local.is_dir():
        return str(local.resolve()), local.resolve(), catalog.model_from_hf_config(local)
    if local.suffix == ".json" or model.startswith((".", "/", "~")):
        raise ConfigError(f"--model '{model}' is not a model folder (one holding config.json and the weights).")
    hf_id = model
    try:
        option = catalog.resolve("model", model, "model")
        hf_id = catalog.catalog_doc("model", option).get("hf_id") or model
    except ConfigError:
        pass
    try:
        from huggingface_hub import hf_hub_download

        cfg = hf_hub_download(hf_id, "config.json")
    except Exception as e:  # noqa: BLE001 - network, auth, unknown repo: one sentence
        raise QuantizeError(f"Cannot read config.json of '{hf_id}' from the Hugging Face Hub "
                            f"({type(e).__name__}: {_first_sentence(e)}); give a local "
                            f"model folder or check the name and your HF_TOKEN.") from None
    return hf_id, None, catalog.model_from_hf_config(cfg)


def _download(hf_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hf_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model",
                                                             "*.txt", "*.py"]))
    except Exception as e:  # noqa: BLE001
        raise QuantizeError(f"Cannot download '{hf_id}' ({type(e).__name__}); check the name, your HF_TOKEN "
                            f"and the network.") from None


# ---------------------------------------------------------------------------------------------- llm-compressor
def _import_llmcompressor() -> Any:
    # llm-compressor logs (loguru) to stdout, from import time on; send that to stderr so that stdout holds only
    # our output (--json). Its LLM_COMPRESSOR_LOG_* environment variables still apply.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import llmcompressor  # noqa: F401
            from llmcompressor import oneshot  # noqa: F401
        except ImportError:
            raise QuantizeError(MISSING) from None
        if hasattr(llmcompressor, "configure_logger") and hasattr(llmcompressor, "LoggerConfig"):
            llmcompressor.configure_logger(llmcompressor.LoggerConfig())
    return llmcompressor


def build_recipe(method: Method) -> list:
    """The llm-compressor modifiers for a method (API of llm-compressor 0.14)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if method.name == "fp8":
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])]
    if method.name == "gptq":
        return [GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])]
    if method.name == "w8a8":
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]
    if method.name == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both"),
                QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"])]
    raise ConfigError(f"Unknown quantization method '{method.name}'.")


@contextlib.contextmanager
def _cpu_safe_pinning() -> Iterator[None]:
    """llm-compressor 0.14's AWQ pins cached activations (IntermediatesCache.pin_memory) unconditionally, which
    raises 'Cannot access accelerator device when none is available' on a CPU-only machine. Pinning only speeds
    host-to-device copies, so without an accelerator it is made a no-op for the duration of the run."""
    import torch

    try:
        from llmcompressor.pipelines.cache import IntermediatesCache
    except ImportError:
        yield
        return
    has_acc = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    if has_acc or not hasattr(IntermediatesCache, "pin_memory"):
        yield
        return
    original = IntermediatesCache.__dict__["pin_memory"]
    IntermediatesCache.pin_memory = lambda self, *a, **k: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def calibration_dataset(tokenizer: Any, text: str, samples: int, seq_len: int) -> Any:
    """A datasets.Dataset of up to `samples` windows of `seq_len` tokens cut from the text."""
    from datasets import Dataset

    from serveplan.quantize.perplexity import token_ids, windows

    chunks = windows(token_ids(tokenizer, text), seq_len)[:samples]
    if not chunks:
        raise QuantizeError("The calibration text has fewer than 2 tokens; give --calibration a text file.")
    return Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]})


def _load(path: str | Path, for_eval: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"dtype": "auto"}
    if for_eval and torch.cuda.is_available():
        kw["device_map"] = "auto"
    return AutoModelForCausalLM.from_pretrained(str(path), **kw)


def _free(model: Any) -> None:
    import gc

    import torch

    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("serveplan", "llmcompressor", "compressed-tensors", "transformers", "torch", "lm_eval"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _lm_eval(path: str, tasks: list[str], fewshot: int, limit: int | None) -> dict:
    """Few-shot accuracy with lm-evaluation-harness (HF backend), or a note why it was skipped."""
    try:
        import lm_eval
    except ImportError:
        return {"skipped": "lm-eval is not installed (pip install lm-eval)"}
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={path},dtype=auto", tasks=tasks,
                                  num_fewshot=fewshot, limit=limit)
    out = {}
    for task, metrics in (res or {}).get("results", {}).items():
        out[task] = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k}
    return out


# ---------------------------------------------------------------------------------------------- the run
def _new_tmpdir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the final folder gets the usual permissions
    return tmp


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
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


def quantize(model: str, method_name: str, out: Path, *, calibration: str | None = None, samples: int = 256,
             seq_len: int = 512, eval_file: str | None = None, gpu: str | None = None, skip_eval: bool = False,
             lm_eval_tasks: list[str] | None = None, lm_eval_fewshot: int = 5, lm_eval_limit: int | None = None,
             overwrite: bool = False, command: str = "", log: Any = None) -> dict:
    """Quantize, save into a temp dir beside OUT, measure, write the report, rename into place. Returns the
    report."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    method = resolve_method(method_name)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise QuantizeError(f"{out} already exists; pass --overwrite or choose another -o.")
    if samples < 1 or seq_len < 2:
        raise ConfigError("--samples must be at least 1 and --seq-len at least 2.")
    for label, f in (("--calibration", calibration), ("--eval", eval_file)):
        if f and not Path(f).is_file():
            raise ConfigError(f"{label} file '{f}' does not exist.")
    notes: list[str] = []
    gpu_doc = None
    if gpu:
        g = gpu_spec(gpu)
        notes += check_gpu(method, g)
        gpu_doc = g.display_name
    _import_llmcompressor()
    source, local, spec = resolve_model(model)
    checks = preflight(spec, method, out)

    import torch
    from llmcompressor import oneshot
    from transformers import AutoTokenizer

    from serveplan.quantize.perplexity import perplexity

    t0 = time.perf_counter()
    times: dict[str, float] = {}
    if local is None:
        say(f"downloading {source} ...")
        local = _download(source)
        times["download_s"] = time.perf_counter() - t0
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local))
    except Exception as e:  # noqa: BLE001
        raise QuantizeError(f"Cannot load the tokenizer of {source} ({type(e).__name__}); the model folder "
                            f"needs tokenizer files.") from None
    eval_text = read_text(eval_file or BUILTIN_EVAL)
    ppl: dict[str, Any] = {"eval_source": eval_file or "built-in:serveplan/data/heldout.txt"}
    torch.manual_seed(0)
    if not skip_eval:
        t = time.perf_counter()
        m = _load(local, for_eval=True)
        ppl["original"] = perplexity(m, tokenizer, eval_text, seq_len)
        _free(m)
        times["eval_original_s"] = time.perf_counter() - t

    kw, calib_doc = _calibration(method, tokenizer, calibration, samples, seq_len, notes)

    tmp = _new_tmpdir(out)
    try:
        t = time.perf_counter()
        model_obj = _load(local, for_eval=False)
        try:
            with _cpu_safe_pinning():
                oneshot(model=model_obj, recipe=build_recipe(method), **kw)
        except ServeplanError:
            raise
        except Exception as e:  # noqa: BLE001 - a library failure: one sentence (SERVEPLAN_DEBUG=1: traceback)
            if os.environ.get("SERVEPLAN_DEBUG"):
                raise
            raise QuantizeError(f"llm-compressor failed to quantize {source} with {method.name}: "
                                f"{type(e).__name__}: {_first_sentence(e)} (SERVEPLAN_DEBUG=1 shows the "
                                f"traceback).") from None
        times["quantize_s"] = time.perf_counter() - t
        _save(model_obj, tokenizer, tmp)
        _free(model_obj)

        qsizes = safetensors_sizes(tmp)
        if not qsizes["files"]:
            raise QuantizeError(f"llm-compressor wrote no .safetensors into {tmp}.")
        qcfg = json.loads((tmp / "config.json").read_text()).get("quantization_config") or {}
        if not skip_eval:
            t = time.perf_counter()
            q = _load(tmp, for_eval=True)
            ppl["quantized"] = perplexity(q, tokenizer, eval_text, seq_len)
            _free(q)
            times["eval_quantized_s"] = time.perf_counter() - t
            o, qq = ppl["original"]["perplexity"], ppl["quantized"]["perplexity"]
            ppl["delta"] = qq - o
            ppl["delta_pct"] = 100 * (qq - o) / o
        lm: dict[str, Any] | None = None
        if lm_eval_tasks:
            lm = {"tasks": lm_eval_tasks, "num_fewshot": lm_eval_fewshot, "limit": lm_eval_limit}
            first = _lm_eval(str(local), lm_eval_tasks, lm_eval_fewshot, lm_eval_limit)
            if "skipped" in first:
                lm.update(first)
                notes.append(f"lm-eval skipped: {first['skipped']}")
            else:
                lm["original"] = first
                lm["quantized"] = _lm_eval(str(tmp), lm_eval_tasks, lm_eval_fewshot, lm_eval_limit)

        report = _report(method, source, local, spec, out, tmp, qsizes, qcfg, calib_doc, ppl, skip_eval, lm,
                         gpu_doc, notes, checks, times, command)
        (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n")
        _commit(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _calibration(method: Method, tokenizer: Any, calibration: str | None, samples: int, seq_len: int,
                 notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(oneshot's calibration arguments, the report's calibration section) for the method."""
    calib_doc: dict[str, Any] = {"needed": method.calibrated}
    if not method.calibrated:
        if calibration:
            notes.append(f"{method.name} needs no calibration data; --calibration was ignored")
        return {}, calib_doc
    text = read_text(calibration or BUILTIN_CALIBRATION)
    ds = calibration_dataset(tokenizer, text, samples, seq_len)
    n_tok = sum(len(x) for x in ds["input_ids"])
    calib_doc.update(source=calibration or "built-in:serveplan/data/calibration.txt", samples=len(ds),
                     samples_requested=samples, seq_len=seq_len, tokens=n_tok)
    if len(ds) < samples:
        notes.append(f"calibrated on {len(ds)} sample(s) ({n_tok} tokens), fewer than the {samples} asked for: "
                     f"the text is short; for a real model give --calibration a file with "
                     f"{samples} x {seq_len} tokens of in-domain text")
    return dict(dataset=ds, num_calibration_samples=len(ds), max_seq_length=seq_len,
                shuffle_calibration_samples=False), calib_doc


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _report(method: Method, source: str, local: Path, spec: Any, out: Path, tmp: Path, qsizes: dict,
            qcfg: dict, calib_doc: dict, ppl: dict, skip_eval: bool, lm: dict | None, gpu_doc: str | None,
            notes: list[str], checks: Any, times: dict[str, float], command: str) -> dict:
    """The quantize report: sizes measured vs the planner's prediction, perplexity, lm-eval, provenance."""
    from serveplan.planner.catalog import model_from_hf_config, quant_method

    qspec = model_from_hf_config(tmp / "config.json")
    pred_q = predicted_bytes(qspec, method.planner_dtype)
    pred_bf16 = predicted_bytes(qspec, "bf16")
    osizes = safetensors_sizes(local)
    report = {
        "method": method.name, "scheme": method.scheme, "algorithm": method.algorithm,
        "planner_weight_dtype": method.planner_dtype,
        "model": {"source": source, "path": str(local), "architecture": spec.architecture,
                  "num_layers": spec.num_layers, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size},
        "output": str(out.resolve()),
        "quantization_config": {k: qcfg.get(k) for k in ("quant_method", "format", "ignore", "version")},
        "calibration": calib_doc,
        "sizes": {
            "original_bytes": osizes["total"] if osizes["files"] else None,
            "original_linear_bytes": osizes["linear"] if osizes["files"] else None,
            "quantized_bytes": qsizes["total"], "quantized_linear_bytes": qsizes["linear"],
            "quantized_other_bytes": qsizes["other"],
            "ratio": qsizes["total"] / osizes["total"] if osizes["total"] else None,
        },
        "predicted": {
            "source": "serveplan.planner.memory.weight_bytes_per_gpu(spec, tp=1, pp=1, dtype)",
            "bf16_bytes": pred_bf16["total"], "bf16_linear_bytes": pred_bf16["linear"],
            "quantized_bytes": pred_q["total"], "quantized_linear_bytes": pred_q["linear"],
            "bytes_per_weight": quant_method(method.planner_dtype).bytes_per_weight,
            "rel_diff_quantized": _rel(qsizes["total"], pred_q["total"]),
            "rel_diff_quantized_linear": _rel(qsizes["linear"], pred_q["linear"]),
            "rel_diff_original": _rel(osizes["total"], pred_bf16["total"]) if osizes["files"] else None,
        },
        "perplexity": ppl if not skip_eval else {"skipped": "--skip-eval"},
        "lm_eval": lm if lm is not None else {"skipped": "not requested (--lm-eval TASKS)"},
        "quality_table": {
            "conf": "serveplan/conf/quantization.yaml", "method": method.planner_dtype,
            "table_quality_cost_pct": quant_method(method.planner_dtype).quality_cost_pct,
            "measured_ppl_increase_pct": ppl.get("delta_pct"),
        },
        "gpu": gpu_doc, "notes": notes, "checks": checks,
        "versions": _versions(), "device": _device(),
        "elapsed_s": {k: round(v, 3) for k, v in times.items()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    return report


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    model.save_pretrained(str(folder), save_compressed=True)
    tokenizer.save_pretrained(str(folder))


# ---------------------------------------------------------------------------------------------- output
def _gb(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / GB:.2f} GB" if x >= 1e8 else f"{x / 1e6:.3f} MB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def render(report: dict, console: Any) -> None:
    from rich.table import Table

    s, p = report["sizes"], report["predicted"]
    t = Table(title=f"{report['model']['source']} -> {report['method']} ({report['scheme']})", title_justify="left")
    for col in ("", "on disk", "planner predicts", "difference"):
        t.add_column(col, justify="left" if not col else "right")
    t.add_row("original (bf16)", _gb(s["original_bytes"]), _gb(p["bf16_bytes"]), _pct(p["rel_diff_original"]))
    t.add_row(f"quantized ({report['planner_weight_dtype']})", _gb(s["quantized_bytes"]), _gb(p["quantized_bytes"]),
              _pct(p["rel_diff_quantized"]))
    t.add_row("  linear layers only", _gb(s["quantized_linear_bytes"]), _gb(p["quantized_linear_bytes"]),
              _pct(p["rel_diff_quantized_linear"]))
    if s.get("ratio"):
        t.add_row("size vs original", f"{s['ratio']:.3f}x", "", "")
    ppl = report["perplexity"]
    if "quantized" in ppl:
        t.add_row("perplexity original", f"{ppl['original']['perplexity']:.3f}", "", "")
        t.add_row("perplexity quantized", f"{ppl['quantized']['perplexity']:.3f}", "",
                  f"{ppl['delta_pct']:+.2f}%")
    console.print(t)
    q = report["quality_table"]
    if q["measured_ppl_increase_pct"] is not None:
        console.print(f"quality: perplexity {q['measured_ppl_increase_pct']:+.2f}% on {ppl['eval_source']} "
                      f"({ppl['quantized']['tokens']} tokens); conf/quantization.yaml assumes "
                      f"{q['table_quality_cost_pct']:+.1f}% for {q['method']}")
    lm = report["lm_eval"]
    if "skipped" not in lm:
        console.print(f"lm-eval: original {lm['original']}; quantized {lm['quantized']}")
    for n in report["notes"]:
        console.print(f"[yellow]note:[/] {n}")
    console.print(f"Wrote {report['output']} ({REPORT} inside). Serve it: plan launch PLAN_DIR --model "
                  f"{report['output']}")
