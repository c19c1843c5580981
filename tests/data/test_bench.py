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

    def fake_load_dataset(name, split):
        seen["args"] = (name, split)
        return rows

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = bench.load_bench(bench.HUB_ID)
    assert seen["args"] == ("meituan/Libra-Bench", "test")
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
