"""Libra Bench metrics, as pure functions of labels and predictions.

Conventions shared by every function:

* ``label`` is True when the judged response is correct: correct is the positive class (paper, Table 3).
* ``pred`` is True / False, or None for an invalid judgment (no parsable verdict).  An invalid
  prediction is always wrong: it counts against accuracy, and for F1 it is a miss of its label's
  class but never a false alarm of the other class, since it predicted nothing.  Such predictions
  are counted apart (``invalid_pos`` / ``invalid_neg``) so that a judge's format failures stay
  visible instead of hiding among its false negatives.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from libra.judge.verdicts import preferred_side, score_to_label

SIDES = ("A", "B", "tie")
_UNSWAP = {"A": "B", "B": "A", "tie": "tie"}
_TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary judge against the labels; invalid predictions apart, by label."""

    tp: int
    tn: int
    fp: int
    fn: int
    invalid_pos: int
    invalid_neg: int

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn + self.invalid_pos + self.invalid_neg

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total

    @property
    def invalid_rate(self) -> float:
        return (self.invalid_pos + self.invalid_neg) / self.total

    @property
    def macro_f1(self) -> float:
        """Mean of the F1 of the correct class and of the incorrect class (paper, Table 3)."""
        f1_pos = _f1(hits=self.tp, false_alarms=self.fp, misses=self.fn + self.invalid_pos)
        f1_neg = _f1(hits=self.tn, false_alarms=self.fn, misses=self.fp + self.invalid_neg)
        return (f1_pos + f1_neg) / 2


def confusion(labels: Sequence[bool], preds: Sequence[bool | None]) -> Confusion:
    """The confusion counts of ``preds`` against ``labels``; ValueError on empty, unequal or non-bool input."""
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    if len(labels) == 0:
        raise ValueError("no labelled predictions to score")
    counts: dict[tuple[bool, bool | None], int] = defaultdict(int)
    for label, pred in zip(labels, preds):
        counts[_label(label), _pred(pred)] += 1
    return Confusion(
        tp=counts[True, True],
        tn=counts[False, False],
        fp=counts[False, True],
        fn=counts[True, False],
        invalid_pos=counts[True, None],
        invalid_neg=counts[False, None],
    )


def accuracy(labels: Sequence[bool], preds: Sequence[bool | None]) -> float:
    return confusion(labels, preds).accuracy


def macro_f1(labels: Sequence[bool], preds: Sequence[bool | None]) -> float:
    """Macro-F1; the F1 of a class with neither support nor predictions is 1.0, so a perfect judge scores 1.0."""
    return confusion(labels, preds).macro_f1


def invalid_rate(preds: Sequence[bool | None]) -> float:
    if len(preds) == 0:
        raise ValueError("no predictions")
    return sum(_pred(p) is None for p in preds) / len(preds)


def subset_report(rows: Sequence[Mapping]) -> dict:
    """Libra Bench scores of rows carrying ``subset``, ``label``, ``pred`` and optionally ``source_model``.

    ``average`` is the unweighted mean of the per-subset accuracies, the paper's "Average" column,
    so a large subset does not drown the small AIME ones; ``accuracy`` is over all rows.  Rows with
    no ``source_model`` (or None) are left out of the per-model breakdown only.
    """
    matrix = confusion([r["label"] for r in rows], [r["pred"] for r in rows])
    subsets = _group_accuracy(rows, "subset")
    return {
        "n": matrix.total,
        "accuracy": matrix.accuracy,
        "average": float(np.mean([s["accuracy"] for s in subsets.values()])),
        "subsets": subsets,
        "source_models": _group_accuracy([r for r in rows if r.get("source_model") is not None], "source_model"),
        "confusion": asdict(matrix),
        "macro_f1": matrix.macro_f1,
        "invalid_rate": matrix.invalid_rate,
    }


def bootstrap_ci(
    rows: Sequence[Mapping],
    metric: str | Callable[[Sequence[Mapping]], float],
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval (``1 - alpha``, default 95%) of ``metric`` over ``rows``.

    ``metric`` is a numeric key of ``subset_report`` ("average", "accuracy", "macro_f1",
    "invalid_rate") or a function of a list of rows.  Rows are resampled with replacement as a
    whole (not per subset), from a seeded numpy generator, so the interval is reproducible.
    """
    if n < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    if len(rows) == 0:
        raise ValueError("no rows to resample")
    score = (lambda sample: subset_report(sample)[metric]) if isinstance(metric, str) else metric
    rng = np.random.default_rng(seed)
    values = [score([rows[i] for i in rng.integers(0, len(rows), size=len(rows))]) for _ in range(n)]
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_difference_ci(a: Mapping[str, float], b: Mapping[str, float], n: int = 2000, seed: int = 0,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) over the same keys (judgments, problems),
    resampled together: the interval reflects how the two systems differ on these items, not only how
    many items there are. Bools count as 0/1."""
    if set(a) != set(b) or not a:
        raise ValueError(f"need the same non-empty keys on both sides, got {len(a)} and {len(b)} keys")
    keys = sorted(a)
    diff = np.array([float(a[k]) - float(b[k]) for k in keys])
    means = diff[np.random.default_rng(seed).integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def stratified_paired_ci(strata: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], n: int = 2000,
                         seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """``paired_difference_ci`` pooled over several independent sets (runs with other seeds, each on its own
    rows): every set's items are resampled within that set, so each keeps its size in every replicate, and
    the statistic is the mean difference over all items together."""
    if not strata:
        raise ValueError("need at least one stratum")
    diffs = []
    for a, b in strata:
        if set(a) != set(b) or not a:
            raise ValueError(f"need the same non-empty keys on both sides, got {len(a)} and {len(b)} keys")
        diffs.append(np.array([float(a[k]) - float(b[k]) for k in sorted(a)]))
    rng = np.random.default_rng(seed)
    total = sum(len(d) for d in diffs)
    sums = sum(d[rng.integers(0, len(d), size=(n, len(d)))].sum(axis=1) for d in diffs)
    low, high = np.quantile(sums / total, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def accuracy_at_thresholds(
    scores: Sequence[int | None], labels: Sequence[bool], thresholds: Iterable[int] = (1, 2, 3, 4)
) -> dict[int, float]:
    """Accuracy of pointwise 0-4 scores binarised as ``score >= t`` for each t; a None score is invalid."""
    return {t: accuracy(labels, [None if s is None else score_to_label(s, t) for s in scores]) for t in thresholds}


def best_threshold(
    scores: Sequence[float],
    labels: Sequence[bool],
    subsets: Sequence[Hashable],
    source_models: Sequence[str | None] | None = None,
) -> tuple[float, dict]:
    """The threshold on scalar RM scores that maximises the average-over-subsets accuracy, and its report.

    The paper's protocol for discriminative RMs (Table 2): predictions are ``score >= threshold``.
    Candidates are the smallest score (all judged correct), the midpoints between consecutive
    distinct scores, and the next float above the largest (all judged incorrect).  One sort and
    prefix sums give every candidate's average accuracy: each row weighs 1 / (its subset's size
    * number of subsets), so the sum of the weights of the rows judged right is that average.
    Ties (within 1e-12) go to the smallest threshold.  O(n log n).
    """
    s = np.asarray(scores, dtype=float)
    if not (len(s) == len(labels) == len(subsets)) or len(s) == 0:
        raise ValueError(
            f"need equal, non-zero numbers of scores, labels and subsets: {len(s)}, {len(labels)}, {len(subsets)}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    y = np.array([_label(label) for label in labels])
    index: dict[Hashable, int] = {}
    group = np.array([index.setdefault(subset, len(index)) for subset in subsets])
    sizes = np.bincount(group)
    weight = 1.0 / (sizes[group] * len(sizes))
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    right_if_correct = np.concatenate([[0.0], np.cumsum(np.where(y, weight, 0.0)[order])])
    right_if_wrong = np.concatenate([[0.0], np.cumsum(np.where(y, 0.0, weight)[order])])
    distinct = np.unique(ranked)
    candidates = np.concatenate(
        [distinct[:1], distinct[:-1] / 2 + distinct[1:] / 2, [np.nextafter(distinct[-1], np.inf)]]
    )
    below = np.searchsorted(ranked, candidates, side="left")  # rows judged incorrect at each candidate
    average = right_if_correct[-1] - right_if_correct[below] + right_if_wrong[below]
    # Equal averages can differ in the last bits after summing in different orders; genuinely different
    # ones differ by at least 1 / (subsets * lcm of subset sizes), far above this for benchmark sizes.
    threshold = float(candidates[np.flatnonzero(average >= average.max() - _TIE_TOLERANCE)[0]])
    models = source_models if source_models is not None else [None] * len(s)
    rows = [
        {"subset": subset, "source_model": model, "label": bool(label), "pred": bool(score >= threshold)}
        for subset, model, label, score in zip(subsets, models, y, s)
    ]
    return threshold, subset_report(rows)


def pairwise_report(items: Sequence[Mapping]) -> dict:
    """Pairwise-ranking scores of items judged in both orders.

    Each item has ``verdict_ab`` (the judge saw the pair as given), ``verdict_ba`` (the judge saw it
    swapped, so its "A" is the given B), each a label of ``PAIRWISE_LABELS`` or None when invalid,
    and ``better``: "A", "B" or "tie", in the given order.  A verdict is right when the side it
    prefers, un-swapped, equals ``better``: ``A=B`` is right only when the truth is a tie, and an
    invalid verdict is wrong.  Keys: ``accuracy`` (each order counted as its own judgment),
    ``accuracy_both`` (both orders right), ``consistency`` (both orders valid and preferring the
    same side once un-swapped, ties included) and ``invalid_rate`` (over the 2n verdicts).
    """
    if len(items) == 0:
        raise ValueError("no pairwise items to score")
    right = right_both = consistent = invalid = 0
    for item in items:
        better = item["better"]
        if better not in SIDES:
            raise ValueError(f"'better' must be one of {SIDES}, got {better!r}")
        ab = _side(item["verdict_ab"])
        ba = _side(item["verdict_ba"])
        ba = None if ba is None else _UNSWAP[ba]
        right += (ab == better) + (ba == better)
        right_both += ab == ba == better
        consistent += ab is not None and ab == ba
        invalid += (ab is None) + (ba is None)
    n = len(items)
    return {
        "n": n,
        "accuracy": right / (2 * n),
        "accuracy_both": right_both / n,
        "consistency": consistent / n,
        "invalid_rate": invalid / (2 * n),
    }


def _f1(hits: int, false_alarms: int, misses: int) -> float:
    """F1 of one class; 1.0 when the class has neither support nor predictions (no mistake possible)."""
    denominator = 2 * hits + false_alarms + misses
    return 1.0 if denominator == 0 else 2 * hits / denominator


def _group_accuracy(rows: Sequence[Mapping], key: str) -> dict:
    groups: dict[Hashable, list[Mapping]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return {
        name: {"n": len(members), "accuracy": accuracy([r["label"] for r in members], [r["pred"] for r in members])}
        for name, members in sorted(groups.items(), key=lambda kv: str(kv[0]))
    }


def _label(label: object, what: str = "label") -> bool:
    if label not in (True, False):
        raise ValueError(f"a {what} is a bool, got {label!r}")
    return bool(label)


def _pred(pred: object) -> bool | None:
    return None if pred is None else _label(pred, "prediction (or None)")


def _side(verdict: str | None) -> str | None:
    return None if verdict is None else preferred_side(verdict)
