"""What a bench run sends: each request's sampled lengths, prompt and body, in index order.

The lengths and prompts come from seeded streams, so a seed gives the same requests whether they are built
ahead (`build`, before the clock starts: a slow tokenizer must not delay arrivals or stall the event loop
mid-run) or on demand once the prepared ones run out (`take`).
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable

from serveplan.bench.prompts import _PromptBuilder, _sample_len
from serveplan.bench.results import BenchArgs, RequestRecord
from serveplan.planner.spec import Traffic

DEFAULT_NUM_REQUESTS = 200
# Request bodies built before the clock starts: at most this many, holding at most this many prompt tokens.
MAX_PREPARED = 10_000
MAX_PREPARED_TOKENS = 20_000_000


class RequestSource:
    """Request i's record and body, for i = 0, 1, 2, ... (taken in that order)."""

    def __init__(self, urls: list[str], traffic: Traffic, args: BenchArgs, extra_body: dict | None):
        self.urls, self.traffic, self.args = urls, traffic, args  # args.model may be filled in later
        self.extra_body = extra_body or {}
        self.len_rng = random.Random(args.seed)
        self.prompts = _PromptBuilder(args.tokenizer, args.seed, traffic.prefix_share)
        self.pool: list[tuple[RequestRecord, dict] | None] = []  # prepared (record, body), index order
        self.built_lazily = 0
        self._stop = threading.Event()

    def new(self, index: int) -> tuple[RequestRecord, dict]:
        in_len = _sample_len(self.traffic.input_len, self.len_rng)
        out_len = _sample_len(self.traffic.output_len, self.len_rng)
        prompt, local_tokens = self.prompts.build(in_len)
        url = self.urls[index % len(self.urls)]
        rec = RequestRecord(index=index, url=url, start_s=0.0, input_len=in_len, output_len=out_len,
                            prompt_tokens=local_tokens)
        body: dict[str, Any] = {"max_tokens": out_len, "min_tokens": out_len, "ignore_eos": True,
                                "stream": True, "stream_options": {"include_usage": True},
                                "temperature": 0.0}
        if self.args.model:
            body["model"] = self.args.model
        if self.args.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update(self.extra_body)
        return rec, {k: v for k, v in body.items() if v is not None}

    def take(self, index: int) -> tuple[RequestRecord, dict]:
        """The record and body of request `index`: the prepared one, or built now once the pool has run
        out. Requests are taken in index order, so the seeded streams give the same prompts either way."""
        if index < len(self.pool):
            item, self.pool[index] = self.pool[index], None
            assert item is not None and item[0].index == index, index
            return item
        self.built_lazily += 1
        return self.new(index)

    def pool_size(self) -> int:
        """How many requests to prepare: all of a num_requests run; for an open loop bounded by duration,
        the expected arrivals plus four standard deviations (and 16); for a closed loop bounded only by
        duration, a pool per client (the rest is built when needed). At most MAX_PREPARED."""
        a = self.args
        sizes = [a.num_requests] if a.num_requests is not None else []
        if a.duration_s is not None:
            if a.mode == "open" and a.rate_rps:
                n = a.rate_rps * a.duration_s
                cv2 = (1.0 / self.traffic.burstiness if a.arrival == "bursty" and self.traffic.burstiness
                       else 1.0)  # count variance per expected arrival: poisson 1, gamma 1/shape
                sizes.append(math.ceil(n + 4 * math.sqrt(n * max(cv2, 1.0)) + 16))
            elif a.num_requests is None:  # closed loop: how many fit in the duration is unknown
                sizes.append(16 * (a.concurrency or 1) + 16)
        return max(1, min(min(sizes, default=DEFAULT_NUM_REQUESTS), MAX_PREPARED))

    def build(self, n: int, progress: Callable[[int, int], None] | None = None) -> None:
        """Build the first n records (run it in a worker thread, so that SIGINT is still heard); stops early
        when stopped or when the prompts already hold MAX_PREPARED_TOKENS."""
        tokens = 0
        last = time.perf_counter()
        for i in range(n):
            if self._stop.is_set() or tokens >= MAX_PREPARED_TOKENS:
                return
            self.pool.append(self.new(i))
            tokens += self.pool[-1][0].input_len
            if progress and time.perf_counter() - last > 0.25:
                last = time.perf_counter()
                progress(i + 1, n)

    def stop(self) -> None:
        self._stop.set()
