"""String normalisation of final answers: the presentation differences that do not change the answer.

Two uses: the canonical form makes the fast path (string or exact-number equality, no sympy) decide most
pairs, and it is handed to math-verify as an extra candidate, because math-verify's own LaTeX clean-up
misses several of these (units written as words, thousands separators, "(A)" vs "A", ``\\text{}``
answers, ...). Every rule is a linear-time pass; none can blow up on hostile input.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Wrappers whose content is the answer: \text{Evelyn} -> Evelyn, \mathbf{v} -> v.
_WRAPPERS = ("\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mathbf", "\\mbox", "\\operatorname")
_WRAPPER = re.compile(r"(?:" + "|".join(re.escape(w) for w in _WRAPPERS) + r")\s*\{")

# Plain substitutions, applied in order.
_REPLACEMENTS = (
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
    ("\\left", ""), ("\\right", ""), ("\\displaystyle", ""),
    ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", ""), ("~", ""),
    ("{,}", ","),  # LaTeX thousands separator 1{,}000
    ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("\\degree", ""), ("°", ""),
    ("\\%", ""), ("%", ""), ("\\$", ""), ("$", ""),
    ("π", "\\pi"), ("\\leqslant", "\\le"), ("\\geqslant", "\\ge"), ("\\leq", "\\le"), ("\\geq", "\\ge"),
    ("≤", "\\le"), ("≥", "\\ge"), ("<=", "\\le "), (">=", "\\ge "), ("\\varnothing", "\\emptyset"),
    ("\\{", "{"), ("\\}", "}"), ("\\(", ""), ("\\)", ""),  # inline-math delimiters left inside a box
    ("\\equiv", "="), ("≡", "="),  # "x \equiv 3 \pmod{8}": the residue, once the modulus is dropped
)
# The modulus of a congruence: \pmod{8}, \pmod 8, (\mod 8), (mod 8).
_MODULUS = re.compile(r"\\pmod\s*(?:\{[^{}]*\}|\d+)|\(\s*\\?mod\s+[^()]{1,20}\)")
# LaTeX debris: a backslash straight before a number ("\5", "\ 12" after spacing is dropped), not the row
# break "\\" of a matrix.
_STRAY_BACKSLASH = re.compile(r"(?<!\\)\\(?=\d)")
# An answer written as one number word ("five"): the words a model uses for small answers.
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}

# x = 5, \theta = 3, a_1 = 2, "x \in [2, 5)": a single named variable on the left.
_ASSIGNMENT = re.compile(r"^(?:[a-zA-Z](?:_\{?\w{1,3}\}?)?|\\[a-zA-Z]{1,10})\s*(?:=|\\in)\s*(?=\S)")
# 12^{th}, 2^{\rm nd}: an ordinal suffix (after \mathrm{} is unwrapped).
_ORDINAL = re.compile(r"\^\{?(?:\\rm\s*)?(?:st|nd|rd|th)\}?")
# "12 cm", "5 dollars", "3 square units", "4 cm^2": a number followed only by words.
_UNITS = re.compile(r"^([-+]?[\d.,]*\d(?:\\frac\{\d+\}\{\d+\})?)\s*[a-zA-Z][a-zA-Z ]+(?:\^\{?\d\}?)?$")
# \frac12 -> \frac{1}{2}, \frac1{2}, \frac{1}2, \sqrt2 -> \sqrt{2}
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d)")
# "A", "(A)", "A.", or "(A) 12" (a parenthesised letter followed by the option's text).
_CHOICE = re.compile(r"^(?:\(?([A-E])\)?\.?|\(([A-E])\)\s.*)$")
# Whitespace is dropped unless it separates two letters ("\pi r" must not become "\pir").
_SPACE = re.compile(r"(?<![a-zA-Z])\s+|\s+(?![a-zA-Z])")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_FRACTION = re.compile(r"^([-+]?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))$")
# Longer answers are only stripped: nobody writes such an answer, and the rules are not worth running on it.
_MAX_NORMALIZE_CHARS = 5000
# Longer numbers are compared as strings only: int() of a huge digit string is slow (and limited).
_MAX_NUMBER_CHARS = 60


def _unwrap(text: str) -> str:
    """Replace each ``\\text{…}``-style wrapper by its content (brace-matched, nested wrappers included)."""
    while True:
        match = _WRAPPER.search(text)
        if match is None:
            return text
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        inner_end = end - 1 if depth == 0 else end
        text = text[:match.start()] + text[match.end():inner_end] + text[end:]


def _canonical_decimal(text: str) -> str:
    """'5.0' -> '5', '.50' -> '0.5', '+3' -> '3', '-0' -> '0': one spelling per decimal number."""
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-")
    whole, _, frac = digits.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    result = whole + ("." + frac if frac else "")
    return result if result == "0" else sign + result


def normalize(answer: str, *, keep_assignment: bool = False) -> str:
    """Canonical spelling of a final answer, for equality tests and as a cleaner input to math-verify.

    Handles ``\\text{}`` and font wrappers, ``\\left``/``\\right``, spacing commands, ``\\dfrac``/``\\tfrac``,
    degree signs, ordinal suffixes, percent and dollar signs, units written as words after a number, "x = 5" and
    "x \\in [a, b)" (a single named variable), thousands separators, ``\\frac12``, a trailing period,
    multiple-choice letters "(A)" / "A.", redundant decimal zeros, a stray backslash before a number, math
    delimiters left inside the answer, ``<=``/``≤`` spelt ``\\le``, a congruence's modulus, and an answer that
    is one number word. Case is kept (``\\Delta`` is not ``\\delta``); callers compare plain-word answers
    case-insensitively. ``keep_assignment`` keeps a leading "x = " (``forms.named_values`` reads the names).
    """
    if len(answer) > _MAX_NORMALIZE_CHARS:
        return answer.strip()
    text = _MODULUS.sub("", _unwrap(answer))
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    text = _STRAY_BACKSLASH.sub("", text.strip().rstrip(".").strip())
    text = _NUMBER_WORDS.get(text.casefold(), text)
    choice = _CHOICE.match(text)
    if choice:
        return choice.group(1) or choice.group(2)
    if not keep_assignment:
        text = _ASSIGNMENT.sub("", text, count=1)
    text = _ORDINAL.sub("", text)
    text = _UNITS.sub(r"\1", text)
    text = _FRAC_SHORT.sub(lambda m: f"\\frac{{{m.group(1).strip('{}')}}}{{{m.group(2).strip('{}')}}}", text)
    text = _SQRT_SHORT.sub(r"\\sqrt{\1}", text)
    text = _SPACE.sub("", text)
    if len(text) <= _MAX_NUMBER_CHARS and _THOUSANDS.match(text):
        text = text.replace(",", "")
    if len(text) <= _MAX_NUMBER_CHARS and _DECIMAL.match(text):
        text = _canonical_decimal(text)
    return text


def as_number(normalized: str) -> Fraction | None:
    """The exact value of a normalised plain number (integer, decimal, ``a/b``, ``\\frac{a}{b}``), else None."""
    if len(normalized) > _MAX_NUMBER_CHARS:
        return None
    if _DECIMAL.match(normalized):
        return Fraction(normalized)
    match = _FRACTION.match(normalized)
    if match is None:
        return None
    sign, num_a, den_a, num_b, den_b = match.groups()
    numerator, denominator = int(num_a or num_b), int(den_a or den_b)
    if denominator == 0:
        return None
    return Fraction(numerator, denominator) * (-1 if sign == "-" else 1)
