"""Record files: bad input is reported with file, line and field; --skip-bad counts instead of stopping."""

import json

import pytest

from libra.data.jsonl import DataError, SkipCounter, read_jsonl, read_records, write_json, write_jsonl


def _write(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_malformed_json_names_file_and_line(tmp_path):
    f = _write(tmp_path / "a.jsonl", [b'{"q": 1}', b"", b'{"q": ', b'{"q": 3}'])
    with pytest.raises(DataError, match=r"a\.jsonl:3: malformed JSON"):
        list(read_jsonl(f))


def test_non_utf8_and_non_object_lines(tmp_path):
    f = _write(tmp_path / "b.jsonl", [b'{"q": "\xff"}', b"[1, 2]", b'{"q": "ok"}'])
    with pytest.raises(DataError, match=r"b\.jsonl:1: not UTF-8"):
        list(read_jsonl(f))
    skipped = SkipCounter()
    rows = list(read_jsonl(f, skip_bad=skipped))
    assert [r.line for r in rows] == [3] and skipped.skipped == 2
    assert "b.jsonl:2: malformed JSON (expected a JSON object, got list)" in skipped.examples[1]


def test_field_checks_name_the_field(tmp_path):
    f = _write(tmp_path / "c.jsonl", [json.dumps({"question": 5, "flag": True}).encode()])
    (rec,) = read_jsonl(f)
    with pytest.raises(DataError, match=r"c\.jsonl:1: question: expected str, got int"):
        rec.get("question", str)
    with pytest.raises(DataError, match=r"c\.jsonl:1: answer: missing field"):
        rec.get("answer")
    with pytest.raises(DataError, match="flag: expected int, got bool"):
        rec.get("flag", int)
    assert rec.get("answer", required=False, default="x") == "x"


def test_json_object_and_parquet_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.json").write_text(json.dumps({"p1": {"a": 1}, "p2": {"a": 2}}))
    assert [r.data["a"] for r in read_records(tmp_path / "d.json")] == [1, 2]
    pq.write_table(pa.table({"a": [3, 4]}), tmp_path / "e.parquet")
    assert [(r.data["a"], r.line) for r in read_records(tmp_path / "e.parquet")] == [(3, 1), (4, 2)]
    with pytest.raises(DataError, match="unknown file type '.csv'"):
        list(read_records(tmp_path / "f.csv"))


def test_writers_are_atomic_and_round_trip(tmp_path):
    out = tmp_path / "sub" / "rows.jsonl"
    write_jsonl(out, [{"x": "é"}, {"x": 2}])
    assert [r.data for r in read_jsonl(out)] == [{"x": "é"}, {"x": 2}]

    def boom():
        yield {"x": 1}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(out, boom())
    assert [r.data for r in read_jsonl(out)] == [{"x": "é"}, {"x": 2}]  # the old file survived
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    write_json(tmp_path / "s.json", {"b": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"b": 1}
