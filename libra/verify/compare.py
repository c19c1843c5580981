"""The fast path: decide a pair from normalised strings, exact numbers and the answer's structure, without sympy.

Most real pairs are settled here in microseconds (same normalised string, or two plain numbers), so only
the genuinely symbolic ones pay for a worker process and math-verify. What is left undecided goes there
with the spellings this step found (a list's values joined, an inequality as its interval, an equation's
value side), so math-verify compares the answer a reader sees rather than a fragment of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from libra.verify import forms
from libra.verify.normalize import as_number, normalize

# Answers made only of words ("Evelyn", "\text{Monday}", "no solution"): compared case-insensitively.
_WORDS = re.compile(r"^[A-Za-z][A-Za-z ]*$")
_CHOICE_LETTER = re.compile(r"^[A-E]$")
# Longer answers are not read as named values: no real list of named values is this long, and the fast path
# runs outside the time bound, so a hostile one must not cost a second normalising pass per value.
_MAX_NAMED_CHARS = 1000


@dataclass(frozen=True)
class Decision:
    """A fast-path outcome: ``verdict`` (None: symbolic step needed), the ``rule`` that settled it, and the
    spellings of prediction and gold to hand to the symbolic step."""

    verdict: bool | None
    rule: str
    pred_forms: tuple[str, ...]
    gold_forms: tuple[str, ...]


def _exact(pred: str, gold: str) -> tuple[bool | None, str]:
    """Verdict and rule from two normalised single answers; False only where math-verify could not disagree:
    two different exact numbers (integers or fractions; decimals are left to its rounding rules) or two
    different multiple-choice letters."""
    if pred and pred == gold:
        return True, "same normalised form"
    if _WORDS.match(pred) and _WORDS.match(gold) and pred.casefold() == gold.casefold():
        return True, "same words"
    if _CHOICE_LETTER.match(gold) and _CHOICE_LETTER.match(pred):
        return False, "different choice letters"
    pred_value, gold_value = as_number(pred), as_number(gold)
    if pred_value is None or gold_value is None:
        return None, "symbolic"
    if pred_value == gold_value:
        return True, "equal numbers"
    return (False, "different exact numbers") if "." not in pred + gold else (None, "symbolic")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _compare_values(pred: list[str], gold: list[str], ordered: bool) -> tuple[bool | None, str]:
    """Several values against several: as a tuple (``ordered``) or as sets; None when a pair needs sympy."""
    kind = "tuple" if ordered else "set"
    if not ordered:
        pred, gold = _unique(pred), _unique(gold)
    exact_values = all(as_number(value) is not None for value in pred + gold)
    if len(pred) != len(gold):
        return (False, f"different number of values ({kind})") if exact_values else (None, "symbolic")
    if ordered:
        verdicts = [_exact(p, g)[0] for p, g in zip(pred, gold)]
    else:
        unmatched = list(gold)
        for value in pred:
            match = next((g for g in unmatched if _exact(value, g)[0]), None)
            if match is not None:
                unmatched.remove(match)
        verdicts = [True] * (len(gold) - len(unmatched)) + [None if not exact_values else False] * len(unmatched)
    if all(verdicts):
        return True, f"same values ({kind})"
    if False in verdicts and (ordered or exact_values):
        return False, f"different values ({kind})"
    return None, "symbolic"


def _named(answer: str) -> dict[str, str] | None:
    """The values ``answer`` gives by name (see ``forms.named_values``), each value normalised on its own."""
    if "=" not in answer or len(answer) > _MAX_NAMED_CHARS:
        return None
    named = forms.named_values(normalize(answer, keep_assignment=True))
    return None if named is None else {name: normalize(value) for name, value in named.items()}


def _compare_named(pred: dict[str, str], gold: dict[str, str]) -> Decision | None:
    """Values given by name against values given by the same names, name by name; None when the names differ.

    Left undecided, the values go to the symbolic step as tuples in the gold's order of names, and only so:
    the answers whole (``(f(n),g(n))=(n,1)`` against ``f(n)=n,g(n)=1``) are no spellings it can compare.
    """
    if set(pred) != set(gold):
        return None
    verdicts = [_exact(pred[name], value)[0] for name, value in gold.items()]
    pred_tuple = "(" + ",".join(pred[name] for name in gold) + ")"
    gold_tuple = "(" + ",".join(gold.values()) + ")"
    if all(verdicts):
        return Decision(True, "same named values", (pred_tuple,), (gold_tuple,))
    if False in verdicts:
        return Decision(False, "different named values", (pred_tuple,), (gold_tuple,))
    return Decision(None, "symbolic (named values in order)", (pred_tuple,), (gold_tuple,))


def decide(pred: str, gold: str) -> Decision:
    """The fast path's decision on one extracted prediction against the gold answer.

    Rules, in order: equal normalised forms or exact numbers; values given by name (``x=1,y=2``,
    ``(x,y)=(1,2)``) against the same names are compared name by name; an inequality in one variable is
    compared with interval notation as the set it describes; several values against one are wrong, several
    against several are compared as a tuple when the gold is one and as sets otherwise; an equation in
    variables set to zero is no value; an equation's value side (``m+n=33`` -> ``33``) is compared with the
    gold.
    """
    pred_norm, gold_norm = normalize(pred), normalize(gold)
    gold_forms = [gold, gold_norm]
    pred_forms = [pred, pred_norm]

    def settled(verdict: bool | None, rule: str) -> Decision:
        return Decision(verdict, rule, tuple(_unique(pred_forms)), tuple(_unique(gold_forms)))

    verdict, rule = _exact(pred_norm, gold_norm)
    if verdict is not None:
        return settled(verdict, rule)

    pred_named, gold_named = _named(pred), _named(gold)
    named = _compare_named(pred_named, gold_named) if pred_named and gold_named else None
    if named is not None:
        return named

    pred_set, gold_set = forms.as_interval(pred_norm), forms.as_interval(gold_norm)
    if (pred_set or gold_set) and (pred_set or forms.unambiguous_interval(pred_norm)) and (
            gold_set or forms.unambiguous_interval(gold_norm)):
        pred_set, gold_set = pred_set or pred_norm, gold_set or gold_norm
        if pred_set == gold_set:
            return settled(True, "same set (inequality and interval)")
        pred_forms.append(pred_set)
        gold_forms.append(gold_set)
        return settled(None, "symbolic (as sets)")

    pred_values, gold_values = forms.values(pred_norm), forms.values(gold_norm)
    gold_tuple = None if forms.unambiguous_interval(gold_norm) else forms.tuple_items(gold_norm)
    if len(gold_values) == 1 and gold_tuple is None and len(_unique(pred_values)) > 1:
        return settled(False, "several values where the gold has one")
    if len(pred_values) > 1 or len(gold_values) > 1 or (gold_tuple and forms.tuple_items(pred_norm) is None):
        ordered = gold_tuple is not None
        verdict, rule = _compare_values(pred_values, gold_tuple or gold_values, ordered)
        if verdict is None:
            joined = ",".join(pred_values)
            pred_forms.append(f"({joined})" if ordered else joined)
        return settled(verdict, rule)

    if len(forms.split_top(gold_norm, "=")) == 1:
        if forms.equation_set_to_zero(pred_norm):
            return settled(False, "an equation set to zero states no value")
        side = forms.value_side(pred_norm)
        if side is not None:
            pred_forms.append(side)
            verdict, rule = _exact(side, gold_norm)
            return settled(verdict, f"value side of the equation: {rule}")
    return settled(None, "symbolic")


def quick_verdict(pred: str, gold: str) -> bool | None:
    """True / False when the fast path settles the pair, None when a symbolic comparison is needed."""
    return decide(pred, gold).verdict
