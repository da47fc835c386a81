"""quantize-report.json: the checkpoint's sizes on disk vs the planner's prediction, perplexity and lm-eval
accuracy of the original and the quantized model, library versions, the command; and its table on screen."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from serveplan.quantize.methods import Method
from serveplan.quantize.sizes import GB, predicted_bytes, safetensors_sizes

REPORT = "quantize-report.json"


def lm_eval_accuracy(path: str, tasks: list[str], fewshot: int, limit: int | None) -> dict:
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


# ---------------------------------------------------------------------------------------------- the report
def build_report(method: Method, source: str, local: Path, spec: Any, out: Path, tmp: Path, qsizes: dict,
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


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("serveplan", "llmcompressor", "compressed-tensors", "transformers", "torch", "lm_eval"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _rel(measured: float, predicted: float) -> float | None:
    return (measured - predicted) / predicted if predicted else None


# ---------------------------------------------------------------------------------------------- on screen
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
