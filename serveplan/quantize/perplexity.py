"""Perplexity of a causal LM on a text, with transformers, on whatever device the model sits on.

The text is tokenized once and cut into non-overlapping windows of `seq_len` tokens (the last one shorter);
each window is scored on its own (no context carried across windows), and the perplexity is
exp(total negative log-likelihood / predicted tokens). Comparing two models is fair when the tokenizer, the
text and `seq_len` are the same. Only the standard library is imported at import time.
"""

from __future__ import annotations

import math
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUILTIN_EVAL = DATA_DIR / "heldout.txt"
BUILTIN_CALIBRATION = DATA_DIR / "calibration.txt"


def read_text(path: str | Path) -> str:
    """A text file's contents; a header of '#' lines at the top (provenance) is dropped. A .jsonl file gives
    the "text" field of each line, joined by blank lines."""
    p = Path(path)
    raw = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        import json

        parts = []
        for line in raw.splitlines():
            if line.strip():
                doc = json.loads(line)
                parts.append(str(doc.get("text", "")) if isinstance(doc, dict) else str(doc))
        return "\n\n".join(t for t in parts if t)
    lines = raw.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines).strip()


def token_ids(tokenizer, text: str) -> list[int]:  # noqa: ANN001
    """The text's token ids, with the tokenizer's BOS token first if it has one."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    return ([bos] if bos is not None else []) + ids


def windows(ids: list[int], seq_len: int) -> list[list[int]]:
    """Non-overlapping windows of seq_len tokens; a last window of fewer than 2 tokens is dropped."""
    out = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)]
    return [w for w in out if len(w) >= 2]


def perplexity(model, tokenizer, text: str, seq_len: int = 512) -> dict:  # noqa: ANN001
    """{"perplexity", "nll", "tokens" (predicted), "windows", "seq_len"} of `model` on `text`."""
    import torch

    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None) or seq_len
    seq_len = max(2, min(seq_len, int(max_pos)))
    chunks = windows(token_ids(tokenizer, text), seq_len)
    if not chunks:
        raise ValueError("the evaluation text has fewer than 2 tokens")
    device = model.get_input_embeddings().weight.device
    was_training = model.training
    model.eval()
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in chunks:
            x = torch.tensor([w], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            n += len(w) - 1
    if was_training:
        model.train()
    return {"perplexity": math.exp(nll / n), "nll": nll / n, "tokens": n, "windows": len(chunks),
            "seq_len": seq_len}
