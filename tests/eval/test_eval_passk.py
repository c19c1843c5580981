"""`libra eval passk`: the estimator against enumeration, end to end on real problem sets with a tiny policy,
generations and labels reused on reruns, failed answer checks retried and reported (never cached as wrong
answers), bad input, and one run on vLLM."""

import itertools
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from libra.cli import build_parser, main
from libra.data.sources import Problem
from libra.eval.passk import LabelStore, label_records, pass_at_k
from libra.models.tiny import save_tiny

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MATH500, AIME2025 = DATA / "math500" / "test.jsonl", DATA / "aime2025" / "test.jsonl"
HOSTILE = r"\boxed{9^{9^{9^{9^{9}}}}}"  # one big-integer power: the check times out (tests/verify/test_failures.py)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("policy"))


def _args(model, out, *problems, extra=()):
    problems = problems or (f"math500={MATH500}", f"aime2025={AIME2025}")
    return ["eval", "passk", *[a for p in problems for a in ("--problems", str(p))], "--model", str(model),
            "--engine", "hf", "--n", "4", "--k", "1,2,4", "--max-tokens", "12", "--limit", "2", "--workers", "1",
            "--out", str(out), "--no-progress", *extra]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_equals_enumeration_over_subsets(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(correct, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    exact = 1 - math.comb(100, 100) / math.comb(200, 100)  # 1 - 1/C(200,100): a binomial near 1e58
    assert pass_at_k(200, 100, 100) == pytest.approx(exact, abs=1e-15)
    assert pass_at_k(256, 3, 8) == pytest.approx(1 - math.comb(253, 8) / math.comb(256, 8), rel=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_end_to_end_then_relabel_without_regenerating(policy, tmp_path, capsys, counting_engine):
    out = tmp_path / "run"
    assert main(_args(policy, out)) == 0
    assert "pass@k of" in capsys.readouterr().out
    rows = _read(out / "predictions.jsonl")
    assert [r["subset"] for r in rows] == ["math500"] * 2 + ["aime2025"] * 2
    assert all(len(r["labels"]) == r["n"] == 4 for r in rows)
    assert matplotlib.image.imread(out / "passk.png").ndim == 3

    # New gold answers: each problem's gold becomes the answer its first sample gave, so some samples are
    # right. The prompts and ids are unchanged, so generations are reused; the labels are recomputed.
    golds = {r["id"]: next((a for a in r["answers"] if a), "no answer") for r in rows}
    files = []
    for name, source in (("math500", MATH500), ("aime2025", AIME2025)):
        lines = source.read_text().splitlines()[:2]
        recs = [json.loads(line) for line in lines]
        for number, rec in enumerate(recs, start=1):
            rec["answer"] = golds[f"{name}/{rec.get('unique_id', number)}"]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        files.append(f"{name}={path}")
    engine = counting_engine(policy)
    args = build_parser().parse_args(_args(policy, out, *files))
    assert args.func(args, engine=engine) == 0
    assert engine.prompts == 0
    rows = _read(out / "predictions.jsonl")
    assert sum(r["correct"] for r in rows) >= sum(any(r["answers"]) for r in rows) >= 1
    results = json.loads((out / "results.json").read_text())
    for r in rows:
        assert r["correct"] == sum(r["labels"])
        for k in (1, 2, 4):
            assert r[f"pass@{k}"] == pytest.approx(pass_at_k(4, r["correct"], k))
        assert r["pass@1"] == pytest.approx(np.mean(r["labels"]))
    for name, metrics in results["subsets"].items():
        mine = [r for r in rows if r["subset"] == name]
        for k in (1, 2, 4):
            assert metrics[f"pass@{k}"] == pytest.approx(np.mean([r[f"pass@{k}"] for r in mine]))
    assert results["mean"]["pass@4"] == pytest.approx(np.mean([m["pass@4"] for m in results["subsets"].values()]))
    assert results["subsets"]["math500"]["pass@1"] <= results["subsets"]["math500"]["pass@4"]

    labels_before = (out / "labels.jsonl").read_text()
    assert args.func(args, engine=engine) == 0  # everything cached: nothing generated, nothing verified again
    assert engine.prompts == 0 and (out / "labels.jsonl").read_text() == labels_before
    assert _read(out / "predictions.jsonl") == rows


def test_a_failed_check_is_retried_not_cached_as_a_wrong_answer(tmp_path):
    problems = [Problem("s", "p0", "question", "5", None)]
    records = [{"key": "g0", "id": "s/p0", "samples": [{"text": HOSTILE}, {"text": r"so \boxed{5}"}]}]
    path = tmp_path / "labels.jsonl"
    first = label_records(problems, records, LabelStore(path), timeout=1.0, workers=1, progress=False)
    assert LabelStore(path).records == {}  # nothing was decided about the hostile sample: its record is not cached
    assert [(r.labels, r.failures) for r in first] == [([False, True], ["timeout", None])]
    again = label_records(problems, records, LabelStore(path), timeout=1.0, workers=1, progress=False)
    assert again == first  # checked again, failed again: still reported, still not cached


def test_failed_checks_are_counted_in_results_and_table(policy, tmp_path, capsys, counting_engine):
    out, toy = tmp_path / "run", tmp_path / "toy.jsonl"
    toy.write_text(json.dumps({"problem": "What is 2+3?", "answer": "5"}) + "\n")
    argv = _args(policy, out, f"toy={toy}", extra=("--timeout", "1"))
    assert main(argv) == 0
    generations = _read(out / "generations.jsonl")
    # The same generation record, now with one check that fails; the others settle without the symbolic worker.
    for sample, text in zip(generations[0]["samples"], [HOSTILE] + [r"so \boxed{5}"] * 3):
        sample["text"] = text
    (out / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))
    (out / "labels.jsonl").unlink(missing_ok=True)
    capsys.readouterr()
    engine = counting_engine(policy)
    args = build_parser().parse_args(argv)
    assert args.func(args, engine=engine) == 0 and engine.prompts == 0
    results = json.loads((out / "results.json").read_text())
    assert results["check_failures"] == {"timeout": 1} and results["subsets"]["toy"]["check_failed"] == 1
    (row,) = _read(out / "predictions.jsonl")
    assert row["failures"] == ["timeout", None, None, None] and row["labels"] == [False, True, True, True]
    assert row["check_failed"] == 1 and row["pass@1"] == 0.75
    assert LabelStore(out / "labels.jsonl").records == {}  # the record holding the failed check is not cached
    report = (out / "report.md").read_text()
    assert "| check failed |" in report.splitlines()[2] and "1 answer check failed (timeout: 1)" in report
    assert "check failed" in capsys.readouterr().out


def test_bad_inputs_exit_2(policy, tmp_path, capsys):
    assert main(_args(policy, tmp_path / "o1", extra=("--k", "1,8"))) == 2
    assert "k > --n 4" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    assert main(_args(policy, tmp_path / "o2", f"toy={bad}")) == 2
    assert "bad.jsonl:2: answer: missing field" in capsys.readouterr().err
    assert main(_args(tmp_path / "no-model", tmp_path / "o3")) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(_args(policy, tmp_path / "o4", extra=("--prompt-template", "no placeholder")))
    assert "{question}" in capsys.readouterr().err


@pytest.mark.vllm
def test_passk_runs_on_vllm(tmp_path):
    out = tmp_path / "run"
    args = _args(save_tiny(tmp_path / "policy"), out)
    args[args.index("hf")] = "vllm"
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["subsets"]) == {"math500", "aime2025"}
    assert all(len(r["labels"]) == 4 for r in _read(out / "predictions.jsonl"))
