"""Rule-based RL rewards of Libra-RM (paper section 4.3, Eq. 3-4; constants from Appendix D).

    reward(x, y, y_gold) = is_correct(y, y_gold) - len_penalty(y)                      (Eq. 3)
    len_penalty(y) = max((|y| - L_exp) / (L_max - L_exp), 0), kept within [0, 1]       (Eq. 4)

is_correct is 1 when the outcome extracted from the response (a judge's verdict, or a reasoning
answer) matches the gold one, else 0, so a reward lies in [-1, 1].  The penalty is capped at 1
because, as the paper notes, responses longer than L_max are truncated.
"""

from __future__ import annotations

from libra.judge.kinds import judge_kind
from libra.judge.verdicts import DEFAULT_THRESHOLD, TRAINING_STRICT

L_EXP = 16384  # expected response length in tokens (Appendix D)
L_MAX = 32768  # maximum generated length in tokens during RL (Appendix D)


def _check_length(length: int, l_exp: int, l_max: int) -> None:
    if l_max <= l_exp:
        raise ValueError(f"l_max must exceed l_exp, got l_exp={l_exp}, l_max={l_max}")
    if length < 0:
        raise ValueError(f"length must be >= 0 tokens, got {length}")


def length_penalty(length: int, l_exp: int = L_EXP, l_max: int = L_MAX) -> float:
    """Eq. 4: the share of the buffer ``l_max - l_exp`` that ``length`` (tokens) uses up, clipped to [0, 1]."""
    _check_length(length, l_exp, l_max)
    return min(max((length - l_exp) / (l_max - l_exp), 0.0), 1.0)


def penalised_reward(is_correct: float, length: int, l_exp: int = L_EXP, l_max: int = L_MAX) -> float:
    """Eq. 3: the correctness term minus the length penalty. The term is 1 or 0 for a rule-based check; a
    judge reward blends verdicts into a value between (``libra.train.grpo.rollouts``)."""
    return float(is_correct) - length_penalty(length, l_exp, l_max)


def judging_reward(
    response_text: str,
    label: bool | str,
    *,
    length: int,
    kind: str = "pointwise",
    threshold: int = DEFAULT_THRESHOLD,
    l_exp: int = L_EXP,
    l_max: int = L_MAX,
    strict: bool = TRAINING_STRICT,
) -> float:
    """Eq. 3 for a judging rollout: 1 if its verdict matches ``label``, else 0, minus the length penalty.

    ``kind`` says which verdict to parse and what ``label`` is:
    "pointwise": the gold correctness (bool) of the judged response; the score is binarised with
    ``score_to_label(score, threshold)``, as in training (paper, Table 9);
    "pairwise": the better response, "A", "B" or "tie"; the verdict's strength (``>>`` vs ``>``)
    is not rewarded, since preference data records only which response is better;
    "verification": the gold correctness (bool).
    An invalid (unparsable) verdict is not correct. ``strict`` (the default): a thinking judge's verdict
    counts only after its ``</think>``, so a verdict left inside the reasoning earns nothing
    (``libra.judge.verdicts``).
    """
    _check_length(length, l_exp, l_max)
    judge = judge_kind(kind)
    judge.check_label(label)
    agrees = judge.agrees(response_text, label, threshold=threshold, strict=strict)
    return penalised_reward(agrees, length, l_exp, l_max)


def reasoning_reward(
    response_text: str,
    gold: str,
    *,
    length: int,
    timeout: float = 5.0,
    l_exp: int = L_EXP,
    l_max: int = L_MAX,
) -> float:
    """Eq. 3 for a reasoning rollout: 1 if its final answer verifies against ``gold``, else 0, minus the penalty."""
    _check_length(length, l_exp, l_max)  # before paying for verification
    from libra.verify import verify_answer  # lazy: keeps this module importable without the verifier's dependencies

    return penalised_reward(verify_answer(response_text, gold, timeout=timeout), length, l_exp, l_max)
