"""``libra eval passk``: pass@k of a policy on problem sets with gold answers (MATH-500, AIME ...).

Each problem is sampled ``n`` times; every sample is labelled by the rule-based checker
(``libra.verify``). pass@k is the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k) for
c correct samples of n, averaged over problems; pass@1 is then the mean share of correct samples.
Generations and labels are both cached in the run directory, so a rerun after a crash generates and
verifies only what is missing (labels are keyed by the checker version too, so a better checker relabels).
A check that could not finish (a timeout, a dead worker) is no label: it counts as not correct in pass@k,
is reported (per subset, by kind, in results.json and the table) and is never cached, so a rerun checks
its record again instead of reusing a "wrong" nobody decided.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from libra.data.commands import named_path
from libra.data.jsonl import DataError, write_jsonl
from libra.data.sources import Problem, load_problems
from libra.eval.generations import GenerationStore, KeyedStore, Request, run_generation
from libra.eval.options import add_eval_arguments, engine_from_args, prepare_sampling
from libra.eval.rundir import ResultsTable, content_key, publish, settings, usage_error
from libra.judge import REASONING_PROMPT
from libra.models.checks import check_model_dir, weights_fingerprint
from libra.report.markdown import percent
from libra.rollout.types import Engine, SamplingParams

DEFAULT_PROMPT = REASONING_PROMPT  # the RL reasoning task asks the same way


class LabelStore(KeyedStore):
    """``labels.jsonl``: ``{key, id, labels}``, keyed by generation record, gold answer and checker version."""

    required = {"labels": list}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate 1 - C(n-c, k) / C(n, k), as the product prod_{i=n-c+1}^{n} (1 - k/i):
    no huge binomials, no cancellation."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,8, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"every k must be >= 1, got {text!r}")
    return tuple(ks)


def prompt_template(text: str) -> str:
    """``--prompt-template``: a file holding the template, or the template itself; it must contain {question}."""
    path = Path(text)
    template = path.read_text(encoding="utf-8").removesuffix("\n") if path.is_file() else text
    if "{question}" not in template:
        raise argparse.ArgumentTypeError(f"the prompt template must contain {{question}}: {text!r}")
    return template


def build_requests(problems: Sequence[Problem], template: str, chat: bool) -> list[Request]:
    """One request per problem. ``str.replace`` scans only the template, so braces in a question are kept."""
    out = []
    for p in problems:
        text = template.replace("{question}", p.question)
        out.append(Request(f"{p.subset}/{p.problem_id}", [{"role": "user", "content": text}] if chat else text))
    return out


@dataclass(frozen=True)
class RecordLabels:
    """One record's samples as checked: ``labels`` are pass@k's marks (a failed check reads False, since
    nothing was decided), ``failures`` each sample's failed-check kind ("timeout", "worker_error") or None."""

    labels: list[bool]
    failures: list[str | None]


def label_records(problems: Sequence[Problem], records: Sequence[dict], store: LabelStore, *, timeout: float,
                  workers: int | None, progress: bool) -> list[RecordLabels]:
    """Correctness of every sample of every record; only records without cached labels are verified, and
    only records whose every check finished are cached (the others are checked again on the next run)."""
    from libra.verify import CHECKER_VERSION, verify_many

    keys = [content_key(rec["key"], p.gold, CHECKER_VERSION) for p, rec in zip(problems, records)]
    todo = [i for i, k in enumerate(keys) if k not in store]
    fresh: dict[int, RecordLabels] = {}
    if todo:
        verdicts = verify_many([(s["text"], problems[i].gold) for i in todo for s in records[i]["samples"]],
                               timeout=timeout, workers=workers, progress=progress, explain=True)
        pos = 0
        for i in todo:
            mine = verdicts[pos:pos + len(records[i]["samples"])]
            fresh[i] = RecordLabels([v.correct for v in mine], [v.failure for v in mine])
            pos += len(mine)
        store.append([{"key": keys[i], "id": records[i]["id"], "labels": got.labels}
                      for i, got in fresh.items() if not any(got.failures)])
    return [fresh[i] if i in fresh else RecordLabels(store.get(k)["labels"], [None] * len(records[i]["samples"]))
            for i, k in enumerate(keys)]


def subset_metrics(rows: Sequence[dict], ks: Sequence[int]) -> dict:
    """Mean pass@k over problems, mean tokens per sample, the share of samples cut at --max-tokens and the
    number of samples whose answer check failed (counted as not correct)."""
    return {"problems": len(rows), **{f"pass@{k}": float(np.mean([r[f"pass@{k}"] for r in rows])) for k in ks},
            "mean_tokens": float(np.mean([t for r in rows for t in r["num_tokens"]])),
            "truncated_rate": float(np.mean([f == "length" for r in rows for f in r["finish_reasons"]])),
            "check_failed": sum(r["check_failed"] for r in rows)}


def failure_note(failures: dict[str, int]) -> list[str]:
    """The report's warning when some checks failed: those samples count as not correct without a decision."""
    total = sum(failures.values())
    if not total:
        return []
    kinds = ", ".join(f"{kind}: {count}" for kind, count in failures.items())
    return [f"**{total} answer check{'' if total == 1 else 's'} failed ({kinds})**: no decision was made "
            "on those samples; they count as not correct in pass@k and are not cached, so a rerun checks them "
            "again (a larger --timeout may settle them)."]


def register(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("passk", help="pass@k of a policy on problem sets with gold answers",
                         description="Sample n answers per problem, label them with the rule-based checker, "
                                     "report unbiased pass@k per subset and their mean. --limit applies to each "
                                     "problem set.")
    p.add_argument("--problems", type=named_path, action="append", required=True, metavar="NAME=PATH",
                   help="a problem set (problem/question + answer) and its name in the report (repeatable)")
    p.add_argument("--k", type=parse_ks, default=(1, 4, 8), help="comma-separated k values, each <= --n (1,4,8)")
    p.add_argument("--prompt-template", type=prompt_template, default=DEFAULT_PROMPT,
                   help="user message with {question} (text or a file); default asks for a \\boxed{} answer")
    p.add_argument("--raw-prompt", action="store_true",
                   help="send the prompt as plain text, not as a chat message (models without a chat template)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per answer check")
    p.add_argument("--workers", type=int, help="answer-checking processes (default: CPU count)")
    add_eval_arguments(p, n=8, temperature=0.6)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, *, engine=None) -> int:
    """The command: options -> ``evaluate``. ``engine``: an already started engine to use instead of the one
    the options describe (not closed here)."""
    if args.k[-1] > args.n:
        return usage_error("passk", f"--k {','.join(map(str, args.k))} has k > --n {args.n}: pass@k needs k <= n "
                                    "samples per problem")
    check_model_dir(args.model)
    problems: list[Problem] = []
    for name, path in args.problems:
        loaded = load_problems(path, name)[:args.limit]
        if not loaded:
            raise DataError(path, None, None, "no problems")
        seen: set[str] = set()
        for p in loaded:
            if p.problem_id in seen:
                raise DataError(path, None, "unique_id", f"duplicate problem id {p.problem_id!r}")
            seen.add(p.problem_id)
        problems += loaded
    requests = build_requests(problems, args.prompt_template, not args.raw_prompt)
    params = prepare_sampling(args, requests, args.problems[0][1])
    try:
        evaluate(problems, out=args.out, sampling=params, model=args.model, ks=args.k, engine=engine,
                 engine_factory=None if engine is not None else (lambda: engine_from_args(args)),
                 prompt_template=args.prompt_template, chat=not args.raw_prompt, timeout=args.timeout,
                 workers=args.workers, chunk=args.chunk, progress=not args.no_progress, settings=settings(args))
    except KeyboardInterrupt:
        return 130
    return 0


def evaluate(problems: Sequence[Problem], *, out: str | Path, sampling: SamplingParams, model: str,
             ks: Sequence[int] = (1,), engine: Engine | None = None,
             engine_factory: Callable[[], Engine] | None = None, prompt_template: str = DEFAULT_PROMPT,
             chat: bool = True, fingerprint: str | None = None, timeout: float = 5.0, workers: int | None = None,
             chunk: int = 64, progress: bool = True, plots: bool = True, quiet: bool = False,
             settings: dict | None = None) -> dict:
    """pass@k of a policy on ``problems`` (``load_problems``), ``sampling.n`` samples each, labelled by the
    rule-based checker; writes generations.jsonl and labels.jsonl (both resumable; failed checks are not
    labels: counted in ``check_failures`` and checked again on a rerun), predictions.jsonl, results.json,
    report.md and (with ``plots``) passk.png into ``out`` and returns the results.
    ``engine`` / ``engine_factory`` / ``fingerprint``: as in ``libra.eval.libra_bench.evaluate``."""
    ks = tuple(sorted(ks))
    if ks[-1] > sampling.n:
        raise ValueError(f"k={ks[-1]} exceeds the {sampling.n} samples per problem")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    template_key = content_key(prompt_template, "chat" if chat else "text")
    requests = build_requests(problems, prompt_template, chat)
    fingerprint = fingerprint or weights_fingerprint(model)
    gen = run_generation(requests, sampling, GenerationStore(out / "generations.jsonl"), template=template_key,
                         model_id=fingerprint, engine=engine, engine_factory=engine_factory, chunk=chunk,
                         progress=progress, verbose=not quiet)
    records = gen.records
    labels = label_records(problems, records, LabelStore(out / "labels.jsonl"), timeout=timeout, workers=workers,
                           progress=progress)
    from libra.verify import extract_answer

    rows = [{"id": rec["id"], "subset": p.subset, "problem_id": p.problem_id, "gold": p.gold,
             "correct": sum(got.labels), "n": len(got.labels),
             **{f"pass@{k}": pass_at_k(len(got.labels), sum(got.labels), k) for k in ks},
             "labels": got.labels, "failures": got.failures,
             "check_failed": sum(kind is not None for kind in got.failures),
             "answers": [extract_answer(s["text"]) for s in rec["samples"]],
             "finish_reasons": [s["finish_reason"] for s in rec["samples"]],
             "num_tokens": [s["num_tokens"] for s in rec["samples"]]}
            for p, rec, got in zip(problems, records, labels)]
    files = {"generations": out / "generations.jsonl", "labels": out / "labels.jsonl",
             "predictions": out / "predictions.jsonl"}
    if plots:
        files["plot"] = out / "passk.png"
    write_jsonl(files["predictions"], rows)
    subsets = {name: subset_metrics([r for r in rows if r["subset"] == name], ks)
               for name in dict.fromkeys(p.subset for p in problems)}
    average = {f"pass@{k}": float(np.mean([m[f"pass@{k}"] for m in subsets.values()])) for k in ks}
    failures = dict(sorted(Counter(kind for r in rows for kind in r["failures"] if kind is not None).items()))
    if plots:
        from libra.report.curves import passk_curves

        curves = {name: {k: m[f"pass@{k}"] for k in ks} for name, m in subsets.items()}
        if len(subsets) > 1:
            curves["mean"] = {k: average[f"pass@{k}"] for k in ks}
        passk_curves(curves, files["plot"],
                     f"{Path(model).name}: pass@k (n={sampling.n}, T={sampling.temperature:g})")
    results = {"benchmark": "passk", "settings": settings if settings is not None else {},
               "prompt_template": prompt_template, "model": model, "model_fingerprint": fingerprint,
               "sampling": sampling.to_dict(), "n": sampling.n, "k": list(ks), "generated_now": gen.generated,
               "reused": gen.reused, "subsets": subsets, "mean": average, "check_failures": failures}
    table = ResultsTable(f"pass@k of {Path(model).name} (n={sampling.n}, temperature {sampling.temperature:g})",
                         ["subset", "problems", *[f"pass@{k}" for k in ks], "mean tokens", "truncated", "check failed"],
                         [[name, m["problems"], *[percent(m[f"pass@{k}"]) for k in ks], f"{m['mean_tokens']:.0f}",
                           percent(m["truncated_rate"]), m["check_failed"]] for name, m in subsets.items()]
                         + [["mean", sum(m["problems"] for m in subsets.values()),
                             *[percent(average[f"pass@{k}"]) for k in ks], "", "", sum(failures.values())]])
    notes = [*failure_note(failures),
             f"pass@k: unbiased estimator 1 - C(n-c, k)/C(n, k) over n = {sampling.n} samples per problem "
             "(c correct), averaged over problems; `mean` is the unweighted mean over subsets. Samples are labelled "
             "by the rule-based answer checker (last \\boxed{} answer against the gold answer)."]
    if plots:
        notes.append("![pass@k](passk.png)")
    return publish(out, results, table, notes, files, quiet=quiet)
