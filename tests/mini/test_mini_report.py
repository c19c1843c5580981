"""The statistics behind the report: the paired bootstrap of its "status" column (per run, and pooled over
seeds), the rank correlation of the downstream study and best-of-n, each checked against a computation done
another way; and the targets a run states for itself."""
import itertools

import numpy as np
import pytest

from libra.eval.metrics import paired_difference_ci, stratified_paired_ci
from libra.mini.downstream import best_of_n, pass_at_1
from libra.mini.report import CLAIMS, met, spearman, status


def test_paired_difference_interval():
    same = {str(i): i % 3 == 0 for i in range(200)}
    assert paired_difference_ci(same, same) == (0.0, 0.0)
    better = {k: True for k in same}
    low, high = paired_difference_ci(better, same)
    assert 0 < low < 2 / 3 < high < 1
    slightly = dict(same, **{"1": True})  # one judgment out of 200: no evidence either way
    low, high = paired_difference_ci(slightly, same)
    assert low <= 0 < high
    assert status(0.005, (low, high), 0.0) == "not shown (CI spans 0)" and status(0.3, (0.2, 0.4), 0.0) == "shown"
    assert status(-0.1, (-0.2, -0.05), 0.0) == "opposite shown"
    assert status(0.03, (0.01, 0.05), 5.0) == "shown, below the +5 target"
    assert met(0.06, (0.01, 0.1), 5.0) and not met(0.04, (0.01, 0.1), 5.0) and not met(0.3, (-0.01, 0.5), 0.0)


def test_pooled_interval_resamples_within_each_seed():
    """Pooled over two seeds of different sizes, the interval is that of the mean over all items; a stratum
    with no difference narrows it, and a single stratum gives ``paired_difference_ci`` exactly."""
    a = {str(i): float(i % 2) for i in range(100)}
    b = {k: 0.0 for k in a}
    assert stratified_paired_ci([(a, b)]) == pytest.approx(paired_difference_ci(a, b))
    same = {str(i): 0.5 for i in range(300)}
    low, high = stratified_paired_ci([(a, b), (same, same)])
    assert low < 50 / 400 < high and high - low < 0.5 * (paired_difference_ci(a, b)[1] - paired_difference_ci(a, b)[0])
    with pytest.raises(ValueError, match="same non-empty keys"):
        stratified_paired_ci([(a, {})])


def test_best_of_n_expects_a_uniform_pick_among_the_samples_judged_correct(tmp_path):
    import json

    samples = [{"id": f"p#{k}", "problem_id": "p", "label": ok} for k, ok in enumerate((True, False, False, True))]
    samples += [{"id": f"q#{k}", "problem_id": "q", "label": ok} for k, ok in enumerate((False, True))]
    preds = [{"id": "p#0", "valid": True, "pred": True}, {"id": "p#1", "valid": True, "pred": True},
             {"id": "p#2", "valid": True, "pred": False}, {"id": "p#3", "valid": False, "pred": None},
             {"id": "q#0", "valid": True, "pred": False}, {"id": "q#1", "valid": True, "pred": False}]
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    # p: picks among p#0 (right) and p#1 (wrong); q: nothing judged correct, so any of its two samples.
    assert best_of_n(samples, path) == {"p": 0.5, "q": 0.5}


def _spearman_by_pairs(x, y):
    """Spearman without ties, from its definition 1 - 6 sum d^2 / (n (n^2 - 1))."""
    def rank(v):
        return {value: r for r, value in enumerate(sorted(v))}
    rx, ry = rank(x), rank(y)
    n = len(x)
    return 1 - 6 * sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y)) / (n * (n * n - 1))


def test_spearman_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    for n in (3, 4, 6):
        for _ in range(20):
            x, y = rng.permutation(100)[:n].tolist(), rng.permutation(100)[:n].tolist()
            assert spearman(x, y) == pytest.approx(_spearman_by_pairs(x, y))
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    # Ties take their average rank: Pearson on ranks (1.5, 1.5, 3) and (1, 2, 3).
    assert spearman([5, 5, 9], [1, 2, 3]) == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])


def test_pass_at_1_and_its_paired_difference_ci():
    rows = [{"problem_id": p, "label": ok} for p, ok in itertools.product("ab", (True, False))]
    rows += [{"problem_id": "c", "label": True}] * 2
    assert pass_at_1(rows) == {"a": 0.5, "b": 0.5, "c": 1.0}
    base = {str(i): 0.25 for i in range(100)}
    better = {k: 0.75 for k in base}
    assert paired_difference_ci(better, base) == pytest.approx((0.5, 0.5))
    noisy = {k: (1.0 if int(k) % 2 else 0.0) for k in base}
    low, high = paired_difference_ci(noisy, base)
    assert low < 0.25 < high
    with pytest.raises(ValueError, match="same non-empty keys"):
        paired_difference_ci({"a": 1.0}, {"b": 1.0})


def test_rows_not_judgments_are_paired_when_judges_sample_differently(tmp_path):
    """A thinking judge sampled twice per row and a direct one judged once are compared row by row: each row
    counts its share of right judgments, so the difference is the difference of the two accuracies."""
    import json

    from libra.mini.report import right_per_row

    def write(variant, rows):
        folder = tmp_path / "eval" / variant
        folder.mkdir(parents=True)
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    labels = {"r1": True, "r2": False, "r3": True}
    write("thinking", [{"id": i, "sample": k, "label": labels[i], "pred": pred}
                       for i, preds in (("r1", (True, False)), ("r2", (False, None)), ("r3", (True, True)))
                       for k, pred in enumerate(preds)])
    write("direct", [{"id": i, "sample": 0, "label": labels[i], "pred": True} for i in labels])
    thinking, direct = right_per_row(tmp_path, "thinking"), right_per_row(tmp_path, "direct")
    assert thinking == {"r1": 0.5, "r2": 0.5, "r3": 1.0}  # an invalid verdict (None) is wrong
    assert direct == {"r1": 1.0, "r2": 0.0, "r3": 1.0}
    low, high = paired_difference_ci(thinking, direct)
    assert low <= (4 / 6 - 2 / 3) <= high


def _results(claims, invalid=0.05, judges=None, rho=0.5, rho_bon=0.9, flags=(0.95, 0.93)):
    """A results dict as ``collect`` writes it, with only what ``targets`` reads."""
    accuracy = {"base": 0.1, "direct-sft": 0.5, "thinking-sft": 0.6, "rl-zero": 0.55, "sft-rl": 0.7, "teacher": 0.65}
    margins = {(better, worse): target for better, worse, _, target in CLAIMS}
    judges = judges or {}
    return {"claims": [{"better": b, "worse": w, "difference": d, "ci95": list(ci), "target_points": margins[(b, w)]}
                       for (b, w), (d, ci) in claims.items()],
            "variants": {n: {"accuracy": a, "invalid_rate": invalid if n == "rl-zero" else 0.0}
                         for n, a in accuracy.items()},
            "thinking_check": {"thinking-sft": {"flags_right_equal": flags[0], "flags_right_differ": flags[1]}},
            "downstream": {"untrained_pass_at_1": 0.40, "judges": judges,
                           "spearman_bench_accuracy_vs_pass_at_1": rho, "spearman_bench_accuracy_vs_best_of_n": rho_bon,
                           "spearman_judges": [n for n, j in judges.items() if n in accuracy and "pass_at_1" in j]}}


CLAIMS_MEASURED = {("sft-rl", "thinking-sft"): (0.049, (0.01, 0.09)),  # CI above 0 but under the 5-point margin
                   ("rl-zero", "base"): (0.45, (0.40, 0.50)), ("sft-rl", "rl-zero"): (0.15, (0.08, 0.21)),
                   ("thinking-sft", "direct-sft"): (0.08, (-0.01, 0.17)),  # above the margin, CI spans 0
                   ("sft-rl", "teacher"): (0.05, (0.001, 0.1))}


def test_targets_state_each_measured_number_and_whether_it_is_met():
    from libra.mini.report import targets

    # The best judge on the bench is sft-rl (0.7), not the one with the best pass@1 (thinking-sft).
    judges = {"thinking-sft": {"pass_at_1": 0.60, "vs_untrained_ci95": [0.1, 0.3]},
              "sft-rl": {"pass_at_1": 0.42, "vs_untrained_ci95": [-0.01, 0.05]},
              "gold": {"pass_at_1": 0.7, "vs_untrained_ci95": [0.2, 0.4]}, "base": {"pairs": 0}}
    got = {t["target"]: t for t in targets(_results(dict(CLAIMS_MEASURED), judges=judges), 601.0, 600)}
    assert {k: t["met"] for k, t in got.items()} == {
        "thinking-sft beats direct-sft by >= 5 points, CI > 0": False,
        "sft-rl beats thinking-sft by >= 5 points, CI > 0": False, "rl-zero beats base by >= 10 points, CI > 0": True,
        "rl-zero invalid verdicts <= 10.0%": True, "sft-rl beats rl-zero, CI > 0": True,
        "sft-rl beats teacher, CI > 0": True,
        "thinking-sft flags right >= 90% on equal and on differing numbers": True,
        "DPO on gold-labelled pairs beats the untrained policy, CI > 0": True,
        "the best judge's DPO policy beats the untrained policy, CI > 0": False,
        "Spearman(bench accuracy, pass@1 after DPO) >= 0.6": False,
        "Spearman(bench accuracy, best-of-n pass@1) >= 0.8": True, "wall time <= 600 s": False}
    assert got["sft-rl beats thinking-sft by >= 5 points, CI > 0"]["measured"] == "+4.9 (+1.0 to +9.0)"
    assert got["the best judge's DPO policy beats the untrained policy, CI > 0"]["measured"].startswith("sft-rl: +2.0")
    assert got["DPO on gold-labelled pairs beats the untrained policy, CI > 0"]["measured"] == "+30.0 (+20.0 to +40.0)"
    assert got["wall time <= 600 s"]["measured"] == "601 s"


def test_targets_without_pairs_or_correlation_are_not_met():
    from libra.mini.report import targets

    claims = {**CLAIMS_MEASURED, ("sft-rl", "thinking-sft"): (0.05, (0.01, 0.09))}
    none = targets(_results(claims, invalid=0.11, rho=None, flags=(1.0, 0.85), judges={"gold": {"pairs": 0}}), 600.0,
                   600)
    met_ = {t["target"]: t["met"] for t in none}
    assert met_["sft-rl beats thinking-sft by >= 5 points, CI > 0"] and met_["wall time <= 600 s"]
    assert not met_["rl-zero invalid verdicts <= 10.0%"]
    assert not met_["Spearman(bench accuracy, pass@1 after DPO) >= 0.6"]
    assert not met_["thinking-sft flags right >= 90% on equal and on differing numbers"]
    assert [t["measured"] for t in none if "DPO policy" in t["target"]] == ["no judge produced DPO pairs"]
    assert [t["measured"] for t in none if "gold" in t["target"]] == ["no pairs"]
