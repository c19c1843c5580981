"""Metrics on hand-computed examples, the threshold search against brute force, bootstrap determinism."""

import numpy as np
import pytest

from libra.eval.metrics import (
    Confusion,
    accuracy,
    accuracy_at_thresholds,
    best_threshold,
    bootstrap_ci,
    confusion,
    invalid_rate,
    macro_f1,
    pairwise_report,
    subset_report,
)

T, F = True, False


def test_confusion_counts_invalid_apart():
    labels = [T, T, T, F, F, F]
    preds = [T, F, None, F, T, None]
    assert confusion(labels, preds) == Confusion(tp=1, tn=1, fp=1, fn=1, invalid_pos=1, invalid_neg=1)
    assert accuracy(labels, preds) == pytest.approx(1 / 3)
    assert invalid_rate(preds) == pytest.approx(1 / 3)
    # each class: F1 = 2*1 / (2*1 + 1 false alarm + 2 misses, one of them the invalid) = 0.4
    assert macro_f1(labels, preds) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("labels", "preds", "expected"),
    [
        ([T, T, T, T, F, F], [T, T, T, F, T, F], (0.75 + 0.5) / 2),  # F1+ = 6/8, F1- = 2/4
        ([T, T], [T, T], 1.0),  # the absent class has no support and no predictions: F1 1.0
        ([T, T], [F, F], 0.0),
        ([F, F], [None, None], 0.5),  # invalid misses class F (F1 0) but is no false alarm of class T (F1 1)
    ],
)
def test_macro_f1(labels, preds, expected):
    assert macro_f1(labels, preds) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("labels", "preds", "message"),
    [
        ([T], [T, F], "1 labels but 2"),
        ([], [], "no labelled"),
        (["yes"], [T], "label is a bool"),
        ([T], ["x"], "prediction"),
    ],
)
def test_confusion_rejects_bad_input(labels, preds, message):
    with pytest.raises(ValueError, match=message):
        confusion(labels, preds)


def _row(subset, model, label, pred):
    return {"subset": subset, "source_model": model, "label": label, "pred": pred}


def test_subset_report_average_is_unweighted_over_subsets():
    rows = [
        _row("MATH-500", "m1", T, T),
        _row("MATH-500", "m1", F, F),
        _row("MATH-500", "m2", T, T),
        _row("MATH-500", "m2", F, T),
        _row("AIME2024", "m1", T, None),
        _row("AIME2024", None, F, F),
    ]
    report = subset_report(rows)
    assert report["subsets"] == {"AIME2024": {"n": 2, "accuracy": 0.5}, "MATH-500": {"n": 4, "accuracy": 0.75}}
    assert report["average"] == pytest.approx(0.625)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["source_models"] == {"m1": {"n": 3, "accuracy": 2 / 3}, "m2": {"n": 2, "accuracy": 0.5}}
    assert report["confusion"] == {"tp": 2, "tn": 2, "fp": 1, "fn": 0, "invalid_pos": 1, "invalid_neg": 0}
    assert report["invalid_rate"] == pytest.approx(1 / 6)
    assert report["n"] == 6


def _bench(n=300, seed=1):
    rng = np.random.default_rng(seed)
    return [
        _row(
            f"s{rng.integers(3)}",
            "m",
            bool(label),
            bool(label) if rng.random() < 0.7 else (None if rng.random() < 0.1 else not label),
        )
        for label in rng.random(n) < 0.5
    ]


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    rows = _bench()
    low, high = bootstrap_ci(rows, "average", n=200, seed=3)
    assert (low, high) == bootstrap_ci(rows, "average", n=200, seed=3)
    assert (low, high) != bootstrap_ci(rows, "average", n=200, seed=4)
    assert low < subset_report(rows)["average"] < high
    assert high - low < 0.2


def test_bootstrap_accepts_a_function():
    rows = _bench(50)
    low, high = bootstrap_ci(
        rows, lambda sample: accuracy([r["label"] for r in sample], [r["pred"] for r in sample]), n=100
    )
    assert (low, high) == pytest.approx(bootstrap_ci(rows, "accuracy", n=100))


@pytest.mark.parametrize(("kwargs", "message"), [({"n": 0}, "n >= 1"), ({"alpha": 1.0}, "alpha")])
def test_bootstrap_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(_bench(10), "accuracy", **kwargs)


def test_accuracy_at_thresholds():
    scores = [0, 1, 2, 3, 4, None]
    labels = [F, F, T, T, T, F]
    assert accuracy_at_thresholds(scores, labels) == pytest.approx({1: 4 / 6, 2: 5 / 6, 3: 4 / 6, 4: 3 / 6})


def test_best_threshold_separable():
    threshold, report = best_threshold([0.1, 0.4, 0.35, 0.8], [F, T, F, T], ["x"] * 4)
    assert threshold == pytest.approx(0.375)
    assert report["accuracy"] == 1.0


def test_best_threshold_maximises_the_average_not_the_pooled_accuracy():
    # t=0.925: a 2/2, b 3/6 -> average 0.75, pooled 5/8; t=0.3: a 1/2, b 5/6 -> average 0.67, pooled 6/8.
    scores = [0.9, 0.95, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7]
    labels = [F, T, F, F, T, T, T, F]
    threshold, report = best_threshold(scores, labels, ["a"] * 2 + ["b"] * 6)
    assert threshold == pytest.approx(0.925)
    assert report["average"] == pytest.approx(0.75)
    assert report["accuracy"] == pytest.approx(5 / 8)


def test_best_threshold_ties_go_to_the_smallest():
    # t=0 and t=1 both give a 2/3, b 1, c 1/3, but the weighted sums differ in the last bit
    scores = [2, 4, 2, 0, 4, 0, 2]
    threshold, report = best_threshold(scores, [T, F, F, T, T, F, T], ["a", "c", "a", "c", "b", "c", "a"])
    assert threshold == 0.0
    assert report["average"] == pytest.approx(2 / 3)


def _brute_force_average(scores, labels, subsets):
    candidates = [*np.unique(scores), np.inf]
    return max(
        subset_report([_row(sub, None, lab, bool(s >= t)) for s, lab, sub in zip(scores, labels, subsets)])["average"]
        for t in candidates
    )


@pytest.mark.parametrize("seed", range(8))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # few distinct values on even seeds, to exercise ties between rows
    scores = rng.integers(0, 6, n).astype(float) if seed % 2 == 0 else rng.normal(size=n)
    labels = [bool(x) for x in rng.random(n) < 1 / (1 + np.exp(-scores))]
    subsets = [f"s{k}" for k in rng.integers(0, 3, n)]
    threshold, report = best_threshold(scores, labels, subsets)
    assert report["average"] == pytest.approx(_brute_force_average(scores, labels, subsets))
    preds = [bool(s >= threshold) for s in scores]
    assert (
        report["confusion"]
        == subset_report([_row(sub, None, lab, p) for sub, lab, p in zip(subsets, labels, preds)])["confusion"]
    )


@pytest.mark.parametrize(
    ("scores", "labels", "subsets"), [([], [], []), ([1.0], [T, F], ["a"]), ([float("nan")], [T], ["a"])]
)
def test_best_threshold_rejects_bad_input(scores, labels, subsets):
    with pytest.raises(ValueError):
        best_threshold(scores, labels, subsets)


def test_pairwise_report():
    items = [
        {"verdict_ab": "A>B", "verdict_ba": "B>>A", "better": "A"},  # right twice, consistent
        {"verdict_ab": "A>B", "verdict_ba": "A>B", "better": "A"},  # right once: position bias
        {"verdict_ab": "A=B", "verdict_ba": "A=B", "better": "B"},  # consistent ties, both wrong
        {"verdict_ab": "A=B", "verdict_ba": None, "better": "tie"},  # right once, one invalid
    ]
    assert pairwise_report(items) == {
        "n": 4,
        "accuracy": 4 / 8,
        "accuracy_both": 1 / 4,
        "consistency": 2 / 4,
        "invalid_rate": 1 / 8,
    }


@pytest.mark.parametrize(
    "item",
    [
        {"verdict_ab": "A>B", "verdict_ba": "A>B", "better": "C"},
        {"verdict_ab": "A<B", "verdict_ba": None, "better": "A"},
    ],
)
def test_pairwise_report_rejects_bad_items(item):
    with pytest.raises(ValueError):
        pairwise_report([item])
