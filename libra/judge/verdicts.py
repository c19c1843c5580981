"""Parse the final verdict out of a judge's free-text output.

Rules, the same for the three kinds:

* A verdict is a ``[[...]]`` token holding a label of the kind, in any case and with spaces around
  its parts: ``[[score=N]]`` (pointwise), ``[[A>>B]]`` ``[[A>B]]`` ``[[A=B]]`` ``[[B>A]]``
  ``[[B>>A]]`` (pairwise), ``[[Correct]]`` ``[[Wrong]]`` (verification).
* The LAST verdict wins: judges quote the label list, and earlier drafts, while reasoning.
* Two modes decide what counts as the answer of a thinking judge:
  ``strict=True``: only the text after the last ``</think>``; a verdict inside the thinking never
  counts, and an opened ``<think>`` that is never closed leaves no answer at all (invalid). Training
  uses it (``TRAINING_STRICT``), for RL rewards and rejection-sampled SFT targets alike: a reward must
  not pay for, and a target must not teach, a verdict left inside the reasoning.
  ``strict=False`` (lenient, the evaluation default, ``libra eval libra-bench --verdict-mode``): the text
  after the last ``</think>`` is searched first; only when it holds no verdict is the whole text
  searched, since some judges put the verdict inside the thinking and then answer in prose.
  Text without think tags is the answer in both modes.
* No verdict -> ``Verdict(kind, None, valid=False)``, never a guess.  A pointwise score outside 0-4
  is a verdict too, and an invalid one: falling back to an earlier, quoted score would be a guess.

The input is untrusted model output (possibly megabytes).  Each kind's pattern is anchored at the
search start and opens with a greedy ``.*``, so the regex engine walks back from the end of the text
and stops at the last verdict; every quantifier inside a token is bounded, so each step of that walk
is constant work and a parse is linear in the text length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

PAIRWISE_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
# Paper, Table 9: Libra-RM judgments "are converted to the binary correctness label with a threshold of 2".
DEFAULT_THRESHOLD = 2

_THINK_START, _THINK_END = "<think>", "</think>"
VERDICT_MODES = ("lenient", "strict")
# How training reads a judge's verdicts: the SFT targets rejection sampling keeps and the RL rewards, so a
# target and a reward never disagree on a judgment. Strict: neither rests on a verdict left inside the
# reasoning. Per run: ``libra train rejection-sample --verdict-mode`` and ``reward.strict_verdicts``.
TRAINING_STRICT = True
_SPACE = r"\s{0,32}"


def _last_token(inner: str) -> re.Pattern[str]:
    """A pattern whose group 1 is the label in the last ``[[inner]]`` token from the match position on."""
    return re.compile(rf"(?s:.*)\[\[{_SPACE}({inner}){_SPACE}\]\]", re.IGNORECASE)


_POINTWISE = _last_token(rf"score{_SPACE}={_SPACE}[0-9]{{1,8}}")
_PAIRWISE = _last_token(rf"A{_SPACE}(?:>>|>|=){_SPACE}B|B{_SPACE}(?:>>|>){_SPACE}A")
_VERIFICATION = _last_token("correct|wrong")


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict: ``value`` is an int 0-4, a label of ``PAIRWISE_LABELS`` or a bool; None when invalid."""

    kind: str
    value: int | str | bool | None
    valid: bool


def parse_pointwise(text: str, *, strict: bool = False) -> Verdict:
    """The last ``[[score=N]]`` verdict; valid only for N in 0-4."""
    return _parse(text, "pointwise", _POINTWISE, _score, strict)


def parse_pairwise(text: str, *, strict: bool = False) -> Verdict:
    """The last ``[[A>>B]]``-style verdict, as one of ``PAIRWISE_LABELS``."""
    return _parse(text, "pairwise", _PAIRWISE, lambda label: "".join(label.split()).upper(), strict)


def parse_verification(text: str, *, strict: bool = False) -> Verdict:
    """The last ``[[Correct]]`` (True) or ``[[Wrong]]`` (False) verdict."""
    return _parse(text, "verification", _VERIFICATION, lambda label: label.lower() == "correct", strict)


def preferred_side(label: str) -> str:
    """Which response a pairwise label prefers: "A", "B" or "tie" (the strength is dropped)."""
    if label not in PAIRWISE_LABELS:
        raise ValueError(f"not a pairwise label: {label!r}; expected one of {PAIRWISE_LABELS}")
    return "tie" if label == "A=B" else label[0]


def score_to_label(score: int, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Binary correctness of a pointwise score: correct iff ``score >= threshold``.

    The default, 2, is the paper's: "judgments of our Libra-RM series are converted to the binary
    correctness label with a threshold of 2, consistent with the training process" (Table 9).  The
    paper does not say on which side 2 itself falls; ``>=`` reads "threshold of 2" literally and
    matches the template's rubric, where 2 is the lowest score "more or less aligned with what the
    prompt asks for" and 0-1 are "completely incorrect" / "mostly wrong".
    """
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 4:
        raise ValueError(f"a pointwise score is an int in 0-4, got {score!r}")
    return score >= threshold


def _score(label: str) -> int | None:
    score = int(label[label.index("=") + 1 :])
    return score if score <= 4 else None


@dataclass(frozen=True)
class VerdictSpan:
    """Where the verdict that a parser reads sits in the text: ``text[label_start:label_end]`` is its label
    (``score=4``, ``Correct``), ``text[label_end:end]`` the rest of its token (``]]``)."""

    label_start: int
    label_end: int
    end: int


_PATTERNS = {"pointwise": _POINTWISE, "pairwise": _PAIRWISE, "verification": _VERIFICATION}


def verdict_span(text: str, kind: str, *, strict: bool = False) -> VerdictSpan | None:
    """The span of the verdict ``parse_<kind>(text, strict=strict)`` reads (valid or not); None when there is
    none. The verdict-token confidence (``libra.eval.verdict_confidence``) rewrites the label in place."""
    if kind not in _PATTERNS:
        raise ValueError(f"kind must be one of {sorted(_PATTERNS)}, got {kind!r}")
    match = _match(text, _PATTERNS[kind], strict)
    return None if match is None else VerdictSpan(match.start(1), match.end(1), match.end())


def _parse(text: str, kind: str, pattern: re.Pattern[str], convert: Callable[[str], object], strict: bool
           ) -> Verdict:
    match = _match(text, pattern, strict)
    value = convert(match[1]) if match else None
    return Verdict(kind, value, value is not None)


def _match(text: str, pattern: re.Pattern[str], strict: bool) -> re.Match[str] | None:
    answer_start = text.rfind(_THINK_END)
    if answer_start >= 0:
        match = pattern.match(text, answer_start + len(_THINK_END))
        if match is None and not strict:
            match = pattern.match(text)
    elif strict and _THINK_START in text:  # thinking that never ended: there is no answer to read
        match = None
    else:
        match = pattern.match(text)
    return match
