"""Rule-based answer verification: is a model response's final answer equivalent to the gold answer?

Pipeline per pair: ``extract`` (last box after any reasoning trace, else the answer phrase or the closing
statement, always a whole expression) -> ``compare.decide`` (normalised strings, exact numbers, lists,
equations and intervals, no sympy) -> math-verify in a ``bounded.BoundedPool`` worker process, which is
killed when the time bound is hit. The bound holds from any thread and inside process pools (see
``bounded`` for why that needs processes rather than signals).

Every decision can be explained (``explain=True``: a ``Verdict`` with the extracted answer, the forms
compared and the rule that decided). A check that could not finish (a timeout, a dead worker) is not a
label: it reads False in the plain API, as before, but its ``Verdict`` says so in ``failure`` and every such
event is counted (``failure_counts``), so callers can report it and must not cache it. A checker that cannot
start at all raises ``CheckerUnavailable``.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Literal, overload

from libra.progress import progress_bar
from libra.verify.bounded import BoundedPool, BoundExceeded, CheckerUnavailable
from libra.verify.compare import decide
from libra.verify.extract import extract, extract_answer, strip_thinking

__all__ = ["CHECKER_VERSION", "CheckerUnavailable", "Verdict", "extract_answer", "failure_counts",
           "strip_thinking", "verify_answer", "verify_many"]

# Bumped whenever a change can flip a verdict: caches of labels (the V2V builder's) key on it, so a better
# checker never silently reuses the old one's answers.
CHECKER_VERSION = "4"

_SYMBOLIC_TARGET = "libra.verify.symbolic:equivalent"
# Answers longer than this are not sent to sympy: no real final answer is this long, and parsing one costs
# seconds of the bound for nothing.
_MAX_SYMBOLIC_CHARS = 1000

_pool: BoundedPool | None = None
_pool_pid = -1
_pool_lock = threading.Lock()
_failures: Counter[str] = Counter()
_failures_lock = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    """One decision and why: ``correct`` is the label (False also when the check failed: see ``failure``).

    ``extracted`` is the response's final answer (None: it has none) and ``extraction`` where it was found
    or why there is none; ``pred_forms`` and ``gold_forms`` are the spellings compared; ``rule`` is what
    decided. ``failure`` ("timeout" or "worker_error") means no decision was made: never store it as a label.
    """

    correct: bool
    rule: str
    extracted: str | None
    extraction: str
    pred_forms: tuple[str, ...] = ()
    gold_forms: tuple[str, ...] = ()
    failure: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def failure_counts() -> dict[str, int]:
    """Checks in this process that produced no decision so far, by kind ("timeout", "worker_error").

    Commands report the difference over their run; a nonzero count means some False labels are not
    judgements of the answer at all.
    """
    with _failures_lock:
        return dict(_failures)


def _count_failure(kind: str) -> None:
    with _failures_lock:
        _failures[kind] += 1


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


def _verify(response: str, gold: str, timeout: float, pool: BoundedPool) -> Verdict:
    deadline = time.monotonic() + timeout
    found = extract(response)
    if found.answer is None:
        return Verdict(False, "no final answer", None, found.source)
    decision = decide(found.answer, _gold_answer(gold))
    verdict = Verdict(bool(decision.verdict), decision.rule, found.answer, found.source, decision.pred_forms,
                      decision.gold_forms)
    if decision.verdict is not None:
        return verdict
    if max(map(len, decision.pred_forms + decision.gold_forms)) > _MAX_SYMBOLIC_CHARS:
        return replace(verdict, rule="too long for a symbolic comparison")
    try:
        equal = pool.call([list(decision.gold_forms), list(decision.pred_forms)],
                          timeout=max(0.0, deadline - time.monotonic()))
    except BoundExceeded as error:
        _count_failure(error.kind)
        return replace(verdict, rule=f"check failed: {error}", failure=error.kind)
    return replace(verdict, correct=equal is True, rule=f"{decision.rule} (math-verify)")


@overload
def verify_answer(response: str, gold: str, *, timeout: float = ..., explain: Literal[False] = ...) -> bool: ...
@overload
def verify_answer(response: str, gold: str, *, timeout: float = ..., explain: Literal[True]) -> Verdict: ...


def verify_answer(response: str, gold: str, *, timeout: float = 5.0, explain: bool = False) -> bool | Verdict:
    """Whether the final answer of ``response`` is equivalent to ``gold``; False when it has none.

    Returns within ``timeout`` seconds (plus a few milliseconds) from any thread or process; when the bound
    is hit the answer is False and the failure is counted (``failure_counts``). ``explain=True`` returns the
    ``Verdict`` instead, which tells a failed check from a wrong answer. Model output is never evaluated as
    code. Raises ``CheckerUnavailable`` when the symbolic checker cannot start at all.
    """
    verdict = _verify(response, gold, timeout, _default_pool())
    return verdict if explain else verdict.correct


def verify_many(
    pairs: Iterable[tuple[str, str]],
    *,
    timeout: float = 5.0,
    workers: int | None = None,
    progress: bool = True,
    explain: bool = False,
) -> list[bool] | list[Verdict]:
    """``verify_answer`` over ``(response, gold)`` pairs, in order, ``workers`` at a time (default: CPU count).

    Each item gets its own ``timeout``. The fast path runs in ``workers`` threads, the symbolic comparisons in
    a private pool of as many worker processes, closed at the end. ``explain=True`` returns ``Verdict``s.
    """
    pairs = list(pairs)
    workers = workers or os.cpu_count() or 1
    with BoundedPool(_SYMBOLIC_TARGET, size=workers) as pool, ThreadPoolExecutor(workers) as threads:
        results = threads.map(lambda pair: _verify(pair[0], pair[1], timeout, pool), pairs)
        verdicts = list(progress_bar(results, total=len(pairs), desc="verify", disable=not progress))
    return verdicts if explain else [verdict.correct for verdict in verdicts]
