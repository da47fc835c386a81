"""parallel_map: forked workers give what the in-process map gives, in order; and a plan is the same plan
whatever search.workers is."""

from __future__ import annotations

import json
import os

import pytest

from serveplan.planner.parallel import parallel_map


def _square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _nested(x: int) -> list[int]:
    return [y for y, _ in parallel_map(_square_with_pid, [x, x + 1], workers=2)]


class _Picky(Exception):
    def __init__(self, what: str, options: list[str]):  # not (message,): pickling it back would fail
        super().__init__(f"unknown {what}; known: {', '.join(options)}")


def _fails(x: int) -> int:
    if x == 3:
        raise _Picky(str(x), ["1", "2"])
    return x


def test_the_map_keeps_order_and_values_whatever_the_workers():
    items = list(range(7))
    one = parallel_map(_square_with_pid, items, workers=1)
    two = parallel_map(_square_with_pid, items, workers=2)
    assert [v for v, _ in one] == [v for v, _ in two] == [x * x for x in items]
    assert {pid for _, pid in one} == {os.getpid()}  # workers=1: in-process
    if os.uname().sysname == "Linux":
        assert os.getpid() not in {pid for _, pid in two}  # forked workers did the work


def test_a_map_inside_a_worker_runs_in_that_worker():
    assert parallel_map(_nested, [1, 5], workers=2) == [[1, 4], [25, 36]]


def test_a_workers_exception_reaches_the_caller():
    with pytest.raises(_Picky, match="unknown 3; known: 1, 2"):
        parallel_map(_fails, [1, 2, 3, 4], workers=2)


def test_the_plan_is_the_same_in_one_process_and_in_two():
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.planner.report import plan_json, sizing_sentence

    docs = []
    for workers in (1, 2):
        p = plan(build_request(model="llama-70b", gpus="2xA100", overrides=[f"search.workers={workers}"]))
        doc = plan_json(p)
        doc.pop("search")  # its seconds differ
        docs.append((json.dumps(doc, sort_keys=True, default=str), sizing_sentence(p)))
    assert docs[0] == docs[1]
