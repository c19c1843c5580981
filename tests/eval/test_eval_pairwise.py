"""`libra eval pairwise`: JudgeBench loading, both-orders bookkeeping, end to end with a tiny judge, resume,
bad input."""

import json
from pathlib import Path

import matplotlib.image
import pytest

from libra.cli import build_parser, main
from libra.eval.metrics import pairwise_report
from libra.eval.pairwise import Pair, category, judge_requests, load_pairs, predictions
from libra.models.tiny import save_tiny

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
JUDGEBENCH = sorted((DATA / "judgebench").glob("*.jsonl"))


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("judge"))


def _pairs_file(path: Path, count: int) -> Path:
    rows = [{"pair_id": f"p{i}", "source": ["mmlu-pro-law", "livebench-math", "livecodebench"][i % 3],
             "question": f"What is {i} + {i}?", "response_A": f"It is {2 * i}.", "response_B": f"It is {2 * i + 1}.",
             "label": "A>B" if i % 2 == 0 else "B>A"} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(data, model, out, *extra):
    return ["eval", "pairwise", "--data", str(data), "--model", str(model), "--engine", "hf", "--max-tokens", "4",
            "--out", str(out), "--no-progress", *extra]


def test_judgebench_files_load_with_their_labels_and_categories():
    assert len(JUDGEBENCH) == 2
    pairs = load_pairs(JUDGEBENCH)  # both files at once: pair ids are unique across them
    assert len(pairs) == 350 + 270
    assert {p.better for p in pairs} == {"A", "B"} and {p.label for p in pairs} == {"A>B", "B>A"}
    assert sum(p.better == "A" for p in pairs) == 193 + 143
    assert {category(p.source) for p in pairs} == {"knowledge", "reasoning", "math", "coding"}
    assert sum(category(p.source) == "knowledge" for p in pairs) == 2 * 154


def test_both_orders_are_swapped_and_scored_after_unswapping():
    pairs = [Pair("p1", "s", "q", "good", "bad", "A>B", "A"), Pair("p2", "s", "q", "bad", "good", "B>>A", "B"),
             Pair("p3", "t", "q", "good", "bad", "A>B", "A")]
    requests = judge_requests(pairs[0], "pairwise", {"question", "response_a", "response_b"})
    assert [r.sample_id for r in requests] == ["p1:ab", "p1:ba"]
    ab, ba = (r.prompt[0]["content"] for r in requests)
    assert ab.index("good") < ab.index("bad") and ba.index("bad") < ba.index("good")
    texts = [("[[A>B]]", "verdict: [[B>>A]]"),  # right in both orders (the swapped B is the given A)
             ("[[A>B]]", "[[A > B]]"),  # wrong as given, right swapped: inconsistent
             ("no verdict", "[[A=B]]")]  # invalid, then a tie where A is better: wrong
    records = [{"samples": [{"text": t, "finish_reason": "stop"}]} for pair in texts for t in pair]
    rows = predictions(pairs, records)
    assert [(r["verdict_ab"], r["verdict_ba"]) for r in rows] == [("A>B", "B>>A"), ("A>B", "A>B"), (None, "A=B")]
    assert pairwise_report(rows) == {"n": 3, "accuracy": 3 / 6, "accuracy_both": 1 / 3, "consistency": 1 / 3,
                                     "invalid_rate": 1 / 6}


def test_end_to_end_outputs_agree_and_rerun_generates_only_new_pairs(judge, tmp_path, capsys, counting_engine):
    data, out = _pairs_file(tmp_path / "pairs.jsonl", 4), tmp_path / "run"
    assert main(_args(data, judge, out)) == 0
    assert "Pairwise judging" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    generations = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [g["id"] for g in generations] == [f"p{i}:{o}" for i in range(4) for o in ("ab", "ba")]
    assert results["pairs"] == 4 and results["overall"] == pairwise_report(rows)
    for source, report in results["by_source"].items():
        assert report == pairwise_report([r for r in rows if r["source"] == source])
    assert set(results["by_category"]) == {"knowledge", "math", "coding"}
    assert results["truncated_rate"] == sum(r[f"finish_{o}"] == "length" for r in rows for o in ("ab", "ba")) / 8
    assert matplotlib.image.imread(out / "pairwise.png").shape[2] in (3, 4)
    assert "| overall | 4 |" in (out / "report.md").read_text()

    engine = counting_engine(judge)
    _pairs_file(data, 5)  # one more pair: only its two orders are generated
    args = build_parser().parse_args(_args(data, judge, out))
    assert args.func(args, engine=engine) == 0
    assert engine.prompts == 2
    again = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert again[:4] == rows and len(again) == 5


def test_bad_inputs_exit_2_with_a_location(judge, tmp_path, capsys):
    data = _pairs_file(tmp_path / "pairs.jsonl", 3)
    lines = data.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], lines[1].replace('"B>A"', '"B wins"'), lines[2]]) + "\n")
    assert main(_args(bad, judge, tmp_path / "o1")) == 2
    assert "bad.jsonl:2: label: expected one of" in capsys.readouterr().err
    bad.write_text("\n".join([lines[0], lines[1], lines[0]]) + "\n")
    assert main(_args(bad, judge, tmp_path / "o2")) == 2
    assert "bad.jsonl:3: pair_id: duplicate id 'p0' (first at" in capsys.readouterr().err
    assert main(_args(data, tmp_path / "no-such-model", tmp_path / "o3")) == 2
    assert "does not exist" in capsys.readouterr().err
    template = tmp_path / "t.txt"
    template.write_text("Which is better? {response_a}\n")
    assert main(_args(data, judge, tmp_path / "o4", "--template", str(template))) == 2
    assert "{response_b}" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o4").exists()
