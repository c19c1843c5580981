"""The judge kinds, in one place: for each, its built-in template, the row fields its prompt reads, how its
verdict is parsed, what a verdict value means as an outcome comparable with a gold label (and whether that
needs a score threshold), which labels exist, the verdict labels verdict-token confidence can write in the
verdict's place, and the field a parsed value goes to in predictions. Rewards, evaluation, the RL tasks and
rejection sampling all read this table: a new kind is one entry here (plus its parser and template).

    pointwise     [[score=N]] (0-4)       outcome: score >= threshold (bool)    labels: True / False
    verification  [[Correct]] / [[Wrong]] outcome: the verdict itself (bool)    labels: True / False
    pairwise      [[A>B]] ...             outcome: the preferred side           labels: "A" / "B" / "tie"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from libra.judge.verdicts import (
    DEFAULT_THRESHOLD,
    Verdict,
    parse_pairwise,
    parse_pointwise,
    parse_verification,
    preferred_side,
    score_to_label,
)


@dataclass(frozen=True)
class JudgeKind:
    name: str
    template: str  # the built-in template of this kind
    parser: Callable[..., Verdict]  # parser(text, strict=...) -> Verdict
    to_outcome: Callable[[object, int], object]  # (verdict value, threshold) -> a value comparable with a label
    labels: tuple  # the gold labels of this kind
    value_key: str  # the field of a parsed verdict value in predictions.jsonl
    row_fields: tuple[str, ...]  # what a row fills into the template besides the question
    uses_threshold: bool  # the outcome reads a score against a threshold (pointwise)
    candidates: tuple[str, ...] = ()  # verdict labels to score in the verdict's place (verdict-token confidence)

    def parse(self, text: str, *, strict: bool = False) -> Verdict:
        return self.parser(text, strict=strict)

    def outcome(self, value, threshold: int = DEFAULT_THRESHOLD):
        """The outcome of a parsed verdict value; None (an invalid verdict) stays None."""
        return None if value is None else self.to_outcome(value, threshold)

    def check_label(self, label) -> None:
        if type(label) is not type(self.labels[0]) or label not in self.labels:
            raise ValueError(f"a {self.name} label is one of {self.labels}, got {label!r}")

    def agrees(self, text: str, label, *, threshold: int = DEFAULT_THRESHOLD, strict: bool = False) -> bool:
        """Whether the verdict in ``text`` matches the gold ``label`` (an invalid verdict never does)."""
        verdict = self.parse(text, strict=strict)
        return verdict.valid and self.outcome(verdict.value, threshold) == label


KINDS: dict[str, JudgeKind] = {k.name: k for k in (
    JudgeKind("pointwise", "pointwise", parse_pointwise, score_to_label, (True, False), "score", ("response",),
              uses_threshold=True, candidates=tuple(f"score={s}" for s in range(5))),
    JudgeKind("verification", "verification", parse_verification, lambda correct, _t: correct, (True, False),
              "verdict", ("response", "reference"), uses_threshold=False, candidates=("Correct", "Wrong")),
    JudgeKind("pairwise", "pairwise", parse_pairwise, lambda label, _t: preferred_side(label), ("A", "B", "tie"),
              "verdict", ("response_a", "response_b"), uses_threshold=False),
)}
# A row field that may hold a number (a gold answer); every other field is text.
FIELD_TYPES = {"reference": (str, int, float)}
# The kinds whose rows are one response with a correctness label (Libra Bench rows).
POINTWISE_KINDS = tuple(name for name, kind in KINDS.items() if "response" in kind.row_fields)


def judge_kind(name: str) -> JudgeKind:
    if name not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {name!r}")
    return KINDS[name]


def kind_of_template(template: str, default: str = "pointwise") -> str:
    """The kind a template's verdicts are read as: a built-in template's own kind, ``default`` for a file."""
    return template if template in KINDS else default
