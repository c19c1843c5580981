"""How sure a judge is, and whether that certainty means anything: confidence from k sampled judgments,
AUROC, expected calibration error with its reliability bins, accuracy as a function of k, and a decision
threshold chosen on a calibration split.

A row's confidence is the share of its valid samples that judged the response correct, from the first k
samples (None when none is valid: the judge said nothing usable), written per row in predictions.jsonl.
The second confidence is the verdict token's probability of "correct" (``libra.eval.verdict_confidence``
computes it, per judgment, as ``p_correct``); a row's is the mean over its judgments. Both go through the
same ``calibration``. Everything here is a pure function of ``score_records``' per-row predictions, so it is
tested without an engine.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

KS = (1, 2, 4, 8)
BINS = 10
CALIBRATION_SEED = 0


def row_confidence(samples: Sequence[dict], k: int | None = None) -> float | None:
    """Share of the first ``k`` samples' valid predictions that say "correct" (None: none valid)."""
    preds = [s["pred"] for s in samples[:k] if s["pred"] is not None]
    return sum(preds) / len(preds) if preds else None


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(score of a correct response > score of an incorrect one), ties counting one half (the
    Mann-Whitney statistic from average ranks); None when one class is absent."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    start = 0
    while start < len(s):  # average ranks over runs of equal scores
        end = start
        while end + 1 < len(s) and sorted_s[end + 1] == sorted_s[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def reliability(confidence: Sequence[float], labels: Sequence[bool], bins: int = BINS) -> dict:
    """Equal-width bins over [0, 1] (1.0 in the last): per bin its count, mean confidence and share of
    correct responses; ECE = sum over bins of count / N * |share correct - mean confidence|."""
    c, y = np.asarray(confidence, dtype=float), np.asarray(labels, dtype=float)
    index = np.minimum((c * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        row = {"lo": b / bins, "hi": (b + 1) / bins, "count": n}
        if n:
            row.update(confidence=float(c[inside].mean()), accuracy=float(y[inside].mean()))
            ece += n / len(c) * abs(row["accuracy"] - row["confidence"])
        table.append(row)
    return {"ece": float(ece), "bins": table}


def _accuracy(preds: Sequence[bool | None], labels: Sequence[bool]) -> float:
    return sum(p is not None and p == y for p, y in zip(preds, labels)) / len(labels)


def accuracy_vs_k(per_row: Sequence[Sequence[dict]], ks: Sequence[int] = KS) -> dict:
    """For each k up to the samples per row: accuracy of the majority vote of the first k samples (a tie
    or no valid sample is wrong) and of the mean confidence (correct when >= 0.5; none valid is wrong)."""
    n = min(len(row) for row in per_row)
    labels = [row[0]["label"] for row in per_row]
    out = {}
    for k in (k for k in ks if k <= n):
        conf = [row_confidence(row, k) for row in per_row]
        vote = [None if c is None or c == 0.5 else c > 0.5 for c in conf]
        mean = [None if c is None else c >= 0.5 for c in conf]
        out[str(k)] = {"majority": _accuracy(vote, labels), "mean_confidence": _accuracy(mean, labels)}
    return out


def chosen_threshold(confidence: Sequence[float | None], labels: Sequence[bool], *,
                     seed: int = CALIBRATION_SEED) -> dict:
    """Split the rows in two halves (seeded); on the calibration half pick the confidence threshold
    (among its rows' confidences and 0.5, predicting "correct" at or above it) with the best accuracy; report the other
    half's accuracy at that threshold and at the fixed 0.5. Rows with no confidence are wrong either way."""
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    cal, held = order[: len(order) // 2], order[len(order) // 2:]

    def accuracy(rows, t):
        return _accuracy([None if confidence[i] is None else confidence[i] >= t for i in rows],
                         [labels[i] for i in rows]) if rows else 0.0

    candidates = sorted({confidence[i] for i in cal if confidence[i] is not None} | {0.5, 1.01})
    best = max(candidates, key=lambda t: (accuracy(cal, t), -abs(t - 0.5)))
    return {"threshold": best, "calibration_rows": len(cal), "evaluation_rows": len(held), "seed": seed,
            "accuracy_at_threshold": accuracy(held, best), "accuracy_at_0.5": accuracy(held, 0.5)}


def calibration(confidence: Sequence[float | None], labels: Sequence[bool]) -> dict:
    """AUROC, ECE with its bins and the chosen threshold of one confidence per row (None: the row has none,
    left out of AUROC and ECE, wrong at every threshold)."""
    scored = [(c, y) for c, y in zip(confidence, labels) if c is not None]
    return {"rows_without_confidence": sum(c is None for c in confidence),
            "auroc": auroc(*zip(*scored)) if scored else None,
            **(reliability(*zip(*scored)) if scored else {"ece": None, "bins": []}),
            "chosen_threshold": chosen_threshold(confidence, labels)}


def confidence_report(per_row: Sequence[Sequence[dict]]) -> dict:
    """The ``confidence`` section of results.json, from all samples of each row."""
    labels = [row[0]["label"] for row in per_row]
    return {"samples_per_row": min(len(row) for row in per_row),
            **calibration([row_confidence(row) for row in per_row], labels), "accuracy_vs_k": accuracy_vs_k(per_row)}


def row_verdict_confidence(samples: Sequence[dict]) -> float | None:
    """Mean verdict-token P(correct) (``p_correct``) over the row's samples that have one (None: none has)."""
    scores = [s["p_correct"] for s in samples if s.get("p_correct") is not None]
    return sum(scores) / len(scores) if scores else None


def verdict_confidence_report(per_row: Sequence[Sequence[dict]]) -> dict:
    """The ``verdict_confidence`` section of results.json (``libra.eval.verdict_confidence``):
    ``judgments_without_verdict`` counts those without a valid verdict (none, or an invalid one)."""
    labels = [row[0]["label"] for row in per_row]
    scored = [s for row in per_row for s in row if s.get("p_correct") is not None]
    return {"judgments_scored": len(scored),
            "judgments_without_verdict": sum(len(row) for row in per_row) - len(scored),
            "mean_verdict_mass": float(np.mean([s["verdict_mass"] for s in scored])) if scored else None,
            **calibration([row_verdict_confidence(row) for row in per_row], labels)}
