"""Rule-based answer verification: is a model response's final answer equivalent to the gold answer?

Pipeline per pair: ``extract_answer`` (last box after any reasoning trace) -> ``compare.quick_verdict``
(normalised strings and exact numbers, no sympy) -> math-verify in a ``bounded.BoundedPool`` worker
process, which is killed when the time bound is hit. The bound holds from any thread and inside process
pools (see ``bounded`` for why that needs processes rather than signals).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from tqdm import tqdm

from libra.verify.bounded import BoundedPool, BoundExceeded
from libra.verify.compare import quick_verdict
from libra.verify.extract import extract_answer, strip_thinking
from libra.verify.normalize import normalize

__all__ = ["CHECKER_VERSION", "extract_answer", "strip_thinking", "verify_answer", "verify_many"]

# Bumped whenever a change can flip a verdict: caches of labels (the V2V builder's) key on it, so a better
# checker never silently reuses the old one's answers.
CHECKER_VERSION = "2"

_SYMBOLIC_TARGET = "libra.verify.symbolic:equivalent"
# Answers longer than this are not sent to sympy: no real final answer is this long, and parsing one costs
# seconds of the bound for nothing.
_MAX_SYMBOLIC_CHARS = 1000

_pool: BoundedPool | None = None
_pool_pid = -1
_pool_lock = threading.Lock()


def _default_pool() -> BoundedPool:
    """The process-wide pool, created on first use; a forked child gets its own (its parent's pipes are not its)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool, _pool_pid = BoundedPool(_SYMBOLIC_TARGET, size=os.cpu_count() or 1), os.getpid()
            atexit.register(_pool.close)
        return _pool


def _gold_answer(gold: str) -> str:
    """The gold answer itself; a gold given as a full solution is reduced to its boxed answer."""
    boxed = extract_answer(gold) if "\\boxed" in gold or "\\fbox" in gold else None
    return (boxed or gold).strip()


def _verify(response: str, gold: str, timeout: float, pool: BoundedPool) -> bool:
    deadline = time.monotonic() + timeout
    pred = extract_answer(response)
    if pred is None:
        return False
    gold = _gold_answer(gold)
    verdict = quick_verdict(pred, gold)
    if verdict is not None:
        return verdict
    if len(pred) > _MAX_SYMBOLIC_CHARS or len(gold) > _MAX_SYMBOLIC_CHARS:
        return False
    golds = list(dict.fromkeys([gold, normalize(gold)]))
    preds = list(dict.fromkeys([pred, normalize(pred)]))
    try:
        return pool.call([golds, preds], timeout=max(0.0, deadline - time.monotonic())) is True
    except BoundExceeded:
        return False


def verify_answer(response: str, gold: str, *, timeout: float = 5.0) -> bool:
    """Whether the final answer of ``response`` is equivalent to ``gold``; False when it has none.

    Returns within ``timeout`` seconds (plus a few milliseconds) from any thread or process, and returns
    False when the bound is hit. Model output is never evaluated as code.
    """
    return _verify(response, gold, timeout, _default_pool())


def verify_many(
    pairs: Iterable[tuple[str, str]],
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    progress: bool = True,
) -> list[bool]:
    """``verify_answer`` over ``(response, gold)`` pairs, in order, ``workers`` at a time (default: CPU count).

    Each item gets its own ``timeout``. The fast path runs in ``workers`` threads, the symbolic comparisons in
    a private pool of as many worker processes, closed at the end.
    """
    pairs = list(pairs)
    workers = workers or os.cpu_count() or 1
    with BoundedPool(_SYMBOLIC_TARGET, size=workers) as pool, ThreadPoolExecutor(workers) as threads:
        results = threads.map(lambda pair: _verify(pair[0], pair[1], timeout, pool), pairs)
        return list(tqdm(results, total=len(pairs), desc="verify", disable=not progress))
