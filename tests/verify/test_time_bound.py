"""The time bound holds for hostile answers from the main thread, from many threads at once, and inside
process pools (a ProcessPoolExecutor worker and a daemonic multiprocessing.Pool worker)."""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from libra.verify import verify_answer

TIMEOUT = 1.0
SLACK = 1.0

HOSTILE = [
    (r"\boxed{9^{9^{9^{9^{9}}}}}", "5"),
    (r"\boxed{10^{10^{10^{100}}}}", "7"),
    (r"\boxed{((100!)!)!}", "3"),
    (r"\boxed{2^{2^{2^{2^{2^{2}}}}} - 1}", "8"),
    ("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1"),
    ("\\boxed{" + "9" * 100_000 + "}", "1"),
    ("\\boxed{" + "x^" * 3_000 + "2}", "2"),
]


def timed_verify(pair: tuple[str, str]) -> tuple[bool, float]:
    start = time.monotonic()
    result = verify_answer(*pair, timeout=TIMEOUT)
    return result, time.monotonic() - start


@pytest.mark.parametrize("pair", HOSTILE, ids=lambda pair: pair[0][:24])
def test_hostile_input_returns_false_in_time(pair):
    result, seconds = timed_verify(pair)
    assert result is False
    assert seconds < TIMEOUT + SLACK


def test_still_works_after_a_timeout():
    assert not verify_answer(HOSTILE[0][0], HOSTILE[0][1], timeout=TIMEOUT)
    assert verify_answer(r"\boxed{\sqrt{2}/2}", r"\frac{1}{\sqrt{2}}", timeout=10.0)


def test_bound_holds_from_eight_threads():
    pairs = HOSTILE[:4] * 2
    start = time.monotonic()
    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(timed_verify, pairs))
    assert [result for result, _ in results] == [False] * len(pairs)
    assert max(seconds for _, seconds in results) < TIMEOUT + SLACK
    assert time.monotonic() - start < TIMEOUT + 2 * SLACK


def test_bound_holds_inside_process_pool_executor():
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(timed_verify, HOSTILE[:3] + [(r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt2}")]))
    assert [result for result, _ in results[:3]] == [False] * 3
    assert max(seconds for _, seconds in results[:3]) < TIMEOUT + SLACK


def is_daemon() -> bool:
    return multiprocessing.current_process().daemon


def test_bound_holds_inside_daemonic_pool_worker():
    """multiprocessing.Pool workers are daemonic, so they cannot start multiprocessing children."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(is_daemon)
        result, seconds = pool.apply(timed_verify, (HOSTILE[0],))
    assert result is False
    assert seconds < TIMEOUT + SLACK
