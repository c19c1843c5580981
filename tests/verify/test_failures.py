"""A check that could not finish is never a label (issue 10, defect 2): it is explained, counted, not cached by
V2V, and a checker that cannot start at all fails loudly instead of answering "no" to everything."""

import json

import pytest

import libra.verify
from libra.data.sources import Problem, Response
from libra.data.v2v import build
from libra.verify import CheckerUnavailable, failure_counts, strip_thinking, verify_answer, verify_many
from libra.verify.bounded import BoundedPool, TimedOut, WorkerFailed

HOSTILE = r"\boxed{9^{9^{9^{9^{9}}}}}"  # one big-integer power: only killing the worker bounds it
SYMBOLIC = (r"\boxed{\sqrt{2}/2}", r"\frac{1}{\sqrt{2}}")  # needs math-verify, the fast path cannot settle it


def test_checker_that_cannot_start_fails_loudly(monkeypatch):
    monkeypatch.setattr(libra.verify, "_SYMBOLIC_TARGET", "libra.verify.no_such_module:equivalent")
    with pytest.raises(CheckerUnavailable, match="no_such_module"):
        verify_many([SYMBOLIC], timeout=10.0, workers=1, progress=False)


def test_worker_that_dies_while_starting_names_the_cause():
    with BoundedPool("no_such_module_at_all:f", size=1) as pool, pytest.raises(CheckerUnavailable) as error:
        pool.call([], timeout=10.0)
    assert "ModuleNotFoundError" in str(error.value)  # the worker's stderr is kept, not sent to /dev/null


def test_worker_death_and_errors_are_failures_not_answers():
    with BoundedPool("os:_exit", size=1) as pool, pytest.raises(WorkerFailed, match="exit code 3"):
        pool.call([3], timeout=10.0)
    with BoundedPool("math:sqrt", size=1) as pool:
        with pytest.raises(WorkerFailed, match="ValueError"):
            pool.call([-1], timeout=10.0)
        assert pool.call([4], timeout=10.0) == 2.0  # the pool keeps serving after a failure


def test_timeout_is_explained_and_counted():
    before = failure_counts().get("timeout", 0)
    verdict = verify_answer(HOSTILE, "5", timeout=1.0, explain=True)
    assert verdict.failure == "timeout" and verdict.correct is False
    assert verdict.rule.startswith("check failed")
    assert failure_counts()["timeout"] == before + 1
    assert verify_answer(HOSTILE, "5", timeout=1.0) is False  # the plain answer stays False, as documented
    with BoundedPool(libra.verify._SYMBOLIC_TARGET, size=1) as pool, pytest.raises(TimedOut):
        pool.call([["5"], ["9^{9^{9^{9^{9}}}}"]], timeout=1.0)


def test_v2v_does_not_cache_a_failed_check(tmp_path):
    problems = [Problem("s", "p0", "question 0", "5", None), Problem("s", "p1", "question 1", "7", None)]
    responses = [Response("m", "question 0", HOSTILE, 0, False, "a"),
                 Response("m", "question 1", r"so \boxed{7}", 0, True, "b")]
    cache = tmp_path / "labels.jsonl"

    def run():
        return build(problems, responses, strip_thinking=strip_thinking, verify_many=verify_many, do_balance=False,
                     cache=cache, timeout=1.0, workers=1, progress=False)

    first = run()
    assert (first.stats["check_failed"], first.stats["check_failures"]) == (1, {"timeout": 1})
    assert [row["problem_id"] for row in first.rows] == ["p1"]  # no row carries a label nobody decided
    assert first.agreement["compared"] == 1
    cached = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [record["label"] for record in cached] == [True]
    assert cached[0]["why"]["rule"] == "same normalised form"
    again = run()
    assert again.stats["labels_computed_now"] == 1 and again.stats["check_failed"] == 1  # retried, not reused
