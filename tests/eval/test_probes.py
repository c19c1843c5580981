"""Robustness probes on real V2V rows (SkyThought responses to AIME 2024): each transformation keeps the
final answer and the label, changes only the rows it says, is deterministic; and the probe evaluation's
numbers follow its runs' own predictions."""
import json
from pathlib import Path

import pytest

from libra.cli import main
from libra.eval import probes
from libra.models.tiny import TinyConfig, save_tiny
from libra.rollout import HFEngine, SamplingParams
from libra.verify import extract_answer

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    bench = tmp_path_factory.mktemp("probes") / "bench.jsonl"
    responses = [DATA / "skythought_eval_outputs" / "aime24" / f"{name}.jsonl"
                 for name in ("Sky-T1-math-correct-5K-32B-ckpt140", "Qwen2.5-14B-Instruct")]
    assert main(["data", "v2v", "--problems", f"aime2024={DATA / 'aime2024' / 'test.jsonl'}", "--responses",
                 *map(str, responses), "--out", str(bench), "--workers", "2"]) == 0
    from libra.data.bench import load_bench

    loaded = load_bench(str(bench))
    assert len(loaded) >= 10 and {r["label"] for r in loaded} == {True, False}
    return loaded


def test_answer_only_keeps_just_the_final_answer(rows):
    probed, changed = probes.probe_rows(rows, "answer-only")
    assert changed and len(probed) == len(rows)
    for before, after in zip(rows, probed):
        assert after["label"] == before["label"] and after["question"] == before["question"]
        if before["id"] in changed:
            assert after["response"] == f"The final answer is $\\boxed{{{extract_answer(before['response'])}}}$."
            assert extract_answer(after["response"]) == extract_answer(before["response"])
        else:
            assert after == before and extract_answer(before["response"]) is None


def test_confident_phrase_goes_only_on_wrong_answers(rows):
    probed, changed = probes.probe_rows(rows, "confident-wrong", seed=1)
    assert set(changed) == {r["id"] for r in rows if not r["label"]}
    for before, after in zip(rows, probed):
        if before["id"] in changed:
            head, _, phrase = after["response"].rpartition("\n\n")
            assert phrase in probes.CONFIDENT and head == before["response"].rstrip()
        else:
            assert after == before
    assert probes.probe_rows(rows, "confident-wrong", seed=1) == (probed, changed)  # deterministic


def test_cut_derivation_keeps_the_answer_line_and_the_first_half(rows):
    probed, changed = probes.probe_rows(rows, "cut-derivation")
    assert len(changed) >= len(rows) // 2
    for before, after in zip(rows, probed):
        if before["id"] not in changed:
            continue
        assert len(after["response"]) < 0.75 * len(before["response"])
        answer, lines = extract_answer(before["response"]), before["response"].rstrip().splitlines()
        last = max(i for i, line in enumerate(lines) if answer in line)
        tail = "\n".join(lines[last:])  # from the answer's line on, verbatim
        assert after["response"].endswith("\n" + tail)
        assert before["response"].startswith(after["response"][:-len(tail) - 1])  # the derivation's start
        assert extract_answer(after["response"]) == answer


def test_unknown_probe_is_refused(rows):
    with pytest.raises(ValueError, match="unknown probe 'shout'"):
        probes.probe_rows(rows, "shout")


def test_probe_evaluation_follows_its_runs(rows, tmp_path):
    judge = save_tiny(tmp_path / "judge", TinyConfig(max_position_embeddings=32768))
    some = rows[:6]
    results = probes.evaluate(some, out=tmp_path / "run", sampling=SamplingParams(n=1, temperature=1.0, max_tokens=4,
                                                                                   seed=2),
                              model=str(judge), engine=HFEngine(str(judge)), template="pointwise", progress=False,
                              plots=False, quiet=True)
    for name in probes.PROBES:
        _, changed = probes.probe_rows(some, name)
        entry = results["probes"][name]
        assert entry["rows_changed"] == len(changed) and entry["rows_unchanged"] == len(some) - len(changed)
        if not changed:
            continue
        per_run = {}
        for run in ("original", name):
            preds = [json.loads(x) for x in (tmp_path / "run" / run / "predictions.jsonl").read_text().splitlines()]
            per_run[run] = sum(p["pred"] == p["label"] for p in preds if p["id"] in changed) / len(changed)
        assert entry["accuracy_original"] == pytest.approx(per_run["original"])
        assert entry["accuracy_probed"] == pytest.approx(per_run[name])
        low, high = entry["difference_ci95"]
        assert low <= per_run[name] - per_run["original"] <= high
    assert (tmp_path / "run" / "report.md").read_text().startswith("# Robustness probes")


def test_the_probes_command(rows, tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    judge = save_tiny(tmp_path / "judge", TinyConfig(max_position_embeddings=32768))
    out = tmp_path / "cli"
    argv = ["eval", "probes", "--model", str(judge), "--engine", "hf", "--bench", str(bench), "--out", str(out),
            "--probes", "answer-only,confident-wrong", "--max-tokens", "4", "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["probes"]) == ["answer-only", "confident-wrong"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["answer-only", "confident-wrong", "original"]
    assert "Robustness probes" in capsys.readouterr().out
    assert main([*argv[:-5], "--probes", "shout", "--max-tokens", "4"]) == 2


def test_duplicate_ids_are_refused(tmp_path, capsys):
    """Probes compare a row before and after by its id: two rows "7" (both judged right) would read as one
    row right half the time. The command names the file, line and field; the library function refuses too."""
    rows = [{"id": "7", "question": "What is 1+1?", "response": f"$\\boxed{{{x}}}$", "label": x == 2}
            for x in (2, 3)]
    with pytest.raises(ValueError, match="probes match rows by id; repeated: '7'"):
        probes.evaluate([{**r, "subset": "s", "source_model": "m"} for r in rows], out=tmp_path / "run",
                        sampling=SamplingParams(n=1, max_tokens=4), model="m", engine_factory=None)
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = save_tiny(tmp_path / "judge")
    assert main(["eval", "probes", "--model", str(judge), "--engine", "hf", "--bench", str(bench), "--out",
                 str(tmp_path / "cli"), "--no-progress"]) == 2
    assert f"{bench}:2: id: duplicate id '7' (first at {bench}:1)" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
