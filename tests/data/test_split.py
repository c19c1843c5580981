"""`libra data split`: judging rows into training rows and a held-out bench with no problem on both sides."""

import json

import pytest

from libra.cli import main
from libra.data.split import problem_of, split_by_problem, split_counts


def _rows():
    """Three responses to each of 12 MATH problems (one with re-wrapped whitespace) and 4 AIME problems."""
    rows = []
    for subset, problems in (("math500", 12), ("aime2024", 4)):
        for p in range(problems):
            for k in range(3):
                question = f"Problem {p} of {subset}:  find x." if k != 1 else f"Problem {p} of {subset}: find\nx."
                rows.append({"id": f"{subset}/{p}/{k}", "subset": subset, "question": question,
                             "response": f"answer {k}", "label": k % 2 == 0})
    return rows


def test_split_holds_out_whole_problems_per_subset():
    rows = _rows()
    train, bench = split_by_problem(rows, bench_fraction=0.25, seed=3)
    assert len(train) + len(bench) == len(rows)
    assert not {problem_of(r) for r in train} & {problem_of(r) for r in bench}
    counts = split_counts(train, bench)
    assert counts["shared_problems"] == 0
    assert counts["bench"]["math500"]["problems"] == 3 and counts["bench"]["aime2024"]["problems"] == 1
    assert counts["bench"]["math500"]["rows"] == 9  # every response to a held-out problem, re-wrapped one included
    assert [r["id"] for r in train] == [r["id"] for r in rows if r in train]  # input order kept
    assert split_by_problem(rows, bench_fraction=0.25, seed=3) == (train, bench)
    assert split_by_problem(rows, bench_fraction=0.25, seed=4) != (train, bench)


def test_split_keeps_both_sides_of_a_small_subset():
    rows = [r for r in _rows() if r["subset"] == "aime2024"]
    for fraction, held in ((0.01, 1), (0.99, 3), (0.0, 0)):
        _, bench = split_by_problem(rows, bench_fraction=fraction)
        assert len({problem_of(r) for r in bench}) == held
    with pytest.raises(ValueError, match="bench_fraction"):
        split_by_problem(rows, bench_fraction=1.5)


def test_split_command_writes_both_files(tmp_path, capsys):
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    train_out, bench_out = tmp_path / "train.jsonl", tmp_path / "bench.jsonl"
    assert main(["data", "split", "--rows", str(rows_file), "--bench-fraction", "0.5", "--train-out", str(train_out),
                 "--bench-out", str(bench_out)]) == 0
    train = [json.loads(line) for line in train_out.read_text().splitlines()]
    bench = [json.loads(line) for line in bench_out.read_text().splitlines()]
    assert len(train) + len(bench) == 48 and not {problem_of(r) for r in train} & {problem_of(r) for r in bench}
    out = capsys.readouterr().out
    assert "bench: aime2024 6 rows / 2 problems, math500 18 rows / 6 problems" in out
    assert "problems on both sides: 0" in out
    (tmp_path / "bad.jsonl").write_text('{"subset": "x", "response": "r", "label": true}\n')
    assert main(["data", "split", "--rows", str(tmp_path / "bad.jsonl"), "--train-out", str(train_out),
                 "--bench-out", str(bench_out)]) == 2
    assert "question" in capsys.readouterr().err
