"""Rejection sampling: teacher judgments whose verdict agrees with the label become SFT rows."""
import json

import pytest

from libra.cli import main
from libra.judge.verdicts import TRAINING_STRICT
from libra.models.tiny import save_tiny
from libra.rewards import judging_reward
from libra.rollout import SamplingParams
from libra.rollout.types import Generation, Sample
from libra.train.grpo import GRPOConfig
from libra.train.rejection import rejection_sample, select


def test_select_keeps_agreeing_complete_judgments():
    rows = [{"id": "0", "label": True, "subset": "s"}, {"id": "1", "label": False, "subset": "s"}]
    preds = [[{"pred": True}, {"pred": False}, {"pred": True}], [{"pred": None}, {"pred": True}, {"pred": False}]]
    records = [{"samples": [{"text": t, "finish_reason": f} for t, f in s]} for s in (
        [("ok [[score=4]]", "length"), ("no", "stop"), ("ok2 [[score=3]]", "stop")],
        [("?", "stop"), ("bad", "stop"), ("wrong [[score=0]]", "stop")])]
    out, stats = select(rows, preds, records, ["P0", "P1"], keep=1, drop_truncated=True)
    assert [r["messages"][1]["content"] for r in out] == ["ok2 [[score=3]]", "wrong [[score=0]]"]
    assert out[0]["messages"][0] == {"role": "user", "content": "P0"}
    assert stats["agreeing"] == 2 and stats["invalid"] == 1 and stats["truncated"] == 1 and stats["samples"] == 6
    out, stats = select(rows, preds, records, ["P0", "P1"], keep=5, drop_truncated=False)
    assert len(out) == 3 and stats["acceptance"] == pytest.approx(3 / 6)


def test_cli_end_to_end_with_a_real_engine(tmp_path, capsys):
    model = save_tiny(tmp_path / "teacher")
    bench = tmp_path / "bench.jsonl"
    rows = [{"id": str(i), "question": f"What is {i}+{i}?", "response": f"\\boxed{{{2 * i + (i % 2)}}}",
             "label": i % 2 == 0} for i in range(4)]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft.jsonl"
    args = ["train", "rejection-sample", "--model", str(model), "--engine", "hf", "--bench", str(bench),
            "--n", "2", "--max-tokens", "8", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    stats = json.loads((tmp_path / "sft.stats.json").read_text())
    assert stats["samples"] == 8 and stats["kept"] == len(out.read_text().splitlines())
    # Put known judgments in place of the random model's (as a teacher would write them): the rerun
    # reuses them instead of generating, and keeps exactly the agreeing, complete ones.
    gens = tmp_path / "sft.generations.jsonl"
    records = [json.loads(line) for line in gens.read_text().splitlines()]
    for i, rec in enumerate(records):
        verdict = "4" if i % 2 == 0 else "0"  # agrees with the label of row i
        texts = [f"Checked. [[score={verdict}]]", f"Wrong way. [[score={4 - int(verdict)}]]"]
        rec["samples"] = [{"text": t, "finish_reason": "stop", "num_tokens": 5} for t in texts]
    gens.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(args) == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [k["id"] for k in kept] == ["0", "1", "2", "3"]
    assert all(k["messages"][1]["content"].startswith("Checked.") for k in kept)
    assert json.loads((tmp_path / "sft.stats.json").read_text())["acceptance"] == 0.5
    assert main([*args[:-3], "--template", "no-such-template", "--out", str(out)]) == 2


class ThinkingTexts:
    """A teacher whose two judgments of every row say [[score=4]]: inside its thinking only, then after it."""

    texts = ("<think>It adds up. [[score=4]]</think>\nLooks fine to me.", "<think>It adds up.</think>\n[[score=4]]")

    def generate(self, prompts, params, *, progress=False):
        return [Generation([1], [Sample([2], t, "stop") for t in self.texts]) for _ in prompts]


def test_a_verdict_only_inside_the_thinking_is_neither_a_target_nor_a_reward(tmp_path):
    """SFT targets and RL rewards read verdicts with one strictness (``TRAINING_STRICT``, strict): the
    judgment whose only verdict sits in its thinking earns no reward and is no SFT target; lenient keeps it."""
    rows = [{"id": "0", "subset": "s", "source_model": "m", "question": "1+1?", "response": "2", "label": True}]
    text = ThinkingTexts.texts[0]
    assert TRAINING_STRICT and GRPOConfig().reward.strict_verdicts == TRAINING_STRICT
    assert judging_reward(text, True, length=5) == 0.0 and judging_reward(text, True, length=5, strict=False) == 1.0
    params = SamplingParams(n=2, max_tokens=8)
    kept, stats = rejection_sample(rows, out=tmp_path / "strict.jsonl", sampling=params, model="teacher",
                                   engine=ThinkingTexts(), fingerprint="texts", keep=2)
    assert [k["messages"][1]["content"] for k in kept] == [ThinkingTexts.texts[1]] and stats["invalid"] == 1
    assert json.loads((tmp_path / "strict.stats.json").read_text())["verdict_mode"] == "strict"
    kept, _ = rejection_sample(rows, out=tmp_path / "lenient.jsonl", sampling=params, model="teacher",
                               engine=ThinkingTexts(), fingerprint="texts", keep=2, strict=False)
    assert [k["messages"][1]["content"] for k in kept] == list(ThinkingTexts.texts)
