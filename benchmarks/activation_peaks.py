"""vLLM's "peak activation" against the plan's activation term, from every committed server log that reports one.

vLLM 0.26.0 profiles a forward pass at max_num_batched_tokens before it sizes the KV cache and logs "X GiB for peak
activation" (with its own memory profiling, i.e. not where a plan pins the cache). The plan counts
`memory.activation_bytes`: the MLP's and hidden states per batched token, plus the sampler's logits. Session 23's
Qwen2.5-32B at 2,048 batched tokens read 1.49 GiB against a planned 0.61 GB, and its KV cache came out 2.9% short.
This prints, per model, tensor parallelism and batch budget, what the logs read, what the plan counts, and one
vocab x hidden bf16 matrix (the size the small-budget floor is close to), apart by how the weights were loaded.

Session 24 (`benchmarks/gpu/session24.sh`) decided where the floor comes from: the same 4-layer Qwen2.5-32B at 2,048
tokens read 1.49 GiB with `--load-format dummy` and 0.41 GiB from random safetensors. The floor is dummy weights'
(one vocab x hidden bf16 matrix for every model from Mistral-7B to Qwen2.5-32B at small budgets); every other committed
server ran dummy weights, so the launch-safety harness's KV cache at small budgets is short by it, a real checkpoint's
is not.

    python benchmarks/activation_peaks.py
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "gpu"))

from launch_safety_run import log_memory  # noqa: E402  (the memory lines of a vLLM log, as the launches read them)

from serveplan.planner import catalog  # noqa: E402
from serveplan.planner.memory import activation_bytes  # noqa: E402
from serveplan.planner.spec import Candidate, ModelSpec  # noqa: E402

R = HERE / "gpu" / "results"
GIB = 1024**3
LOG_NAME = re.compile(r"(server\.log|replica-\d+\.log|\.log)(\.gz)?$")


def _text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as f:
        return f.read()


def _catalog_model(folder_name: str) -> str | None:
    """The catalog model a make_folder folder (MODEL-FORMAT[-lN]) was made from."""
    for option in sorted(catalog.options("model"), key=len, reverse=True):
        if folder_name == option or folder_name.startswith(option + "-"):
            return option
    return None


def budget_of(candidate: str) -> tuple[int, int] | None:
    """(batched tokens, max sequences) from a candidate's label (`... seqs=512 tokens=8192 chunked`); None without."""
    tokens, seqs = re.search(r"tokens=(\d+)", candidate), re.search(r"seqs=(\d+)", candidate)
    return (int(tokens.group(1)), int(seqs.group(1))) if tokens and seqs else None


def plan_and_dummy_floor(model: str, tp: int, tokens: int, seqs: int, chunked: bool = True,
                         max_model_len: int | None = None) -> tuple[float, float]:
    """Bytes per GPU: the plan's activation term (memory.activation_bytes) for a catalog model at this budget, and
    dummy weights' floor under vLLM's peak (one vocab x hidden bf16 matrix per TP rank; session 24)."""
    spec = ModelSpec(**catalog.catalog_doc("model", model))
    extra = {"max_model_len": max_model_len} if max_model_len else {}
    cand = Candidate(tp=tp, max_num_batched_tokens=tokens, max_num_seqs=seqs, chunked_prefill=chunked, **extra)
    return activation_bytes(spec, cand), spec.vocab_size * spec.hidden_size * 2 / tp


def peaks() -> list[dict]:
    """One row per server log with a peak activation line: its model, TP, batch budget, seqs and the peak (GiB)."""
    rows = []
    for path in sorted(R.rglob("*")):
        if not LOG_NAME.search(path.name) or not path.is_file():
            continue
        text = _text(path)
        act = log_memory(text)["peak_activation_gib"]
        model = re.findall(r"model='([^']+)'", text)
        tokens = re.findall(r"max_num_batched_tokens[=:'\" ]+(\d+)", text)
        if act is None or not model or not tokens:
            continue
        name = _catalog_model(model[0].rstrip("/").split("/")[-1])
        if name is None:
            continue
        seqs = re.findall(r"max_num_seqs[=:'\" ]+(\d+)", text)
        tp = re.findall(r"tensor_parallel_size=(\d+)", text)
        load = re.findall(r"load_format=(\w+)", text)
        rows.append({"log": str(path.relative_to(R)), "model": name, "tp": int(tp[0]) if tp else 1,
                     "tokens": int(tokens[0]), "seqs": int(seqs[0]) if seqs else 256, "peak_gib": act,
                     "weights": "loaded" if load and load[0] != "dummy" else "dummy"})
    return rows


def launch_peaks() -> list[dict]:
    """The same from the launch-safety results (launch_safety_run.py's JSON lines: vLLM's line read from the
    replica's log on the GPU machine), for the candidates whose KV cache vLLM sized itself."""
    rows = []
    for path in sorted(R.rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not isinstance(r, dict) or not r.get("peak_activation_gib") or "candidate" not in r:
                continue
            c = r["candidate"]
            b = budget_of(c)
            if b is None:
                continue
            rows.append({"log": str(path.relative_to(R)), "model": r["model"], "tp": r.get("tp", 1),
                         "tokens": b[0], "seqs": b[1], "peak_gib": float(r["peak_activation_gib"]),
                         "weights": "dummy"})
    return rows


def main() -> int:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in peaks() + launch_peaks():
        groups[(r["model"], r["tp"], r["tokens"], r["seqs"], r["weights"])].append(r)
    print("| model | TP | batched tokens | seqs | weights | servers | vLLM's peak (GiB) | plan (GiB) | "
          "vocab x hidden bf16 (GiB) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for (model, tp, tokens, seqs, weights), rows in sorted(groups.items()):
        plan, lm_head = (b / GIB for b in plan_and_dummy_floor(model, tp, tokens, seqs))
        got = sorted({r["peak_gib"] for r in rows})
        read = f"{got[0]:.2f}" if len(got) == 1 else f"{got[0]:.2f}-{got[-1]:.2f}"
        print(f"| {model} | {tp} | {tokens:,} | {seqs} | {weights} | {len(rows)} | {read} | {plan:.2f} | {lm_head:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
