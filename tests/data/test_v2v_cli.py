"""`libra data v2v` end to end on real AIME 2024 responses, with the real answer checker."""

import json
from pathlib import Path

from libra.cli import main
from libra.data.commands import outputs
from libra.data.jsonl import read_jsonl

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RESPONSES = [DATA / "skythought_eval_outputs" / "aime24" / f"{name}.jsonl"
             for name in ("Sky-T1-math-correct-5K-32B-ckpt140", "Qwen2.5-14B-Instruct")]


def _run(out: Path, *extra: str, responses=RESPONSES) -> int:
    return main(["data", "v2v", "--problems", f"aime2024={DATA / 'aime2024' / 'test.jsonl'}", "--responses",
                 *map(str, responses), "--out", str(out), "--workers", "2", *extra])


def test_v2v_real_aime_build_and_resume(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    assert _run(out) == 0
    files = outputs(out)
    rows = [r.data for r in read_jsonl(files["rows"])]
    stats = json.loads(files["stats"].read_text())
    assert stats["responses"] == 60 and stats["unmatched"] == 0
    for model in ("Sky-T1-math-correct-5K-32B-ckpt140", "Qwen2.5-14B-Instruct"):
        labels = [r["label"] for r in rows if r["source_model"] == model]
        assert labels.count(True) == labels.count(False) >= 5
    assert all("<|begin_of_thought|>" not in r["response"] for r in rows)
    agree = stats["agreement_with_source_labels"]
    assert agree["compared"] == stats["labelled"] and agree["agreement"] >= 0.95
    assert "V2V judging set" in capsys.readouterr().out
    assert _run(out) == 0  # resumed: every label comes from the cache
    assert json.loads(files["stats"].read_text())["labels_computed_now"] == 0
    assert [r.data for r in read_jsonl(files["rows"])] == rows


def test_v2v_bad_record_is_located_and_skippable(tmp_path, capsys):
    bad = tmp_path / "model-x.jsonl"
    good_line = RESPONSES[0].read_text().splitlines()[0]
    bad.write_text(good_line + "\n" + '{"question": "q", "code": "not a list"}\n')
    assert _run(tmp_path / "o.jsonl", responses=[bad]) == 2
    assert "model-x.jsonl:2: code: expected list, got str" in capsys.readouterr().err
    assert _run(tmp_path / "o.jsonl", "--skip-bad", responses=[bad]) == 0
    assert json.loads(outputs(tmp_path / "o.jsonl")["stats"].read_text())["skipped_bad_records"] == 1
