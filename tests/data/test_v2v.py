"""The V2V builder on small hand-made data with a stand-in checker (the real checker is tested with the CLI)."""

from libra.data.sources import Problem, Response
from libra.data.v2v import build


def strip(text):
    """Stand-in for libra.verify.strip_thinking: drop '<think>...</think>', None when never closed."""
    if "<think>" in text:
        return text.split("</think>", 1)[1] if "</think>" in text else None
    return text


def make_checker(calls):
    def verify_many(pairs, **kw):
        calls.append(len(pairs))
        return [f"ANSWER {gold}" in final for final, gold in pairs]
    return verify_many


PROBLEMS = [Problem("s", f"p{i}", f"question {i}", str(i), None) for i in range(4)]


def responses():
    out = []
    for i in range(4):
        for k, model in enumerate(("m1", "m1", "m2")):
            good = (i + k) % 2 == 0
            out.append(Response(model, f"question  {i}", f"<think>...</think> ANSWER {i if good else 99}", k,
                                not good if (i, k) == (0, 0) else good, f"f:{i}"))
    out.append(Response("m1", "question 0", "<think>never closed", 9, None, "f:x"))
    out.append(Response("m1", "not a known problem", "ANSWER 1", 0, True, "f:y"))
    return out


def test_build_balances_labels_and_reports(tmp_path):
    calls = []
    res = build(PROBLEMS, responses(), strip_thinking=strip, verify_many=make_checker(calls), seed=1,
                cache=tmp_path / "labels.jsonl")
    s = res.stats
    assert (s["unmatched"], s["truncated_thought"], s["labelled"]) == (1, 1, 12)
    for model in ("m1", "m2"):
        labels = [r["label"] for r in res.rows if r["source_model"] == model]
        assert labels.count(True) == labels.count(False) > 0
    assert all("<think>" not in r["response"] for r in res.rows)
    assert res.agreement["compared"] == 12 and res.agreement["agree"] == 11
    assert res.disagreements[0]["origin"] == "f:0" and res.disagreements[0]["source_label"] is False
    t1 = s["table1"]["s"]
    assert t1["correct"] == t1["incorrect"] == sum(m["correct"] for m in t1["models"].values())
    # a rerun labels nothing anew and reproduces the same rows
    again = build(PROBLEMS, responses(), strip_thinking=strip, verify_many=make_checker(calls), seed=1,
                  cache=tmp_path / "labels.jsonl")
    assert again.stats["labels_computed_now"] == 0 and again.rows == res.rows and calls == [12]


def test_level_filter_and_no_balance():
    problems = [Problem("s", "p0", "question 0", "0", 5), Problem("s", "p1", "question 1", "1", 3)]
    rs = [Response("m", "question 0", "ANSWER 0", 0, None, "a"), Response("m", "question 1", "ANSWER 1", 0, None, "b")]
    res = build(problems, rs, strip_thinking=strip, verify_many=make_checker([]), level=5, do_balance=False)
    assert res.stats["other_level"] == 1 and [r["problem_id"] for r in res.rows] == ["p0"]
