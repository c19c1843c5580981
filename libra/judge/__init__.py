"""The judge side of Libra: prompt templates (paper Figs. 5-7), verdict parsing and the judge kinds."""

from libra.judge.kinds import KINDS, POINTWISE_KINDS, JudgeKind, judge_kind, kind_of_template
from libra.judge.templates import BUILTIN, FIELDS, REASONING_PROMPT, list_templates, render, template_fields
from libra.judge.verdicts import (
    DEFAULT_THRESHOLD,
    PAIRWISE_LABELS,
    VERDICT_MODES,
    Verdict,
    parse_pairwise,
    parse_pointwise,
    parse_verification,
    preferred_side,
    score_to_label,
)

__all__ = [
    "BUILTIN",
    "DEFAULT_THRESHOLD",
    "FIELDS",
    "KINDS",
    "PAIRWISE_LABELS",
    "POINTWISE_KINDS",
    "REASONING_PROMPT",
    "VERDICT_MODES",
    "JudgeKind",
    "Verdict",
    "judge_kind",
    "kind_of_template",
    "list_templates",
    "parse_pairwise",
    "parse_pointwise",
    "parse_verification",
    "preferred_side",
    "render",
    "score_to_label",
    "template_fields",
]
