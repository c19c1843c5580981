"""The Libra-Mini report: one table like the paper's (accuracy, confusion, macro-F1, invalid rate per
variant), the orderings the paper claims checked against what this run measured, RL curves and an
accuracy bar chart. Everything is read back from the stage outputs, so the report of a resumed run is
the same as that of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from libra.data.jsonl import write_json
from libra.report.curves import training_curves
from libra.report.markdown import markdown_table, percent
from libra.report.plots import accuracy_bars
from libra.report.tables import print_results_table

BUDGET_S = 600
# (better, worse, the paper's claim): each is checked on this run and reported as measured.
CLAIMS = (
    ("thinking-sft", "direct-sft", "a judge that thinks beats one that answers directly"),
    ("thinking-sft", "base", "SFT on rejection-sampled judgments beats the base model"),
    ("sft-rl", "thinking-sft", "GRPO on verifiable judging improves the SFT judge"),
    ("sft-rl", "rl-zero", "SFT before RL beats RL from the base model (RL-zero)"),
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _right(out: Path, variant: str) -> dict[str, bool]:
    """Per judgment id, whether the variant judged it right (an invalid verdict is wrong)."""
    rows = _jsonl(out / "eval" / variant / "predictions.jsonl")
    return {f"{r['id']}#{r['sample']}": r["pred"] is not None and r["pred"] == r["label"] for r in rows}


def paired_difference(a: dict[str, bool], b: dict[str, bool], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(a) - accuracy(b) over the same judgments, resampled together
    (paired), so the interval reflects how the two judges differ on this bench, not bench size alone."""
    keys = sorted(a)
    diff = np.array([float(a[k]) - float(b[k]) for k in keys])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def _verdict(difference: float, low: float) -> str:
    if difference <= 0:
        return "no"
    return "yes" if low > 0 else "yes, within noise"


def collect(out: Path) -> dict:
    from libra.mini.pipeline import VARIANTS

    variants = {}
    for name in VARIANTS:
        m = json.loads((out / "eval" / name / "results.json").read_text())["metrics"]
        variants[name] = {k: m[k] for k in ("n", "accuracy", "average", "macro_f1", "invalid_rate", "confusion",
                                            "mean_judgment_tokens")}
    keys = ("step", "reward", "accuracy", "response_length", "kl", "entropy")
    curves = {name: [{k: r[k] for k in keys if k in r} for r in _jsonl(out / name / "run" / "metrics.jsonl")]
              for name in ("rl-zero", "sft-rl")}
    return {
        "variants": variants,
        "rl_curves": curves,
        "claims": [_claim(out, variants, a, b, text) for a, b, text in CLAIMS],
        "v2v": json.loads((out / "data" / "stats.json").read_text())["table1"],
        "rejection_sampling": json.loads((out / "judging-data" / "rejection_stats.json").read_text()),
    }


def _claim(out: Path, variants: dict, better: str, worse: str, text: str) -> dict:
    difference = variants[better]["accuracy"] - variants[worse]["accuracy"]
    low, high = paired_difference(_right(out, better), _right(out, worse))
    return {"better": better, "worse": worse, "claim": text, "difference": difference, "ci95": [low, high],
            "holds": _verdict(difference, low)}


def write_report(out: Path, cfg, wall_s: float) -> dict:
    results = {"config": cfg.__dict__, "wall_time_s": wall_s, "budget_s": BUDGET_S, **collect(out)}
    write_json(out / "results.json", results)
    variants = results["variants"]
    headers = ["variant", "accuracy", "macro-F1", "invalid", "TP", "FN", "FP", "TN", "tokens"]
    rows = [[name, percent(v["accuracy"]), percent(v["macro_f1"]), percent(v["invalid_rate"]),
             v["confusion"]["tp"], v["confusion"]["fn"], v["confusion"]["fp"], v["confusion"]["tn"],
             f"{v['mean_judgment_tokens']:.0f}"] for name, v in variants.items()]
    accuracy_bars({n: {"n": v["n"], "accuracy": v["accuracy"]} for n, v in variants.items()},
                  out / "accuracy.png", "Mini Libra Bench accuracy by variant")
    curves = {k: v for k, v in results["rl_curves"].items() if v}
    if curves:
        training_curves(curves, ["reward", "accuracy"], out / "rl_curves.png", "GRPO on verifiable judging")
    n = next(iter(variants.values()))["n"]
    claims = [[c["claim"], f"{c['better']} vs {c['worse']}", c["holds"], f"{100 * c['difference']:+.1f}",
               f"{100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f}"] for c in results["claims"]]
    rs = results["rejection_sampling"]
    body = [
        "# Libra-Mini",
        f"Held-out Mini Libra Bench: {n} judgments (balanced correct / incorrect per source model, problems "
        f"unseen in training). Accuracy, macro-F1 and invalid rate in %; TP..TN: the confusion matrix with "
        f"'correct' as the positive class (invalid verdicts count as wrong); tokens: mean judgment length.",
        markdown_table(headers, rows).rstrip(),
        "## The paper's orderings on this run",
        markdown_table(["claim", "comparison", "holds", "accuracy difference (points)", "paired 95% CI"],
                       claims).rstrip(),
        f"Rejection sampling: {rs['kept']} thinking judgments kept of {rs['samples']} teacher samples "
        f"(acceptance {percent(rs['acceptance'])}%).",
        "![accuracy](accuracy.png)\n![RL curves](rl_curves.png)",
        f"Wall time {wall_s:.0f} s (budget {BUDGET_S} s).",
    ]
    (out / "report.md").write_text("\n\n".join(body) + "\n")
    print_results_table(f"Libra-Mini: {n} held-out judgments", headers, rows)
    print_results_table("The paper's orderings, as measured", ["claim", "comparison", "holds", "points", "95% CI"],
                        claims)
    print(f"wall time {wall_s:.0f} s (budget {BUDGET_S} s); report: {out / 'report.md'}")
    return results
