"""``libra data ...`` commands: building judging data from verifiable reasoning."""

from __future__ import annotations

import argparse
from pathlib import Path

from .jsonl import SkipCounter, write_json, write_jsonl
from .sources import load_problems, load_responses
from .v2v import build


def named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected SUBSET=PATH, got {text!r}")
    return name, Path(path)


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build judging data (V2V) and preference pairs")
    cmds = data.add_subparsers(dest="data_command", required=True)
    v2v = cmds.add_parser("v2v", help="verifiable reasoning -> verifiable judging (a Libra-Bench-style set)",
                          description="Join responses to problems, strip the chain of thought, label with "
                                      "verify_answer, balance each (subset, model) and write judging rows.")
    v2v.add_argument("--problems", type=named_path, action="append", required=True, metavar="SUBSET=PATH",
                     help="a problem set with gold answers and the subset name its rows get (repeatable)")
    v2v.add_argument("--responses", type=Path, nargs="+", required=True,
                     help="response files (Qwen2.5-Math harness .jsonl, SkyThought .json, or question/response rows);"
                          " the source model is the file name")
    v2v.add_argument("--out", type=Path, required=True, help="judging rows (.jsonl); statistics go beside it")
    v2v.add_argument("--level", type=int, help="keep only problems of this level (sets without levels are kept)")
    v2v.add_argument("--seed", type=int, default=0, help="seed of the balancing subsample")
    v2v.add_argument("--no-balance", action="store_true", help="keep every labelled response")
    v2v.add_argument("--skip-bad", action="store_true", help="skip malformed records (counted) instead of stopping")
    v2v.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per answer check")
    v2v.add_argument("--workers", type=int, help="verification processes (default: CPU count)")
    v2v.set_defaults(func=run_v2v)
    split = cmds.add_parser("split", help="judging rows -> training rows and a held-out bench, disjoint problems",
                            description="Hold out a share of each subset's problems with all their rows (seeded), "
                                        "so no problem has rows on both sides.")
    split.add_argument("--rows", type=Path, required=True, help="judging rows (.jsonl, e.g. from `libra data v2v`)")
    split.add_argument("--bench-fraction", type=fraction, default=0.25, help="share of each subset's problems held out")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--train-out", type=Path, required=True, help="training rows (.jsonl)")
    split.add_argument("--bench-out", type=Path, required=True, help="held-out bench rows (.jsonl)")
    split.set_defaults(func=run_split)
    pairs = cmds.add_parser("dpo-pairs", help="DPO pairs from a reward model's judgments (paper section 6)",
                            description="Join judging rows with a judge's predictions.jsonl (libra eval libra-bench) "
                                        "and pair, per question, judged-correct with judged-wrong responses.")
    pairs.add_argument("--bench", required=True, help="the judged rows (question, response, id)")
    pairs.add_argument("--predictions", type=Path, required=True, help="predictions.jsonl of the judge's evaluation")
    pairs.add_argument("--out", type=Path, required=True, help="pairs (.jsonl): prompt, chosen, rejected")
    pairs.add_argument("--skip-bad", action="store_true")
    pairs.set_defaults(func=run_dpo_pairs)


def outputs(out: Path) -> dict[str, Path]:
    """The files a V2V build writes next to ``out``."""
    stem = out.with_suffix("")
    return {"rows": out, "stats": Path(f"{stem}.stats.json"), "labels": Path(f"{stem}.labels.jsonl"),
            "disagreements": Path(f"{stem}.disagreements.jsonl")}


def run_v2v(args: argparse.Namespace) -> int:
    from libra.report.tables import print_v2v_summary
    from libra.verify import strip_thinking, verify_many

    skipped = SkipCounter() if args.skip_bad else None
    problems = [p for name, path in args.problems for p in load_problems(path, name, skip_bad=skipped)]
    responses = [r for path in args.responses for r in load_responses(path, skip_bad=skipped)]
    files = outputs(args.out)
    files["rows"].parent.mkdir(parents=True, exist_ok=True)
    result = build(problems, responses, strip_thinking=strip_thinking, verify_many=verify_many, seed=args.seed,
                   level=args.level, do_balance=not args.no_balance, cache=files["labels"], timeout=args.timeout,
                   workers=args.workers)
    write_jsonl(files["rows"], result.rows)
    write_jsonl(files["disagreements"], result.disagreements)
    summary = {"inputs": {"problems": {n: str(p) for n, p in args.problems},
                          "responses": [str(p) for p in args.responses], "level": args.level},
               "skipped_bad_records": skipped.skipped if skipped else 0,
               "skipped_examples": skipped.examples if skipped else [],
               **result.stats, "agreement_with_source_labels": result.agreement}
    write_json(files["stats"], summary)
    print_v2v_summary(summary, files)
    return 0


def run_split(args: argparse.Namespace) -> int:
    from .jsonl import read_jsonl
    from .split import split_by_problem, split_counts

    rows = []
    for rec in read_jsonl(args.rows):
        rec.get("question", str)  # a row without its question cannot be assigned to a problem: say where
        rows.append(rec.data)
    train, bench = split_by_problem(rows, bench_fraction=args.bench_fraction, seed=args.seed)
    write_jsonl(args.train_out, train)
    write_jsonl(args.bench_out, bench)
    counts = split_counts(train, bench)
    for name, path in (("train", args.train_out), ("bench", args.bench_out)):
        per = ", ".join(f"{s} {c['rows']} rows / {c['problems']} problems" for s, c in counts[name].items())
        print(f"{name}: {per or 'no rows'} -> {path}")
    print(f"problems on both sides: {counts['shared_problems']}")
    return 0


def run_dpo_pairs(args: argparse.Namespace) -> int:
    from .pairs import build_pairs, judged_rows

    judged = judged_rows(args.bench, args.predictions, SkipCounter() if args.skip_bad else None)
    pairs = build_pairs(judged)
    write_jsonl(args.out, pairs)
    print(f"{len(judged)} judged responses over {len({r['question'] for r in judged})} questions -> "
          f"{len(pairs)} pairs: {args.out}")
    return 0
