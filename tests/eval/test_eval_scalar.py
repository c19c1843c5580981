"""`libra eval scalar`: a tiny random sequence-classification RM end to end, threshold search against brute force,
resumable scores, batching, head validation and bad input."""

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from libra.cli import build_parser, main
from libra.eval.scalar import RewardScorer, average_accuracy
from libra.models.tiny import save_tiny


class CountingScorer(RewardScorer):
    """The real scorer, counting the rows it scores."""

    def __init__(self, model):
        super().__init__(str(model))
        self.rows = 0

    def score(self, pairs):
        self.rows += len(pairs)
        return super().score(pairs)


@pytest.fixture(scope="module")
def rm(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("rm"), num_labels=1)


def _bench(path: Path, count: int) -> Path:
    rows = [{"id": f"r{i}", "subset": ["math", "aime"][i % 2], "source_model": ["m1", "m2"][i % 3 == 0],
             "question": f"What is {i} + 1?",
             "response": f"Adding, we get \\boxed{{{i + 1 + (i % 3 == 0)}}}." * (i % 4 + 1),
             "label": i % 3 != 0} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(bench, model, out, *extra):
    return ["eval", "scalar", "--bench", str(bench), "--model", str(model), "--out", str(out), "--no-progress",
            "--batch-size", "4", *extra]


def _brute_force_average(scores, labels, subsets):
    """Best average-over-subsets accuracy over every threshold that can change a prediction."""
    best = 0.0
    for t in [*scores, np.inf]:
        accs = [np.mean([(s >= t) == y for s, y, g in zip(scores, labels, subsets) if g == name])
                for name in set(subsets)]
        best = max(best, float(np.mean(accs)))
    return best


def test_end_to_end_threshold_search_and_files(rm, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(_bench(tmp_path / "bench.jsonl", 14), rm, out, "--threshold", "0.0")) == 0
    assert "Scalar RM" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    scores, labels, subsets = [r["score"] for r in rows], [r["label"] for r in rows], [r["subset"] for r in rows]
    best = results["best_threshold"]
    assert best["average"] == pytest.approx(_brute_force_average(scores, labels, subsets), abs=1e-12)
    for name, sub in best["subsets"].items():
        members = [r for r in rows if r["subset"] == name]
        assert sub["accuracy"] == pytest.approx(np.mean([r["pred_best"] == r["label"] for r in members]))
        assert all(r["pred_best"] == (r["score"] >= best["threshold"]) for r in members)
    fixed = results["fixed_threshold"]
    assert fixed["accuracy"] == pytest.approx(np.mean([(r["score"] >= 0.0) == r["label"] for r in rows]))
    assert all(r["pred_fixed"] == (r["score"] >= 0.0) for r in rows)
    curve = average_accuracy(scores, labels, subsets, [best["threshold"], *scores])
    assert curve[0] == pytest.approx(best["average"]) and curve.max() == pytest.approx(best["average"])
    for png in ("scores.png", "threshold.png"):
        assert matplotlib.image.imread(out / png).ndim == 3
    report = (out / "report.md").read_text()
    assert "chosen on this same data" in report
    assert report.splitlines()[2] == "| threshold | aime | math | Average | accuracy | macro-F1 |"


def test_rerun_scores_only_missing_rows(rm, tmp_path):
    bench, out = _bench(tmp_path / "bench.jsonl", 6), tmp_path / "run"
    assert main(_args(bench, rm, out)) == 0
    first = [json.loads(line)["score"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    scorer = CountingScorer(rm)
    _bench(bench, 9)
    args = build_parser().parse_args(_args(bench, rm, out))
    assert args.func(args, scorer=scorer) == 0
    assert scorer.rows == 3
    again = [json.loads(line)["score"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert again[:6] == first and len(again) == 9
    assert args.func(args, scorer=scorer) == 0 and scorer.rows == 3


def test_batched_scores_equal_single_scores_and_pad_ending_rows_read_the_last_token(rm):
    scorer = RewardScorer(str(rm))
    pairs = [("What is 1 + 1?", "2"), ("Compute the sum of the units digits.", "The answer is \\boxed{42}." * 5),
             ("q", "the lazy dog")]
    batched = scorer.score(pairs)
    assert batched == pytest.approx([scorer.score([p])[0] for p in pairs], abs=1e-5)
    scorer.tokenizer.chat_template = None  # plain concatenation: a response may now end in the pad token itself
    ids = scorer.encode("q", "ends with pad<|endoftext|>")
    assert ids[-1] == scorer.pad_id
    with torch.inference_mode():
        hidden = scorer.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        expected = float(scorer.model.score(hidden)[0])
    got = scorer.score([("q", "short"), ("q", "ends with pad<|endoftext|>")])[1]
    assert got == pytest.approx(expected, abs=1e-5)


def test_multi_logit_head_needs_a_logit_index(tmp_path, capsys):
    two = save_tiny(tmp_path / "rm2", num_labels=2)
    bench = _bench(tmp_path / "bench.jsonl", 4)
    assert main(_args(bench, two, tmp_path / "o1")) == 2
    assert "head has 2 logit(s); pass --logit-index 0..1" in capsys.readouterr().err
    assert main(_args(bench, two, tmp_path / "o2", "--logit-index", "1")) == 0
    assert json.loads((tmp_path / "o2" / "results.json").read_text())["logit_index"] == 1


def test_bad_inputs_exit_2_with_a_location(rm, tmp_path, capsys):
    bench = _bench(tmp_path / "bench.jsonl", 3)
    lines = bench.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1].replace('"label": true', '"label": "maybe"'), lines[2]]) + "\n")
    assert main(_args(bad, rm, tmp_path / "o1")) == 2
    assert "bad.jsonl:2: label: not a correctness label" in capsys.readouterr().err
    assert main(_args(bench, tmp_path / "missing", tmp_path / "o2")) == 2
    assert "does not exist" in capsys.readouterr().err
