"""The judge side of Libra: prompt templates (paper Figs. 5-7) and verdict parsing."""

from libra.judge.templates import BUILTIN, FIELDS, list_templates, render, template_fields
from libra.judge.verdicts import (
    DEFAULT_THRESHOLD,
    PAIRWISE_LABELS,
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
    "PAIRWISE_LABELS",
    "Verdict",
    "list_templates",
    "parse_pairwise",
    "parse_pointwise",
    "parse_verification",
    "preferred_side",
    "render",
    "score_to_label",
    "template_fields",
]
