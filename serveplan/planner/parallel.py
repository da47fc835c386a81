"""Mapping a planner function over candidates in forked worker processes.

The finalists' capacity at the SLO (capacity.capacity_at_slo) is most of a plan's time: several simulations of
240 s of arrivals per finalist, each finalist independent of the others and deterministic in its seed. Forked
workers inherit the function and its inputs (nothing is pickled on the way in, no module is imported again), so
the map pays ~20 ms of start-up; the results come back pickled. Where fork is not the platform's way (macOS,
Windows) or one worker is asked for, the map runs in-process, with the same results.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What the forked workers run: set just before the pool forks, read by _run in the children, cleared after.
_TASK: tuple[Callable, Sequence] | None = None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Failed:
    """A worker's item that raised: the parent runs it again in-process, so that the caller gets the exception
    itself (an exception whose constructor takes other arguments than its message does not survive pickling)."""


def _run(i: int):  # noqa: ANN202 (R | _Failed)
    fn, items = _TASK  # type: ignore[misc]
    try:
        return fn(items[i])
    except Exception:
        return _Failed()


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 0) -> list[R]:
    """[fn(x) for x in items], in up to `workers` forked processes (0: available_cpus()), in order."""
    global _TASK
    n = min(len(items), workers or available_cpus())
    if n <= 1 or not sys.platform.startswith("linux") or _TASK is not None:  # one, no fork, or already inside a map
        return [fn(x) for x in items]
    _TASK = (fn, items)
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_run, range(len(items))))
    finally:
        _TASK = None
    # deterministic functions fail again here, with their own exception
    return [fn(x) if isinstance(r, _Failed) else r for x, r in zip(items, results)]
