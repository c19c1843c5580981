"""Libra Bench loading: our own files, hub-style column names, and clear errors for unknown schemas."""

import json

import pytest

from libra.data import bench
from libra.data.jsonl import DataError, SkipCounter


def test_local_v2v_rows_round_trip(tmp_path):
    row = {"id": "s/1/m/0", "subset": "s", "source_model": "m", "question": "q", "response": "r", "label": True}
    (tmp_path / "b.jsonl").write_text(json.dumps(row) + "\n")
    assert bench.load_bench(str(tmp_path / "b.jsonl")) == [row]


def test_hub_columns_are_mapped(monkeypatch):
    rows = [{"problem": "q", "output": "r", "correctness": "incorrect", "data_source": "AIME2024", "model": "m",
             "uid": 7}]
    seen = {}

    def fake_load_dataset(name, split=None):
        seen["args"] = (name, split)
        return rows if split else {"test": rows, "validation": []}

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert len(bench.load_bench(bench.HUB_ID, split="test")) == 1 and seen["args"] == ("meituan/Libra-Bench", "test")
    out = bench.load_bench(bench.HUB_ID)  # several splits, one of them "test": that one
    assert seen["args"] == ("meituan/Libra-Bench", None)
    assert out == [{"id": "7", "subset": "AIME2024", "source_model": "m", "question": "q", "response": "r",
                    "label": False}]


def test_unknown_schema_and_bad_labels(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"text": "q"}\n{"question": "q", "response": "r", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:1: question: no column for it .*found text"):
        bench.load_bench(str(f))
    skipped = SkipCounter()
    assert bench.load_bench(str(f), skip_bad=skipped) == [] and skipped.skipped == 2
    with pytest.raises(DataError, match="no such file"):
        bench.load_bench(str(tmp_path / "missing.jsonl"))


def test_the_official_layout_through_the_datasets_json_builder(tmp_path, monkeypatch):
    """The dataset card of meituan/Libra-Bench: one file libra_bench.jsonl, no split configuration (so
    `datasets` gives it the single split "train"), fields index, question, response, label, model,
    reference, subset, response_with_cot. The hub is replaced by the same file read with `datasets`'
    own json builder, as load_dataset("meituan/Libra-Bench") would read the downloaded file."""
    import datasets

    subsets = ["MATH-500", "AIME 2024", "AIME 2025"]
    rows = [{"index": i, "question": f"Q{i}", "response": f"answer {i}", "label": i % 2, "model": f"m{i % 2}",
             "reference": str(i), "subset": subsets[i % 3], "response_with_cot": f"<think>t{i}</think>answer {i}"}
            for i in range(6)]
    data = tmp_path / "libra_bench.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    real = datasets.load_dataset

    def hub(name, *args, **kwargs):
        assert name == bench.HUB_ID
        return real("json", *args, data_files=str(data), cache_dir=str(tmp_path / "cache"), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", hub)
    out = bench.load_bench(bench.HUB_ID)
    assert [r["id"] for r in out] == [str(i) for i in range(6)] and out[0]["id"] == "0"  # index 0 is an id too
    assert [r["label"] for r in out] == [False, True] * 3
    assert out[1] == {"id": "1", "subset": "AIME 2024", "source_model": "m1", "question": "Q1", "response": "answer 1",
                      "label": True, "reference": "1", "response_with_cot": "<think>t1</think>answer 1"}
    from libra.eval.libra_bench import check_template

    assert check_template("verification", out) == {"question", "response", "reference"}


def test_duplicate_ids_are_refused_where_asked(tmp_path):
    """Commands that match rows by id (probes) load with ``unique_ids``: a repeated id names its file, line
    and column, and the first row with it; other commands keep loading such files as they are."""
    row = {"question": "q", "response": "r", "label": True}
    f = tmp_path / "b.jsonl"
    f.write_text("".join(json.dumps({**row, **extra}) + "\n" for extra in ({"id": 7}, {"id": 8}, {"id": "7"})))
    assert [r["id"] for r in bench.load_bench(str(f))] == ["7", "8", "7"]
    with pytest.raises(DataError, match=r"b\.jsonl:3: id: duplicate id '7' \(first at .*b\.jsonl:1\)"):
        bench.load_bench(str(f), unique_ids=True)
    f.write_text("".join(json.dumps({**row, "index": i % 2}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match=r"b\.jsonl:3: index: duplicate id '0'"):
        bench.load_bench(str(f), unique_ids=True, skip_bad=SkipCounter())  # not a bad record to skip
