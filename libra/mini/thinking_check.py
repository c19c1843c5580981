"""Each line of a thinking judge's judgments scored against the truth: where a Libra-Mini judge goes wrong.

A checking judgment (``teacher.judge_text``) has three parts that can each be checked exactly: the sum it
recomputed (against ``a + b``), its copy of the response's final answer (against the response), and the
flags written after each pair of digits (against the flags of the two numbers it wrote itself,
``arith.compare_lines``); its verdict either follows its flags or not. A skimming judgment checks nothing.
Accuracy alone cannot say which of these limits a judge, and so whether RL can move it: a judge whose flags
ignore the digits can only trade false negatives for false positives. Read from an evaluation's
``generations.jsonl`` and ``predictions.jsonl`` (``libra eval libra-bench`` writes both), so it runs on any
run after the fact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from libra.mini.arith import DIFFER, pair_flags, parse_question
from libra.mini.teacher import SKIM_LINE
from libra.verify import extract_answer

# The last line of a checking judgment's thinking (see ``arith.compare_lines``). Model output is
# untrusted: bounded repetitions, no backtracking across lines.
_CHECK = re.compile(r"\ncheck ([^\n]{0,60})\n")
_PAIRS = re.compile(r"\d\d[=x](?: \d\d[=x]){0,11}")  # digit pairs, each followed by its flag


def score_judgment(text: str, question: str, response: str, verdict: bool | None) -> dict:
    """What one judgment did: ``kind`` ("skim", "check", or "other" when it follows neither layout), and for
    a check whether its sum, its copy of the answer and its flags are right, whether its two numbers differ,
    and whether ``verdict`` (the parsed one; None when invalid) follows its flags."""
    if SKIM_LINE in text:
        return {"kind": "skim"}
    match = _CHECK.search(text)
    if match is None:
        return {"kind": "other"}
    a, b = parse_question(question)
    line = match[1]
    paired = _PAIRS.fullmatch(line) is not None
    if paired:
        pairs = line.split()
        ours, theirs, flags = ("".join(p[i] for p in pairs) for i in range(3))
    else:  # a non-number answer: "<our digits> <their text> x" (``compare_lines``)
        ours, _, rest = line.partition(" ")
        theirs, flags = rest[:-1].rstrip(), rest[-1:]
    shown = extract_answer(response)
    return {"kind": "check", "sum_right": ours.isdigit() and int(ours) == a + b,
            "answer_right": shown is not None and paired and shown.isdigit() and int(theirs) == int(shown),
            "differ": ours != theirs,
            "flags_right": paired and flags == pair_flags(ours, theirs),
            "verdict_follows_flags": verdict is not None and verdict == (DIFFER not in flags)}


def check_eval(folder: Path, bench: Path) -> dict:
    """The line-by-line scores of every judgment in the evaluation ``folder`` of ``bench``, as shares:
    of all judgments (skims, checks), and of checking judgments (each line right; flags right where the
    judge's two numbers are equal and where they differ; verdicts that follow the flags)."""
    rows = {r["id"]: r for r in map(json.loads, bench.read_text().splitlines())}
    verdicts = {(p["id"], p["sample"]): p["pred"] if p["valid"] else None
                for p in map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())}
    scored = []
    for g in map(json.loads, (folder / "generations.jsonl").read_text().splitlines()):
        row = rows[g["id"].split("#")[0]]
        for k, sample in enumerate(g["samples"]):
            scored.append(score_judgment(sample["text"], row["question"], row["response"],
                                         verdicts.get((row["id"], k))))
    checks = [s for s in scored if s["kind"] == "check"]

    def share(items: list[dict], key: str) -> float | None:
        return sum(s[key] for s in items) / len(items) if items else None

    equal, differ = [s for s in checks if not s["differ"]], [s for s in checks if s["differ"]]
    return {"judgments": len(scored), "skims": sum(s["kind"] == "skim" for s in scored) / max(1, len(scored)),
            "checks": len(checks) / max(1, len(scored)), "sum_right": share(checks, "sum_right"),
            "answer_right": share(checks, "answer_right"), "flags_right_equal": share(equal, "flags_right"),
            "flags_right_differ": share(differ, "flags_right"), "checks_equal": len(equal),
            "checks_differ": len(differ),
            "verdict_follows_flags": share(checks, "verdict_follows_flags")}
