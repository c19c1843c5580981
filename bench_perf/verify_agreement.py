"""Agreement of answer verifiers with the automatic labels shipped with real model responses.

    python -m bench_perf.verify_agreement [--limit N] [--out PATH]

Data (read-only, from ``../shared/data`` next to the repository; see each PROVENANCE.md):
``qwen25math_rm_maj_example`` (100 MATH problems x 8 responses) and ``skythought_eval_outputs`` (MATH-500 and
AIME 2024 responses of several models, labelled by the Qwen2.5-Math harness or SkyThought's tools). The gold
is the original ``answer`` field, not the harness's ``gt``: ``gt`` is the harness's own stripped copy, damaged
in places (``\text{east}`` became ``""``, ``(a+5)(b+2)`` became ``(+5)(b+2)``, matrix rows lost their ``\\``).

Verifiers, each against the source's own label:

* ``math-verify``: out of the box, ``verify(parse(gold), parse(response))`` with its defaults;
* ``math-verify(boxed gold)``: the same with the gold wrapped as ``\\boxed{gold}``, since a bare LaTeX gold
  such as ``\\frac{\\pi}{2}`` is not picked up by its default extraction (the fairer baseline);
* ``ours``: ``libra.verify.verify_answer``.

math-verify runs in the main thread of pool worker processes, where its ``signal.alarm`` timeouts work.
Ours runs one call at a time in this process, so its per-item time includes the worker round trip.
Every disagreement (with the label or between ours and math-verify) is saved with our explanation (the
extracted answer, where it was found, the forms compared and the deciding rule) for reading; the summary
also breaks our agreement down by where the answer was found, and counts checks that failed (timeouts,
dead workers), which are no judgement of the answer.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from bench_perf.common import REPO_ROOT, RESULTS_DIR, git_commit, print_table, versions, write_json
from libra.data.sources import load_problems, load_responses
from libra.data.v2v import match

DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = RESULTS_DIR / "verify-agreement.json"
OUR_TIMEOUT_S = 5.0


def load_items() -> Iterator[dict[str, Any]]:
    """Every (response, gold, label) item, tagged with its dataset and a locator.

    Each response file also holds its problems and gold answers, so the project's own loaders read both
    and join them (``libra.data``), exactly as the V2V builder does.
    """
    files = [("qwen25math_rm_maj_example", DATA_DIR / "qwen25math_rm_maj_example" / "math_cot_100.jsonl")]
    for benchmark in ("math500", "aime24"):
        files += [(f"skythought/{benchmark}/{path.stem}", path)
                  for path in sorted((DATA_DIR / "skythought_eval_outputs" / benchmark).iterdir())
                  if path.suffix in (".json", ".jsonl")]
    for dataset, path in files:
        pairs, _ = match(load_problems(path, dataset), load_responses(path))
        for problem, response in pairs:
            yield {"dataset": dataset, "id": f"{problem.problem_id}/{response.sample}", "response": response.text,
                   "gold": problem.gold, "label": response.source_label}


def _math_verify(item: tuple[str, str]) -> tuple[bool, bool, float]:
    """Both math-verify variants on one (response, gold); runs in a pool worker's main thread."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    response, gold = item
    start = time.perf_counter()
    plain = verify(parse(gold), parse(response))
    seconds = time.perf_counter() - start
    boxed = verify(parse("\\boxed{" + gold + "}"), parse(response))
    return bool(plain), bool(boxed), seconds


def _by_extraction(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Our agreement with the labels per answer source ("box", "closing math", "no final answer", ...)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        why = item["ours_why"]
        source = why["extraction"] if why["extracted"] is not None else f"none: {why['extraction']}"
        groups.setdefault(source, []).append(item)
    return {source: {"n": len(group), "agree": sum(i["ours"] == i["label"] for i in group) / len(group),
                     "ours_true": sum(i["ours"] for i in group), "label_true": sum(i["label"] for i in group)}
            for source, group in sorted(groups.items(), key=lambda kv: -len(kv[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N items only (a quick look)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from libra.verify import verify_answer

    items = list(load_items())[: args.limit]
    pairs = [(item["response"], item["gold"]) for item in items]
    print(f"{len(items)} items from {DATA_DIR}")
    with ProcessPoolExecutor(2) as pool:
        baseline = list(pool.map(_math_verify, pairs, chunksize=16))
    for item, (plain, boxed, seconds) in zip(items, baseline):
        item.update(math_verify=plain, math_verify_boxed=boxed, math_verify_s=seconds)
    for item in items:
        start = time.perf_counter()
        verdict = verify_answer(item["response"], item["gold"], timeout=OUR_TIMEOUT_S, explain=True)
        item["ours_s"] = time.perf_counter() - start
        item["ours"], item["ours_why"] = verdict.correct, verdict.as_dict()

    datasets = sorted({item["dataset"] for item in items}, key=lambda name: (name.count("/"), name))
    groups = {name: [item for item in items if item["dataset"] == name] for name in datasets}
    groups["ALL"] = items
    rows, summary = [], {}
    for name, group in groups.items():
        n = len(group)
        stats = {
            "n": n,
            "label_true": sum(item["label"] for item in group),
            "math_verify_agree": sum(item["math_verify"] == item["label"] for item in group) / n,
            "math_verify_boxed_gold_agree": sum(item["math_verify_boxed"] == item["label"] for item in group) / n,
            "ours_agree": sum(item["ours"] == item["label"] for item in group) / n,
            "ours_vs_math_verify_boxed_disagree": sum(item["ours"] != item["math_verify_boxed"] for item in group),
            "math_verify_ms_per_item": 1e3 * statistics.mean(item["math_verify_s"] for item in group),
            "ours_ms_per_item": 1e3 * statistics.mean(item["ours_s"] for item in group),
            "ours_max_ms": 1e3 * max(item["ours_s"] for item in group),
        }
        summary[name] = stats
        rows.append([name, n, stats["label_true"], stats["math_verify_agree"], stats["math_verify_boxed_gold_agree"],
                     stats["ours_agree"], stats["ours_vs_math_verify_boxed_disagree"],
                     stats["math_verify_ms_per_item"], stats["ours_ms_per_item"], stats["ours_max_ms"]])
    print_table("Agreement with the source's automatic labels",
                ["dataset", "n", "label True", "math-verify", "math-verify (boxed gold)", "ours",
                 "ours != mv(boxed)", "mv ms/item", "ours ms/item", "ours max ms"], rows)

    disagreements = [
        {key: item[key] for key in ("dataset", "id", "gold", "label", "math_verify",
                                    "math_verify_boxed", "ours", "ours_why")}
        | {"response_tail": item["response"][-300:]}
        for item in items
        if item["ours"] != item["label"] or item["ours"] != item["math_verify_boxed"]
    ]
    by_extraction = _by_extraction(items)
    print_table("Ours by where the answer was found", ["extraction", "n", "agree", "ours True", "label True"],
                [[name, *stats.values()] for name, stats in by_extraction.items()])
    failures = Counter(item["ours_why"]["failure"] for item in items if item["ours_why"]["failure"])
    print(f"our checks that failed (timeout / worker error): {dict(failures) or 'none'}")
    write_json(args.out, {
        "benchmark": "verify_agreement",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "versions": versions("math-verify", "sympy", "latex2sympy2_extended"),
        "our_timeout_s": OUR_TIMEOUT_S,
        "summary": summary,
        "ours_by_extraction": by_extraction,
        "ours_check_failures": dict(failures),
        "disagreements": disagreements,
    })
    print(f"{len(disagreements)} disagreements saved to {args.out}")


if __name__ == "__main__":
    main()
