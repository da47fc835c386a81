"""`quantize --model M --method awq -o DIR`: make a quantized checkpoint (extra `quantize`: llm-compressor)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from serveplan.cli.args import _Parser
from serveplan.quantize.methods import METHODS
from serveplan.quantize.report import render
from serveplan.quantize.run import quantize


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _Parser(prog="serveplan quantize", description="Make a quantized checkpoint vLLM loads (llm-compressor, "
            "compressed-tensors) and measure its size and perplexity against the original.")
    ap.add_argument("--model", required=True, help="local model folder, HF id, or catalog name (llama-3.1-8b)")
    ap.add_argument("--method", required=True, help=f"{', '.join(METHODS)} (int8 = w8a8)")
    ap.add_argument("-o", "--out", required=True, help="output folder (written atomically)")
    ap.add_argument("--calibration", help="calibration text (.txt, or .jsonl with a 'text' field); default: a "
                                          "small built-in text, enough for the mechanics only")
    ap.add_argument("--samples", type=int, default=256, help="calibration samples (default 256)")
    ap.add_argument("--seq-len", type=int, default=512, help="tokens per calibration sample and eval window")
    ap.add_argument("--eval", dest="eval_file", help="held-out text for perplexity (default: built-in sample)")
    ap.add_argument("--skip-eval", action="store_true", help="no perplexity (saves two model loads)")
    ap.add_argument("--gpu", help="serving GPU (A100, H100, L4, ...): check the method runs on it")
    ap.add_argument("--lm-eval", help="comma-separated lm-eval tasks (e.g. arc_easy,hellaswag); needs lm-eval")
    ap.add_argument("--lm-eval-fewshot", type=int, default=5)
    ap.add_argument("--lm-eval-limit", type=int, help="examples per task (default: all)")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (after success only)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    a = ap.parse_args(argv)
    report = quantize(a.model, a.method, Path(a.out), calibration=a.calibration, samples=a.samples,
                      seq_len=a.seq_len, eval_file=a.eval_file, gpu=a.gpu, skip_eval=a.skip_eval,
                      lm_eval_tasks=[x.strip() for x in a.lm_eval.split(",") if x.strip()] if a.lm_eval else None,
                      lm_eval_fewshot=a.lm_eval_fewshot, lm_eval_limit=a.lm_eval_limit, overwrite=a.overwrite,
                      command=shlex.join(["serveplan", "quantize", *argv]))
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        from rich.console import Console

        render(report, Console(highlight=False, width=None if sys.stdout.isatty() else 160))
    return 0


if __name__ == "__main__":
    from serveplan.cli import quantize_main

    sys.exit(quantize_main())
