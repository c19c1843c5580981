"""Symbolic equivalence with math-verify; runs only inside the worker processes of ``bounded``.

math-verify's own timeouts use ``signal.alarm``, which fails outside the main thread and cannot interrupt
C-level big-integer arithmetic anyway, so they are disabled here (``parsing_timeout=None``,
``timeout_seconds=None``) and the caller bounds the time by killing the worker instead.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import parse, verify

# math-verify warns once per process that its timeouts are off; that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> list:
    """math-verify's parse of one bare answer; cached because a gold answer recurs for every response."""
    return parse("\\boxed{" + answer + "}", parsing_timeout=None)


def equivalent(golds: list[str], preds: list[str]) -> bool:
    """Whether any spelling of the prediction matches any spelling of the gold answer (gold first: math-verify
    is asymmetric, e.g. it reads an assignment "x = 5" in the prediction against a gold value)."""
    return any(
        verify(_parsed(gold), _parsed(pred), timeout_seconds=None, raise_on_error=False)
        for gold in golds
        for pred in preds
    )
