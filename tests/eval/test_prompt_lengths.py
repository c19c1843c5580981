"""Prompts that cannot fit the judge's context: by default not generated, judged wrong (invalid) and counted
per subset in the printed table, results.json and report.md; with ``--too-long error`` refused before any
engine starts, with a clear error."""
import json

import pytest

from libra.cli import main
from libra.models.tiny import TinyConfig, save_tiny

LONG_QUESTION = "What is " + "1+" * 1500 + "1?"  # > 2048 tokens with the tiny tokenizer


@pytest.fixture(scope="module")
def short_context(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("short"), TinyConfig(max_position_embeddings=2048))


def _bench(path):
    rows = [{"id": "short", "subset": "easy", "question": "1+1?", "response": "2", "label": True},
            {"id": "long", "subset": "hard", "question": LONG_QUESTION, "response": "1501", "label": True},
            {"id": "short2", "subset": "hard", "question": "2+2?", "response": "5", "label": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _args(model, bench, out, *extra):
    return ["eval", "libra-bench", "--model", str(model), "--bench", str(bench), "--max-tokens", "16",
            "--out", str(out), "--no-progress", *extra]


def test_too_long_prompts_are_a_clear_error_with_too_long_error(short_context, tmp_path, capsys):
    assert main(_args(short_context, _bench(tmp_path / "bench.jsonl"), tmp_path / "out", "--engine", "vllm",
                      "--too-long", "error")) == 2
    err = capsys.readouterr().err
    assert "1 of 3 prompts do not fit the context: 2048 tokens minus --max-tokens 16 leaves 2032" in err
    assert "(id long#" in err
    assert not (tmp_path / "out" / "generations.jsonl").exists()  # refused before generating anything


def test_too_long_prompts_are_counted_per_subset_and_judged_wrong(short_context, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(short_context, _bench(tmp_path / "bench.jsonl"), out, "--engine", "hf")) == 0
    printed = capsys.readouterr().out
    assert "1 of 3 prompts do not fit the context: 2048 tokens minus --max-tokens 16 leaves 2032" in printed
    assert "prompts that do not fit the context" in printed  # a row of the printed table
    results = json.loads((out / "results.json").read_text())
    metrics = results["metrics"]
    assert metrics["rows"] == 3 and metrics["n"] == 3  # nothing dropped: the long row is scored
    assert metrics["prompts_too_long"] == 1
    assert metrics["prompts_too_long_by_subset"] == {"easy": 0, "hard": 1}
    assert metrics["finish_reasons"]["prompt_too_long"] == 1
    assert metrics["confusion"]["invalid_pos"] >= 1  # the long row (label True) has no verdict: wrong
    [(unfit_id, tokens)] = results["unfit_prompts"].items()
    assert unfit_id.startswith("long#") and tokens > 2032
    assert results["timings"]["prompts_too_long"] == 1 and results["timings"]["generated_now"] == 2
    long_pred = next(json.loads(line) for line in (out / "predictions.jsonl").open() if '"id": "long"' in line)
    assert long_pred["valid"] is False and long_pred["pred"] is None and long_pred["num_tokens"] == 0
    generated = [json.loads(line)["id"] for line in (out / "generations.jsonl").open()]
    assert len(generated) == 2 and not any(g.startswith("long#") for g in generated)  # never sent to the engine
    assert "prompts that do not fit the context (rows, judged wrong) | 0 | 1 | 1" in (out / "report.md").read_text()


def test_too_long_pairwise_prompts_are_counted_per_category(short_context, tmp_path, capsys):
    rows = [{"pair_id": "fits", "source": "livebench-math", "question": "1+1?", "response_A": "2",
             "response_B": "3", "label": "A>B"},
            {"pair_id": "long", "source": "mmlu-pro-law", "question": LONG_QUESTION, "response_A": "1501",
             "response_B": "1500", "label": "A>B"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["eval", "pairwise", "--data", str(data), "--model", str(short_context), "--engine", "hf",
                 "--max-tokens", "4", "--out", str(out), "--no-progress"]) == 0
    assert "2 of 4 prompts do not fit the context" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["prompts_too_long"]["overall"] == 2
    assert results["prompts_too_long"]["by_category"] == {"knowledge": 2, "math": 0}
    assert results["prompts_too_long"]["by_source"] == {"livebench-math": 0, "mmlu-pro-law": 2}
    assert results["overall"]["invalid_rate"] >= 0.5  # both orders of the long pair are invalid
    assert sorted(results["unfit_prompts"]) == ["long:ab", "long:ba"]
    assert "| did not fit |" in (out / "report.md").read_text()
