"""The fast path: decide a pair from normalised strings and exact numbers, without sympy.

Most real pairs are settled here in microseconds (same normalised string, or two plain numbers), so only
the genuinely symbolic ones pay for a worker process and math-verify.
"""

from __future__ import annotations

import re

from libra.verify.normalize import as_number, normalize

# Answers made only of words ("Evelyn", "\text{Monday}", "no solution"): compared case-insensitively.
_WORDS = re.compile(r"^[A-Za-z][A-Za-z ]*$")
_CHOICE_LETTER = re.compile(r"^[A-E]$")


def quick_verdict(pred: str, gold: str) -> bool | None:
    """True / False when the normalised forms settle it, None when a symbolic comparison is needed.

    False is only returned where math-verify could not disagree: two different exact numbers (integers or
    fractions; decimals are left to its rounding rules) or two different multiple-choice letters.
    """
    pred_norm, gold_norm = normalize(pred), normalize(gold)
    if pred_norm and pred_norm == gold_norm:
        return True
    if _WORDS.match(pred_norm) and _WORDS.match(gold_norm) and pred_norm.casefold() == gold_norm.casefold():
        return True
    if _CHOICE_LETTER.match(gold_norm) and _CHOICE_LETTER.match(pred_norm):
        return False
    pred_value, gold_value = as_number(pred_norm), as_number(gold_norm)
    if pred_value is None or gold_value is None:
        return None
    if pred_value == gold_value:
        return True
    return False if "." not in pred_norm + gold_norm else None
