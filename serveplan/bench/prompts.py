"""Prompts of exact token lengths: the model's tokenizer where it is available locally, else a stated
approximation of one common word per token; lengths sampled from the traffic's distributions."""

from __future__ import annotations

import random
from typing import Literal

APPROX_NOTE = ("prompts are random common English words from a fixed vocabulary, one word per target "
               "token (about 1 token per word for Llama-3 / GPT-style BPE and the fake engine); the "
               "server's usage.prompt_tokens, where reported, is what the figures use")
TOKENIZER_NOTE = "prompts are random words cut to the exact target length with the model's tokenizer"

# Common English words that are each one token (with their leading space) in Llama-3 and GPT-4 style BPE.

_VOCAB = tuple("""
the of and to in is was for on that with as by at from his her they this which have are not be had
one all their were been has but more when who will out there about would into only some other time
than them these two may its first new also after over such most made where many before through back
much good well year work world life even down just part state each under long right great never being
still same last three high place own again every small both house found since off water old under
light line form city open point game book case group room side night hand head home music school order
road power money story fact month lot study word line week night body news eye face river plan table
land party level voice field door film paper space ground wind fire sea king town early rate south north
""".split())


class _PromptBuilder:
    """Builds a prompt of a target token length: exact with a local tokenizer, else approximate."""

    def __init__(self, tokenizer: str | None, seed: int, prefix_share: float):
        self.rng = random.Random(f"{seed}-prompts")
        self.tok = None
        self.note = APPROX_NOTE
        self.source: Literal["tokenizer", "approx"] = "approx"
        self.load_error: str | None = None
        self._special: set[int] = set()
        self._vocab = 0
        if tokenizer:
            try:
                from transformers import AutoTokenizer  # optional, heavy: imported only when asked

                tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
                # read once: len() and all_special_ids rebuild the vocabulary on some tokenizers
                self._special = set(getattr(tok, "all_special_ids", []) or [])
                self._vocab = len(tok)
                self.tok = tok
                self.source, self.note = "tokenizer", f"{TOKENIZER_NOTE} ({tokenizer})"
            except Exception as e:  # missing package, no local copy, bad path
                self.load_error = (f"tokenizer {tokenizer!r} not usable ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}); {APPROX_NOTE}")
        self.prefix_share = prefix_share
        self._prefix_words = [self.rng.choice(_VOCAB) for _ in range(4096)] if prefix_share > 0 else []

    def _words(self, n: int, rng: random.Random) -> list[str]:
        return [rng.choice(_VOCAB) for _ in range(n)]

    def build(self, n_tokens: int) -> tuple[str, int]:
        """(prompt, local token count). A prefix_share of it is a prefix common to every request."""
        n_prefix = min(int(n_tokens * self.prefix_share), len(self._prefix_words))
        words = self._prefix_words[:n_prefix] + self._words(n_tokens - n_prefix, self.rng)
        if self.tok is None:
            return " ".join(words), len(words)
        # With a tokenizer: random token ids (special tokens excluded), decoded, re-encoded to the exact
        # length. Random words would map to one unknown token with small or synthetic vocabularies, making
        # every prompt alike and turning the test into a prefix-cache benchmark.
        prefix_ids = self.tok.encode(" ".join(words[:n_prefix]), add_special_tokens=False) if n_prefix else []
        ids = prefix_ids[:n_prefix] + self._random_ids(n_tokens - min(len(prefix_ids), n_prefix))
        text = self.tok.decode(ids)
        ids = self.tok.encode(text, add_special_tokens=False)
        while len(ids) < n_tokens:  # decoding merged some ids: top up
            text += " " + self.tok.decode(self._random_ids(n_tokens - len(ids) + 8))
            ids = self.tok.encode(text, add_special_tokens=False)
        ids = ids[:n_tokens]
        return self.tok.decode(ids), len(ids)

    def _random_ids(self, n: int) -> list[int]:
        special, vocab = self._special, self._vocab
        out: list[int] = []
        while len(out) < n:
            i = self.rng.randrange(vocab)
            if i not in special:
                out.append(i)
        return out


def _sample_len(dist, rng: random.Random) -> int:
    q = min(max(rng.random(), 1e-9), 1 - 1e-9)
    return max(1, int(round(dist.quantile(q))))
