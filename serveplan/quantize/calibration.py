"""Calibration data for the methods that need it (GPTQ, AWQ, SmoothQuant): token windows cut from a text, as
llm-compressor's oneshot takes them, and the report's account of what was used."""

from __future__ import annotations

from typing import Any

from serveplan.quantize.methods import Method, QuantizeError
from serveplan.quantize.perplexity import BUILTIN_CALIBRATION, read_text


def calibration_dataset(tokenizer: Any, text: str, samples: int, seq_len: int) -> Any:
    """A datasets.Dataset of up to `samples` windows of `seq_len` tokens cut from the text."""
    from datasets import Dataset

    from serveplan.quantize.perplexity import token_ids, windows

    chunks = windows(token_ids(tokenizer, text), seq_len)[:samples]
    if not chunks:
        raise QuantizeError("The calibration text has fewer than 2 tokens; give --calibration a text file.")
    return Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]})


def calibration_args(method: Method, tokenizer: Any, calibration: str | None, samples: int, seq_len: int,
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
