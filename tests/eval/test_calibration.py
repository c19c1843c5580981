"""Confidence metrics against independent computations: AUROC by counting pairs, ECE by hand, accuracy
against k and the chosen threshold on small cases worked out here."""
import itertools
import random

import pytest

from libra.eval.calibration import (
    accuracy_vs_k,
    auroc,
    chosen_threshold,
    confidence_report,
    reliability,
    row_confidence,
)


def _pairs_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)) / (len(pos) * len(neg))


def test_auroc_equals_counting_pairs_with_ties():
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(2, 30)
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]) for _ in range(n)]
        labels = [rng.random() < 0.5 for _ in range(n)]
        if all(labels) or not any(labels):
            assert auroc(scores, labels) is None
            continue
        assert auroc(scores, labels) == pytest.approx(_pairs_auroc(scores, labels))
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, False, False]) == 0.0


def test_ece_by_hand():
    # bins of width 0.5: [0, 0.5) holds 0.2, 0.4 (labels F, T): mean conf 0.3, accuracy 0.5 -> |0.2| * 2/5
    # [0.5, 1] holds 0.6, 0.8, 1.0 (T, T, F): mean conf 0.8, accuracy 2/3 -> |0.1333| * 3/5
    out = reliability([0.2, 0.4, 0.6, 0.8, 1.0], [False, True, True, True, False], bins=2)
    assert out["ece"] == pytest.approx(0.2 * 2 / 5 + (0.8 - 2 / 3) * 3 / 5)
    assert [b["count"] for b in out["bins"]] == [2, 3]
    assert out["bins"][1]["confidence"] == pytest.approx(0.8) and out["bins"][0]["accuracy"] == 0.5
    assert reliability([1.0, 1.0], [True, True], bins=10)["ece"] == 0.0


def _row(label, preds):
    return [{"label": label, "pred": p} for p in preds]


def test_accuracy_vs_k_and_row_confidence():
    rows = [_row(True, [True, False, True, True]),    # k=1 T ok; k=2 tie (vote wrong, mean 0.5 -> T ok); k=4 T
            _row(False, [True, False, False, None]),  # k=1 wrong; k=2 tie -> vote wrong, mean T wrong; k=4 1/3 -> F ok
            _row(True, [None, None, None, None])]     # never valid: wrong everywhere
    assert row_confidence(rows[1]) == pytest.approx(1 / 3) and row_confidence(rows[2]) is None
    assert row_confidence(rows[0], 2) == 0.5
    out = accuracy_vs_k(rows, ks=(1, 2, 4, 8))
    assert list(out) == ["1", "2", "4"]  # k = 8 > 4 samples per row
    assert out["1"] == {"majority": pytest.approx(1 / 3), "mean_confidence": pytest.approx(1 / 3)}
    assert out["2"] == {"majority": 0.0, "mean_confidence": pytest.approx(1 / 3)}
    assert out["4"] == {"majority": pytest.approx(2 / 3), "mean_confidence": pytest.approx(2 / 3)}


def test_the_threshold_is_chosen_on_one_half_and_measured_on_the_other():
    # a judge that is right only above 0.7: correct responses have confidence 0.8-1.0, incorrect 0.5-0.7
    rng = random.Random(0)
    labels = [i % 2 == 0 for i in range(200)]
    conf = [rng.uniform(0.8, 1.0) if y else rng.uniform(0.5, 0.7) for y in labels]
    t = chosen_threshold(conf, labels, seed=1)
    assert 0.8 <= t["threshold"] < 0.85  # the lowest correct confidence of the calibration half
    assert t["accuracy_at_threshold"] == 1.0 and t["accuracy_at_0.5"] == pytest.approx(0.5, abs=0.08)
    assert t["calibration_rows"] == t["evaluation_rows"] == 100


def test_confidence_report_on_score_records_rows():
    rows = [_row(True, [True, True]), _row(False, [False, True]), _row(False, [None, None])]
    for row in rows:
        for i, s in enumerate(row):
            s.update(id="x", subset="s", source_model="m", sample=i)
    rep = confidence_report(rows)
    assert rep["samples_per_row"] == 2 and rep["rows_without_confidence"] == 1
    assert rep["auroc"] == 1.0  # 1.0 (correct) vs 0.5 (incorrect); the row with no valid sample is left out
    assert rep["accuracy_vs_k"]["2"]["majority"] == pytest.approx(1 / 3)
