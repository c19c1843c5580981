"""`libra eval libra-bench` end to end with a real tiny judge: files, consistency, errors, resume, vLLM.

The tiny judge's weights are random, so its verdicts are mostly invalid; to check the metrics on real
numbers, a test rewrites the cached judgments with known verdicts and reruns, which rescoring only.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
from matplotlib.image import imread

from libra.cli import build_parser, main
from libra.eval import libra_bench
from libra.judge import parse_pointwise
from libra.models.tiny import TinyConfig, save_tiny

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
# The pointwise prompt alone is ~1,900 tokens for the tiny tokenizer; real responses add thousands.
CONTEXT = 16384
VERDICTS = ["[[score=4]]", "I think [[score=0]]", "[[score=2]]", "no verdict", "<think>[[score=0]]</think>[[score=3]]"]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("judge"), TinyConfig(max_position_embeddings=CONTEXT))


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "bench.jsonl"
    rows = [{"id": f"r{i}", "subset": "aime" if i < 2 else "math", "source_model": f"m{i % 3}",
             "question": f"What is {i} + {i}?", "response": f"The answer is {2 * i + i % 2}.", "label": i % 2 == 0}
            for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _argv(model, bench, out, *extra):
    return ["eval", "libra-bench", "--model", str(model), "--engine", "hf", "--bench", str(bench), "--out", str(out),
            "--max-tokens", "6", "--chunk", "2", "--no-progress", *extra]


def _read(out):
    results = json.loads((out / "results.json").read_text())
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return results, predictions


def _check_consistent(results, predictions, generations):
    """results.json recomputed by hand from predictions.jsonl, and predictions from generations.jsonl."""
    metrics = results["metrics"]
    right = [p["pred"] == p["label"] for p in predictions]
    assert metrics["n"] == len(predictions)
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(right))
    subsets = sorted({p["subset"] for p in predictions})
    by_subset = {s: [r for r, p in zip(right, predictions) if p["subset"] == s] for s in subsets}
    for s in subsets:
        assert metrics["subsets"][s] == {"n": len(by_subset[s]), "accuracy": pytest.approx(sum(by_subset[s]) /
                                                                                         len(by_subset[s]))}
    assert metrics["average"] == pytest.approx(sum(sum(v) / len(v) for v in by_subset.values()) / len(subsets))
    assert metrics["invalid_rate"] == pytest.approx(sum(p["pred"] is None for p in predictions) / len(predictions))
    assert metrics["confusion"]["tp"] == sum(p["pred"] is True and p["label"] for p in predictions)
    assert metrics["confusion"]["invalid_neg"] == sum(p["pred"] is None and not p["label"] for p in predictions)
    samples = [s for g in generations for s in g["samples"]]
    assert [p["score"] for p in predictions] == [parse_pointwise(s["text"]).value for s in samples]
    assert metrics["mean_judgment_tokens"] == pytest.approx(sum(s["num_tokens"] for s in samples) / len(samples))
    assert metrics["finish_reasons"] == dict(Counter(s["finish_reason"] for s in samples))


def test_cli_end_to_end_files_and_metrics(judge, bench, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv(judge, bench, out, "--n", "2", "--temperature", "1", "--seed", "3")
    assert main(argv) == 0
    assert "Libra Bench accuracy" in capsys.readouterr().out
    for name in ("generations.jsonl", "predictions.jsonl", "results.json", "report.md"):
        assert (out / name).stat().st_size > 0
    for png in libra_bench.PLOTS.values():
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = imread(out / png).shape
        assert height > 100 and width > 100
    results, predictions = _read(out)
    assert results["resolved"]["rows"] == 6 and results["resolved"]["sampling"]["n"] == 2
    assert results["settings"]["model"] == str(judge) and results["timings"]["generated_now"] == 6
    assert len(predictions) == 12 and [p["sample"] for p in predictions[:2]] == [0, 1]
    assert "majority" in results["metrics"] and "samples" in results["scoring"]

    # Known verdicts in place of the random ones: the rerun only rescores, and every number follows them.
    gen_path = out / "generations.jsonl"
    generations = [json.loads(line) for line in gen_path.read_text().splitlines()]
    texts = iter(VERDICTS * 3)
    for record in generations:
        for sample in record["samples"]:
            sample["text"] = next(texts)
    gen_path.write_text("".join(json.dumps(g) + "\n" for g in generations))
    assert main(argv) == 0
    results, predictions = _read(out)
    assert results["timings"]["generated_now"] == 0
    _check_consistent(results, predictions, generations)
    assert [p["score"] for p in predictions[:5]] == [4, 0, 2, None, 3]
    assert 0 < results["metrics"]["accuracy"] < 1 and 0 < results["metrics"]["invalid_rate"] < 1
    report = (out / "report.md").read_text()
    metrics = results["metrics"]
    assert "| Model | aime | math | Average |" in report
    row = f"| {judge.name} | {100 * metrics['subsets']['aime']['accuracy']:.1f} | " \
          f"{100 * metrics['subsets']['math']['accuracy']:.1f} | {100 * metrics['average']:.1f} |"
    assert row in report and f"| {judge.name} (majority vote) |" in report
    for heading in ("## Confusion matrix", "macro-F1", "## Accuracy by threshold", "## Accuracy by source model"):
        assert heading in report
    assert "![confusion](confusion.png)" in report

    # confidence (n = 2): each row's share of valid samples saying "correct", recomputed here
    by_row = {}
    for p in predictions:
        by_row.setdefault(p["id"], []).append(p)
    conf = {}
    for rid, samples in by_row.items():
        valid = [p["pred"] for p in samples if p["pred"] is not None]
        conf[rid] = sum(valid) / len(valid) if valid else None
        assert all(p["confidence"] == conf[rid] for p in samples)
    scored = [(conf[r], by_row[r][0]["label"]) for r in by_row if conf[r] is not None]
    pos, neg = [c for c, y in scored if y], [c for c, y in scored if not y]
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
    section = results["metrics"]["confidence"]
    assert section["auroc"] == pytest.approx(pairs) and section["samples_per_row"] == 2
    assert section["rows_without_confidence"] == sum(c is None for c in conf.values())
    assert list(section["accuracy_vs_k"]) == ["1", "2"] and "## Confidence" in report
    assert (out / libra_bench.RELIABILITY_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_confidence_with_one_greedy_judgment_per_row(judge, bench, tmp_path):
    out = tmp_path / "run"
    argv = _argv(judge, bench, out, "--verdict-confidence")
    assert main(argv) == 0
    gen_path = out / "generations.jsonl"
    generations = [json.loads(line) for line in gen_path.read_text().splitlines()]
    for record, text in zip(generations, VERDICTS + ["[[score=1]]"]):
        record["samples"][0]["text"] = text
    gen_path.write_text("".join(json.dumps(g) + "\n" for g in generations))
    assert main(argv) == 0
    results, predictions = _read(out)
    _check_consistent(results, predictions, generations)
    # one scored verdict per judgment with a verdict; "no verdict" has none, and neither has a confidence
    assert [p["p_correct"] is None for p in predictions] == [False, False, False, True, False, False]
    for p in predictions:
        assert p["verdict_confidence"] == p["p_correct"]
        assert p["p_correct"] is None or (0 < p["p_correct"] < 1 and 0 < p["verdict_mass"] <= 1)
    section = results["metrics"]["verdict_confidence"]
    assert (section["judgments_scored"], section["judgments_without_verdict"]) == (5, 1)
    assert section["rows_without_confidence"] == 1 and "confidence" not in results["metrics"]  # n = 1
    scored = [(p["p_correct"], p["label"]) for p in predictions if p["p_correct"] is not None]
    pos, neg = [c for c, y in scored if y], [c for c, y in scored if not y]
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
    assert section["auroc"] == pytest.approx(pairs)
    report = (out / "report.md").read_text()
    assert "## Verdict-token confidence" in report
    assert f"![reliability_verdict]({libra_bench.VERDICT_RELIABILITY_PLOT})" in report
    assert (out / libra_bench.VERDICT_RELIABILITY_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = (out / "verdict_scores.jsonl").read_text().splitlines()
    assert len(stored) == 5  # the random 6-token greedy judgments of the first run held no verdict
    assert main(argv) == 0 and len((out / "verdict_scores.jsonl").read_text().splitlines()) == len(stored)


@pytest.mark.parametrize("change, message", [
    ({"--model": "{tmp}/missing"}, "does not exist"),
    ({"--template": "no-such-template"}, "--template: unknown template 'no-such-template'"),
    ({"--template": "verification"}, "needs ['reference']"),
    ({"--bench": "nowhere.jsonl"}, "nowhere.jsonl: no such file"),
])
def test_bad_options_exit_2_with_a_message(judge, bench, tmp_path, capsys, change, message):
    argv = _argv(judge, bench, tmp_path / "run")
    for option, value in change.items():
        argv += [option, value.format(tmp=tmp_path)]  # the last occurrence wins
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "generations.jsonl").exists()


def test_bad_bench_line_is_located_and_skippable(judge, bench, tmp_path, capsys):
    lines = bench.read_text().splitlines(keepends=True)
    bench.write_text("".join(lines[:2]) + '{"question": "q", "label": true}\n' + "".join(lines[2:4]))
    assert main(_argv(judge, bench, tmp_path / "run")) == 2
    assert "bench.jsonl:3: response: no column for it" in capsys.readouterr().err
    assert main(_argv(judge, bench, tmp_path / "run", "--skip-bad")) == 0
    results, predictions = _read(tmp_path / "run")
    assert results["resolved"]["skipped_bad_records"] == 1 and len(predictions) == 4


def _run_with(engine, argv, interrupt_on=None):
    engine.calls, engine.interrupt_on = [], interrupt_on
    return libra_bench.run(build_parser().parse_args(argv), engine=engine)


def test_interrupted_run_resumes_without_redoing_finished_chunks(judge, bench, tmp_path, capsys, counting_engine):
    engine = counting_engine(judge)
    template = tmp_path / "judge.txt"  # a short prompt keeps the six engine calls below fast
    template.write_text("Judge: {question}\n{response}\nAnswer [[score=N]].\n")
    options = ("--template", str(template), "--temperature", "1", "--seed", "5")
    argv = _argv(judge, bench, tmp_path / "run", *options)
    assert _run_with(engine, argv, interrupt_on=2) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert len((tmp_path / "run" / "generations.jsonl").read_text().splitlines()) == 2
    assert _run_with(engine, argv) == 0
    assert engine.calls == [2, 2]  # rows 3-6 only: the first chunk was reused
    resumed, resumed_predictions = _read(tmp_path / "run")
    assert resumed["timings"]["reused"] == 2 and resumed["timings"]["generated_now"] == 4

    assert _run_with(engine, _argv(judge, bench, tmp_path / "straight", *options)) == 0
    assert engine.calls == [2, 2, 2]
    straight, straight_predictions = _read(tmp_path / "straight")
    assert resumed_predictions == straight_predictions and resumed["metrics"] == straight["metrics"]
    straight_texts = (tmp_path / "straight" / "generations.jsonl").read_text().splitlines()
    assert sorted((tmp_path / "run" / "generations.jsonl").read_text().splitlines()) == sorted(straight_texts)

    assert _run_with(engine, argv) == 0 and engine.calls == []  # all done: nothing generated
    assert _run_with(engine, [*argv, "--max-tokens", "5"]) == 0 and sum(engine.calls) == 6
    template.write_text("Rate it: {question}\n{response}\n[[score=N]]\n")  # an edited template is a new prompt
    assert _run_with(engine, argv) == 0 and sum(engine.calls) == 6


@pytest.mark.vllm
def test_vllm_judges_a_real_v2v_bench(tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    responses = [DATA / "skythought_eval_outputs" / "aime24" / f"{name}.jsonl"
                 for name in ("Sky-T1-math-correct-5K-32B-ckpt140", "Qwen2.5-14B-Instruct")]
    assert main(["data", "v2v", "--problems", f"aime2024={DATA / 'aime2024' / 'test.jsonl'}", "--responses",
                 *map(str, responses), "--out", str(bench), "--workers", "2"]) == 0
    judge = save_tiny(tmp_path / "judge", TinyConfig(max_position_embeddings=CONTEXT))
    out = tmp_path / "run"
    argv = ["eval", "libra-bench", "--model", str(judge), "--engine", "vllm", "--bench", str(bench), "--out", str(out),
            "--limit", "6", "--max-tokens", "8", "--max-model-len", str(CONTEXT), "--no-progress"]
    assert main(argv) == 0
    results, predictions = _read(out)
    bench_rows = [json.loads(line) for line in bench.read_text().splitlines()][:6]
    assert [(p["id"], p["label"], p["source_model"]) for p in predictions] == \
        [(r["id"], r["label"], r["source_model"]) for r in bench_rows]
    assert results["resolved"]["rows"] == 6 and list(results["metrics"]["subsets"]) == ["aime2024"]
    generations = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert all(1 <= s["num_tokens"] <= 8 for g in generations for s in g["samples"])
    _check_consistent(results, predictions, generations)
    assert "| Model | aime2024 | Average |" in (out / "report.md").read_text()
    assert main(argv) == 0  # resumed: every judgment is cached, so no engine starts
    assert _read(out)[0]["timings"]["generated_now"] == 0


def test_a_model_retrained_in_the_same_folder_is_judged_again(tmp_path, bench, counting_engine, capsys):
    """Generations are keyed by the weights, not the folder's path: new weights under the old path (a
    retrained model, the same --out) must not reuse the old judgments."""
    model = save_tiny(tmp_path / "judge", TinyConfig(max_position_embeddings=CONTEXT, seed=0))
    template = tmp_path / "judge.txt"
    template.write_text("Judge: {question}\n{response}\nAnswer [[score=N]].\n")
    argv = _argv(model, bench, tmp_path / "run", "--template", str(template))
    engine = counting_engine(model)
    assert _run_with(engine, argv) == 0 and sum(engine.calls) == 6
    assert _run_with(engine, argv) == 0 and engine.calls == []  # same weights: everything reused
    assert "6 reused" in capsys.readouterr().out
    save_tiny(model, TinyConfig(max_position_embeddings=CONTEXT, seed=1))  # retrained in place
    assert _run_with(engine, argv) == 0 and sum(engine.calls) == 6
    results, _ = _read(tmp_path / "run")
    assert results["timings"]["generated_now"] == 6 and results["resolved"]["model_fingerprint"].startswith("sha256:")


def test_presets_name_the_papers_settings_and_the_settings_that_ran_are_printed(judge, bench, tmp_path, capsys):
    from libra.eval.options import sampling_from_args

    def params(*extra):
        return sampling_from_args(build_parser().parse_args(
            ["eval", "libra-bench", "--model", str(judge), "--bench", str(bench), "--out", str(tmp_path), *extra]))

    assert (params().temperature, params().max_tokens) == (0.0, 4096)  # the default: non-thinking
    assert (params("--preset", "thinking").temperature, params("--preset", "thinking").max_tokens) == (0.6, 32768)
    assert params("--preset", "thinking", "--max-tokens", "64").max_tokens == 64  # an explicit flag wins
    out = tmp_path / "run"
    assert main(_argv(judge, bench, out, "--preset", "thinking")) == 0  # _argv's --max-tokens 6 wins
    printed = capsys.readouterr().out
    assert "sampling: n=1, temperature 0.6 (preset thinking)" in printed and "max 6 new tokens (flag)" in printed
    results, _ = _read(out)
    assert results["resolved"]["sampling"]["temperature"] == 0.6 and results["settings"]["preset"] == "thinking"
