"""RL prompts and rewards, the prompt stream, group selection and the log-prob alignment of GRPO."""
import json

import pytest

from libra.data.jsonl import DataError, SkipCounter
from libra.train.grpo import PromptStream, Rollout, assign_advantages
from libra.train.rl_tasks import load_rl_items, score


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_items_of_every_task(tmp_path):
    path = _write(tmp_path / "rl.jsonl", [
        {"question": "1+1?", "response": "\\boxed{2}", "label": True},
        {"question": "2+2?", "answer": 4, "task": "reasoning"},
        {"question": "q", "response_a": "a", "response_b": "b", "label": "B", "task": "pairwise"},
    ])
    judge, reason, pair = load_rl_items(path, "pointwise", "pointwise")
    assert judge.task == "pointwise" and judge.label is True and "\\boxed{2}" in judge.prompt[0]["content"]
    assert reason.label == "4" and reason.prompt[0]["content"].endswith("within \\boxed{}.")
    assert pair.label == "B" and "[[A>B]]" in pair.prompt[0]["content"]


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = _write(tmp_path / "rl.jsonl", [{"question": "q", "response": "r", "label": "yes"},
                                         {"question": "q", "answer": "1", "task": "poetry"}])
    with pytest.raises(DataError, match=r"rl.jsonl:1: label: expected bool"):
        load_rl_items(path, "pointwise", "pointwise")
    skipped = SkipCounter()
    assert load_rl_items(path, "pointwise", "pointwise", skipped) == [] and skipped.skipped == 2
    assert "rl.jsonl:2: task: unknown task 'poetry'" in skipped.examples[1]


def test_rewards_are_correctness_minus_length_penalty(tmp_path):
    path = _write(tmp_path / "rl.jsonl", [{"question": "1+1?", "response": "2", "label": True},
                                         {"question": "2+2?", "answer": "4", "task": "reasoning"}])
    judge, reason = load_rl_items(path, "pointwise", "pointwise")
    right = score(judge, "Looks fine. [[score=4]]", 10, l_exp=16, l_max=32)
    assert right.correct and right.reward == 1.0
    wrong = score(judge, "[[score=1]]", 24, l_exp=16, l_max=32)
    assert not wrong.correct and wrong.reward == pytest.approx(-0.5)
    long_right = score(reason, "so \\boxed{4}", 24, l_exp=16, l_max=32)
    assert long_right.correct and long_right.reward == pytest.approx(0.5)
    assert not score(reason, "no answer at all", 4, l_exp=16, l_max=32).correct


def test_prompt_stream_is_seeded_and_resumable():
    a = PromptStream(10, seed=3)
    first = a.take(4) + a.take(8)  # crosses into the second epoch
    assert sorted(first[:10]) == list(range(10))
    b = PromptStream(10, seed=3, cursor=4)
    assert b.take(8) == first[4:]


def _rollout(group, reward):
    return Rollout(group, [1, 2], [3, 4], [-1.0, -1.0], reward, reward > 0, False)


def test_dynamic_sampling_keeps_groups_whose_rewards_differ():
    rollouts = [_rollout(0, r) for r in (1, 0, 1, 0)] + [_rollout(1, 1.0) for _ in range(4)]
    kept = assign_advantages(rollouts, 4, dynamic=True)
    assert [r.group for r in kept] == [0, 0, 0, 0]
    assert sum(r.advantage for r in kept) == pytest.approx(0.0, abs=1e-6) and kept[0].advantage > 0
    assert len(assign_advantages(rollouts, 4, dynamic=False)) == 8
    assert assign_advantages([_rollout(0, 0.0) for _ in range(4)], 4, dynamic=True) == []


def test_verification_rows_render_with_their_reference_answer(tmp_path):
    """data.task=verification: the verification template (paper Fig. 7) shows the gold answer, so a row
    needs ``reference``; without it the row is a located error, with it the prompt holds it."""
    path = _write(tmp_path / "rl.jsonl", [
        {"question": "1+1?", "response": "\\boxed{2}", "label": True, "reference": "2"},
        {"question": "2+2?", "response": "\\boxed{5}", "label": False, "reference": 4},
    ])
    right, wrong = load_rl_items(path, "verification", "pointwise")
    assert right.task == "verification" and "[[Correct]]" in right.prompt[0]["content"]
    assert "\\boxed{5}" in wrong.prompt[0]["content"] and "4" in wrong.prompt[0]["content"]
    assert score(right, "<think>fine</think>[[Correct]]", 5, l_exp=16, l_max=32).reward == 1.0
    assert score(right, "<think>[[Correct]]</think>so yes", 5, l_exp=16, l_max=32).reward == 0.0  # strict
    missing = _write(tmp_path / "bad.jsonl", [{"question": "q", "response": "r", "label": True}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: reference"):
        load_rl_items(missing, "verification", "pointwise")
