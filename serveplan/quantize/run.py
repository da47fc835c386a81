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

The steps live in modules of their own: methods (what each method is, where it runs), inputs (model source,
host checks, loading), calibration, recipe (llm-compressor), output (the atomic folder), sizes and report (what
was measured); quantize() below runs them in order.
"""


from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from serveplan.errors import ConfigError
from serveplan.quantize.calibration import calibration_args
from serveplan.quantize.inputs import (download, free_model, load_model, load_tokenizer, preflight,
                                       resolve_model)
from serveplan.quantize.methods import QuantizeError, check_gpu, gpu_spec, resolve_method
from serveplan.quantize.output import commit, new_tmpdir, save_checkpoint
from serveplan.quantize.perplexity import BUILTIN_EVAL, read_text
from serveplan.quantize.recipe import apply_recipe, import_llmcompressor
from serveplan.quantize.report import REPORT, build_report, lm_eval_accuracy
from serveplan.quantize.sizes import safetensors_sizes


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
    import_llmcompressor()
    source, local, spec = resolve_model(model)
    checks = preflight(spec, method, out)

    import torch

    t0 = time.perf_counter()
    times: dict[str, float] = {}
    if local is None:
        say(f"downloading {source} ...")
        local = download(source)
        times["download_s"] = time.perf_counter() - t0
    tokenizer = load_tokenizer(local, source)
    eval_text = read_text(eval_file or BUILTIN_EVAL)
    ppl: dict[str, Any] = {"eval_source": eval_file or "built-in:serveplan/data/heldout.txt"}
    torch.manual_seed(0)
    if not skip_eval:
        ppl["original"] = _timed_perplexity(local, tokenizer, eval_text, seq_len, times, "eval_original_s")

    kw, calib_doc = calibration_args(method, tokenizer, calibration, samples, seq_len, notes)

    tmp = new_tmpdir(out)
    try:
        t = time.perf_counter()
        model_obj = load_model(local, for_eval=False)
        apply_recipe(model_obj, method, kw, source)
        times["quantize_s"] = time.perf_counter() - t
        save_checkpoint(model_obj, tokenizer, tmp)
        free_model(model_obj)

        qsizes = safetensors_sizes(tmp)
        if not qsizes["files"]:
            raise QuantizeError(f"llm-compressor wrote no .safetensors into {tmp}.")
        qcfg = json.loads((tmp / "config.json").read_text()).get("quantization_config") or {}
        if not skip_eval:
            ppl["quantized"] = _timed_perplexity(tmp, tokenizer, eval_text, seq_len, times, "eval_quantized_s")
            o, qq = ppl["original"]["perplexity"], ppl["quantized"]["perplexity"]
            ppl["delta"] = qq - o
            ppl["delta_pct"] = 100 * (qq - o) / o
        lm: dict[str, Any] | None = None
        if lm_eval_tasks:
            lm = {"tasks": lm_eval_tasks, "num_fewshot": lm_eval_fewshot, "limit": lm_eval_limit}
            first = lm_eval_accuracy(str(local), lm_eval_tasks, lm_eval_fewshot, lm_eval_limit)
            if "skipped" in first:
                lm.update(first)
                notes.append(f"lm-eval skipped: {first['skipped']}")
            else:
                lm["original"] = first
                lm["quantized"] = lm_eval_accuracy(str(tmp), lm_eval_tasks, lm_eval_fewshot, lm_eval_limit)

        report = build_report(method, source, local, spec, out, tmp, qsizes, qcfg, calib_doc, ppl, skip_eval, lm,
                              gpu_doc, notes, checks, times, command)
        (tmp / REPORT).write_text(json.dumps(report, indent=1) + "\n")
        commit(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _timed_perplexity(path: Path, tokenizer, text: str, seq_len: int, times: dict[str, float],  # noqa: ANN001
                      key: str) -> dict[str, Any]:
    """Perplexity of the checkpoint at `path` on `text`, its wall time (loading included) under times[key]."""
    from serveplan.quantize.perplexity import perplexity

    t = time.perf_counter()
    m = load_model(path, for_eval=True)
    result = perplexity(m, tokenizer, text, seq_len)
    free_model(m)
    times[key] = time.perf_counter() - t
    return result
