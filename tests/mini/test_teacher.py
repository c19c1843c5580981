"""The thinking teacher: right when it does not slip, wrong only where a slip changes the comparison,
reproducible, and usable wherever a rollout engine is (rejection sampling included)."""

import random
import re

import pytest

from libra.eval.generations import GenerationStore, Request, generate_resumable
from libra.eval.libra_bench import score_records
from libra.judge import parse_pointwise, render, score_to_label, template_fields
from libra.mini import MINI_TEMPLATE
from libra.mini.arith import SOURCE_MODELS, make_problems, respond, worked_solution, written_steps
from libra.mini.teacher import DEFAULT_SEED, ThinkingTeacher, direct_verdict, judge_text, skim_text
from libra.models.tiny import train_tokenizer
from libra.rollout.types import SamplingParams, prompt_token_ids
from libra.data.rejection import select
from libra.verify import extract_answer, verify_answer

_PAIRS = re.compile(r"\ncheck ((?:\d\d[=x] ?)+)\n")


def _mine(text: str) -> int:
    """The teacher's own sum: the first digit of every pair of its check line."""
    return int("".join(pair[0] for pair in _PAIRS.search(text)[1].split()))


@pytest.fixture(scope="module")
def items():
    """(question, response, gold, label) for responses of every source model."""
    rng = random.Random(0)
    out = []
    for p in make_problems(400, seed=1):
        model = SOURCE_MODELS[len(out) % len(SOURCE_MODELS)]
        text = respond(model, p, rng)
        out.append((p.question, text, p.answer, verify_answer(text, p.answer)))
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([worked_solution(p) for p in make_problems(200, seed=2)])


def verdict_label(text: str) -> bool:
    verdict = parse_pointwise(text)
    assert verdict.valid
    return score_to_label(verdict.value)


def test_mini_template_renders_and_is_short():
    assert template_fields(MINI_TEMPLATE) == {"question", "response"}
    prompt = render(MINI_TEMPLATE, question="Compute 1 + 2.", response="x {y} \\boxed{3}")
    assert "Question: Compute 1 + 2.\n" in prompt and "\nx {y} \\boxed{3}\n" in prompt
    assert not prompt.startswith("---") and len(prompt) < len(render("pointwise", question="", response="")) / 10
    # The verdicts the prompt names are the parser's, on both sides of the threshold.
    assert verdict_label("[[score=4]]") and not verdict_label("[[score=0]]")


def test_judgment_shape():
    text = judge_text("Compute 482 + 739.", "...\nSo the answer is \\boxed{1211}.", slip=False, rng=random.Random(0))
    assert text == ("<think>\nCompute 482 + 739.\n2+9+0=11 write 1 carry 1\n8+3+1=12 write 2 carry 1\n"
                    "4+7+1=12 write 12\ncheck 11= 22= 21x 11=\n</think>\nWrong. [[score=0]]")
    right = judge_text("Compute 48 + 39.", "So the answer is \\boxed{87}.", slip=False, rng=random.Random(0))
    # Both numbers are zero-padded to one digit more than the operands, so the pairs line up digit by digit.
    assert right.endswith("check 00= 88= 77=\n</think>\nCorrect. [[score=4]]")
    short = judge_text("Compute 48 + 39.", "So the answer is \\boxed{7}.", slip=False, rng=random.Random(0))
    assert "check 00= 80x 77=\n" in short and not verdict_label(short)
    missing = judge_text("Compute 482 + 739.", "I am not sure.", slip=False, rng=random.Random(0))
    assert "check 1221 none x\n" in missing and not verdict_label(missing)
    assert (direct_verdict(True), direct_verdict(False)) == ("[[score=4]]", "[[score=0]]")


def test_no_slip_verdict_is_the_truth(items):
    assert {label for *_, label in items} == {True, False}
    for question, response, gold, label in items:
        text = judge_text(question, response, slip=False, rng=random.Random(0))
        assert verdict_label(text) == label
        assert _mine(text) == int(gold)


def test_slip_flips_the_verdict_only_when_it_changes_the_comparison(items):
    rng = random.Random(3)
    flips = 0
    for question, response, gold, label in items:
        text = judge_text(question, response, slip=True, rng=rng)
        mine = _mine(text)
        assert mine != int(gold)  # a slip always changes the teacher's own sum ...
        a, b = (int(x) for x in re.findall(r"\d+", question))
        steps = written_steps(a, b)[0]
        assert steps != text.split("\n")[2:2 + len(steps)]  # ... through a wrong line in its thinking
        flipped = (mine == int(extract_answer(response))) != label  # ... but the verdict only through the comparison
        assert (verdict_label(text) != label) == flipped
        flips += flipped
    right = sum(label for *_, label in items)
    assert right <= flips < len(items)  # every right response is flipped, few wrong ones are


def test_teacher_accuracy_is_one_minus_the_flipping_slips(items, tokenizer):
    error_rate = 0.3
    teacher = ThinkingTeacher(tokenizer, error_rate=error_rate)
    prompts = [[{"role": "user", "content": render(MINI_TEMPLATE, question=q, response=r)}] for q, r, *_ in items]
    gens = teacher.generate(prompts, SamplingParams(n=4, seed=7))
    judged = [(verdict_label(s.text), label) for g, (*_, label) in zip(gens, items) for s in g.samples]
    accuracy = sum(pred == label for pred, label in judged) / len(judged)
    rng = random.Random(8)
    slipped = [verdict_label(judge_text(q, r, slip=True, rng=rng)) for q, r, *_ in items]
    flip_share = sum(pred != label for pred, (*_, label) in zip(slipped, items)) / len(items)
    assert 0.4 < flip_share < 1
    assert abs(accuracy - (1 - error_rate * flip_share)) < 0.03, (accuracy, flip_share)
    perfect = ThinkingTeacher(tokenizer, error_rate=0.0).generate(prompts[:100], SamplingParams(n=2))
    assert all(verdict_label(s.text) == label for g, (*_, label) in zip(perfect, items) for s in g.samples)


def test_seeding_follows_the_engine_contract(items, tokenizer):
    teacher = ThinkingTeacher(tokenizer, error_rate=0.5)
    prompts = [render(MINI_TEMPLATE, question=q, response=r) for q, r, *_ in items[:20]]

    def texts(ps, **kw):
        return [[s.text for s in g.samples] for g in teacher.generate(ps, SamplingParams(n=3, **kw))]

    both = texts(prompts, seed=10)
    assert both == texts(prompts, seed=10)
    assert both != texts(prompts, seed=11)
    assert texts(prompts) == texts(prompts, seed=DEFAULT_SEED)
    # Prompt i of a call is sampled with seeds from seed + i*n, whatever the other prompts of the call.
    assert texts(prompts[5:], seed=10 + 5 * 3) == both[5:]


def test_generate_on_rendered_prompts(items, tokenizer):
    teacher = ThinkingTeacher(tokenizer)
    question, response, _, label = items[0]
    chat = [{"role": "user", "content": render(MINI_TEMPLATE, question=question, response=response)}]
    paper = render("pointwise", question=question, response=response)
    for prompt in (chat, paper, [{"role": "user", "content": paper}]):
        (gen,) = teacher.generate([prompt], SamplingParams(n=2, seed=1))
        assert gen.prompt_token_ids == prompt_token_ids(tokenizer, prompt)
        for sample in gen.samples:
            assert sample.finish_reason == "stop" and sample.logprobs is None
            assert sample.token_ids == tokenizer(sample.text, add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(sample.token_ids) == sample.text
            assert parse_pointwise(sample.text).valid


def test_max_tokens_and_stop(items, tokenizer):
    teacher = ThinkingTeacher(tokenizer, error_rate=0.0)
    prompt = render(MINI_TEMPLATE, question=items[0][0], response=items[0][1])
    (full,) = teacher.generate([prompt], SamplingParams(seed=0))[0].samples
    (cut,) = teacher.generate([prompt], SamplingParams(seed=0, max_tokens=7))[0].samples
    assert cut.finish_reason == "length" and cut.token_ids == full.token_ids[:7] and full.text.startswith(cut.text)
    assert not parse_pointwise(cut.text).valid
    (stopped,) = teacher.generate([prompt], SamplingParams(seed=0, stop=("</think>",)))[0].samples
    assert stopped.finish_reason == "stop" and full.text.startswith(stopped.text) and "</think>" not in stopped.text


def test_unreadable_prompts_are_refused(tokenizer):
    teacher = ThinkingTeacher(tokenizer)
    with pytest.raises(ValueError, match="cannot find a question and a response"):
        teacher.generate(["What is the capital of France?"], SamplingParams())
    with pytest.raises(ValueError, match="not token ids"):
        teacher.generate([[1, 2, 3]], SamplingParams())
    with pytest.raises(ValueError, match="not a Libra-Mini addition question"):
        teacher.generate([render(MINI_TEMPLATE, question="Compute 2 * 3.", response="6")], SamplingParams())
    with pytest.raises(ValueError, match="error_rate"):
        ThinkingTeacher(tokenizer, error_rate=1.5)
    with pytest.raises(NotImplementedError, match="no weights"):
        teacher.update_weights([])
    teacher.sleep(), teacher.wake_up(), teacher.close()


def test_rejection_sampling_drives_the_teacher_like_a_model(items, tokenizer, tmp_path):
    rows = [{"id": f"r{i}", "subset": "mini", "source_model": "m", "label": label, "question": q, "response": r}
            for i, (q, r, _, label) in enumerate(items[:60])]
    prompts = [render(MINI_TEMPLATE, question=r["question"], response=r["response"]) for r in rows]
    requests = [Request(r["id"], [{"role": "user", "content": p}]) for r, p in zip(rows, prompts)]
    params = SamplingParams(n=4, seed=3)
    store = GenerationStore(tmp_path / "gen.jsonl")
    records = generate_resumable(ThinkingTeacher(tokenizer, error_rate=0.4), requests, params, store,
                                 template="mini", model="teacher", chunk=16, progress=False)
    kept, stats = select(rows, score_records(rows, records, "pointwise", 2), records, prompts, keep=1,
                         drop_truncated=True)
    assert stats["invalid"] == 0 and stats["samples"] == 240 and 0.5 < stats["acceptance"] < 0.95
    assert len(kept) == stats["rows_with_a_kept_judgment"] >= 55
    assert all(verdict_label(k["messages"][1]["content"]) == k["label"] for k in kept)


def test_skims_trust_the_response_and_survive_rejection_only_where_it_is_right(items, tokenizer, tmp_path):
    question, response, gold, label = next(i for i in items if not i[3])
    assert skim_text(response) == (f"<think>\nthe steps look right\nanswer {extract_answer(response)}\n</think>\n"
                                   "Correct. [[score=4]]")
    rows = [{"id": f"r{i}", "subset": "mini", "source_model": "m", "label": lab, "question": q, "response": r}
            for i, (q, r, _, lab) in enumerate(items[:120])]
    prompts = [render(MINI_TEMPLATE, question=r["question"], response=r["response"]) for r in rows]
    requests = [Request(r["id"], [{"role": "user", "content": p}]) for r, p in zip(rows, prompts)]
    teacher = ThinkingTeacher(tokenizer, error_rate=0.0, skim_rate=0.5)
    records = generate_resumable(teacher, requests, SamplingParams(n=4, seed=5), GenerationStore(tmp_path / "g.jsonl"),
                                 template="mini", model="teacher", progress=False)
    texts = [s["text"] for rec in records for s in rec["samples"]]
    share = sum("the steps look right" in t for t in texts) / len(texts)
    assert 0.4 < share < 0.6
    kept, _ = select(rows, score_records(rows, records, "pointwise", 2), records, prompts, keep=4, drop_truncated=True)
    skims = [k for k in kept if "the steps look right" in k["messages"][1]["content"]]
    assert skims and all(k["label"] for k in skims)  # a skim of a wrong response says "Correct": rejected
    with pytest.raises(ValueError, match="skim_rate"):
        ThinkingTeacher(tokenizer, skim_rate=-0.1)
