"""The judge kinds, in one place: for each, its built-in template, how its verdict is parsed, what a verdict
value means as an outcome comparable with a gold label, which labels exist, and the field a parsed value
goes to in predictions. Rewards, evaluation, the RL tasks and rejection sampling all read this table.

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
    JudgeKind("pointwise", "pointwise", parse_pointwise, score_to_label, (True, False), "score"),
    JudgeKind("verification", "verification", parse_verification, lambda correct, _t: correct, (True, False),
              "verdict"),
    JudgeKind("pairwise", "pairwise", parse_pairwise, lambda label, _t: preferred_side(label), ("A", "B", "tie"),
              "verdict"),
)}
# The kinds whose rows are one response with a correctness label (Libra Bench rows).
POINTWISE_KINDS = ("pointwise", "verification")


def judge_kind(name: str) -> JudgeKind:
    if name not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {name!r}")
    return KINDS[name]


def kind_of_template(template: str, default: str = "pointwise") -> str:
    """The kind a template's verdicts are read as: a built-in template's own kind, ``default`` for a file."""
    return template if template in KINDS else default
