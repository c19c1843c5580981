"""The Libra-Mini report: one table like the paper's (accuracy, confusion, macro-F1, invalid rate per
variant, the teacher beside them), the paper's claims checked against what this run measured (each with a
paired bootstrap interval and, where the issue set one, its target), each thinking judge's lines scored
against the truth, held-out accuracy against RL step (Fig. 3a), the RL training curves, the downstream
study (Fig. 2) with best-of-n selection beside it, and the targets this run is held to, met or not.
Everything is read back from the stage outputs, so the report of a resumed run is the same as that of an
uninterrupted one. ``libra reproduce`` pools these per-run results over seeds (``reproduce.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from libra.data.jsonl import write_json
from libra.eval.libra_bench import right_per_row as bench_right_per_row
from libra.eval.metrics import paired_difference_ci
from libra.mini.runs import TEACHER, VARIANTS
from libra.mini.thinking_check import check_eval
from libra.report.curves import correlation_scatter, training_curves
from libra.report.markdown import markdown_table, percent
from libra.report.plots import accuracy_bars
from libra.report.tables import print_results_table

INVALID_TARGET = 0.10  # RL-zero must write valid verdicts
FLAGS_TARGET = 0.90  # the thinking SFT judge's flags, right on equal and on differing numbers alike
SPEARMAN_DPO_TARGET, SPEARMAN_BEST_OF_N_TARGET = 0.6, 0.8
# (better, worse, the paper's claim, the margin in points this run is asked to show)
CLAIMS = (
    ("thinking-sft", "direct-sft", "a judge that thinks beats one that answers directly", 5.0),
    ("thinking-sft", "base", "SFT on rejection-sampled judgments beats the base model", 0.0),
    ("sft-rl", "thinking-sft", "GRPO on verifiable judging improves the SFT judge", 5.0),
    ("rl-zero", "base", "GRPO from the base model (RL-zero) makes it a judge", 10.0),
    ("sft-rl", "rl-zero", "SFT before RL beats RL from the base model (RL-zero)", 0.0),
    ("sft-rl", "teacher", "the RL judge beats the teacher it was distilled from (the reward is exact)", 0.0),
)
CHECKED = ("thinking-sft", "sft-rl", TEACHER)  # the judges that write the teacher's checking layout
CURVE_KEYS = ("reward", "accuracy", "uniform_groups", "entropy", "response_length", "kl")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def right_per_row(out: Path, variant: str) -> dict[str, float]:
    """Per held-out row, the share of the variant's judgments of it that are right (``libra_bench.right_per_row``)."""
    return bench_right_per_row(out / "eval" / variant / "predictions.jsonl")


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None below three points or with a
    constant side, where it is undefined."""
    if len(x) < 3:
        return None

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            r[v == value] = r[v == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def status(difference: float, ci95, target: float) -> str:
    """How a claim stands on its paired interval: "shown" (interval above 0 and the margin reached),
    "shown, below the +N target", "not shown (CI spans 0)", or "opposite shown" (interval below 0)."""
    low, high = ci95
    if low > 0:
        return "shown" if 100 * difference >= target else f"shown, below the +{target:.0f} target"
    return "opposite shown" if high < 0 else "not shown (CI spans 0)"


def met(difference: float, ci95, target: float) -> bool:
    """A comparison target: the interval above 0 and the difference at least ``target`` points."""
    return ci95[0] > 0 and 100 * difference >= target


def _rl_evals(out: Path, name: str) -> list[dict]:
    """Held-out accuracy at each evaluated RL step (the GRPO run's ``evals/step_*/results.json``)."""
    points = []
    for path in sorted((out / name / "run" / "evals").glob("step_*/results.json")):
        metrics = json.loads(path.read_text())["metrics"]
        points.append({"step": int(path.parent.name.split("_")[1]), "eval_accuracy": metrics["accuracy"],
                       "eval_invalid": metrics["invalid_rate"]})
    return points


def collect(out: Path, judge_rl: bool = False) -> dict:
    variants = {}
    for name in (*VARIANTS, TEACHER):
        m = json.loads((out / "eval" / name / "results.json").read_text())["metrics"]
        variants[name] = {k: m[k] for k in ("rows", "n", "accuracy", "average", "macro_f1", "invalid_rate", "confusion",
                                            "mean_judgment_tokens")}
    curves = {name: [{k: r[k] for k in ("step", *CURVE_KEYS) if k in r}  # rollout steps (not the step-0 eval)
                     for r in _jsonl(out / name / "run" / "metrics.jsonl") if "reward" in r]
              for name in ("rl-zero", "sft-rl")}
    downstream = json.loads((out / "downstream" / "downstream.json").read_text())
    judged = {n: j for n, j in downstream["judges"].items() if n in variants and "pass_at_1" in j}
    downstream["spearman_bench_accuracy_vs_pass_at_1"] = spearman(
        [variants[n]["accuracy"] for n in judged], [j["pass_at_1"] for j in judged.values()])
    downstream["spearman_judges"] = list(judged)
    picked = {n: j for n, j in downstream["judges"].items() if n in variants}
    downstream["spearman_bench_accuracy_vs_best_of_n"] = spearman(
        [variants[n]["accuracy"] for n in picked], [j["best_of_n"] for j in picked.values()])
    return {
        "variants": variants,
        "rl_curves": curves,
        "rl_heldout": {name: _rl_evals(out, name) for name in ("rl-zero", "sft-rl")},
        "claims": [_claim(out, variants, *claim) for claim in CLAIMS],
        "thinking_check": {name: check_eval(out / "eval" / name, out / "data" / "bench.jsonl")
                           for name in CHECKED},
        "downstream": downstream,
        "v2v": json.loads((out / "data" / "stats.json").read_text())["table1"],
        "rejection_sampling": json.loads((out / "judging-data" / "rejection_stats.json").read_text()),
        **({"judge_rl": json.loads((out / "judge-rl" / "judge_rl.json").read_text())} if judge_rl else {}),
    }


def _claim(out: Path, variants: dict, better: str, worse: str, text: str, target: float) -> dict:
    difference = variants[better]["accuracy"] - variants[worse]["accuracy"]
    low, high = paired_difference_ci(right_per_row(out, better), right_per_row(out, worse))
    return {"better": better, "worse": worse, "claim": text, "difference": difference, "ci95": [low, high],
            "target_points": target, "status": status(difference, (low, high), target)}


def best_judge(results: dict) -> str | None:
    """The judge with the best bench accuracy among those whose DPO ran (it found pairs)."""
    judged = results["downstream"]["spearman_judges"]
    return max(judged, key=lambda n: results["variants"][n]["accuracy"]) if judged else None


def targets(results: dict, wall_s: float, budget_s: float) -> list[dict]:
    """The targets this run is held to, with what it measured and whether each is met, so a target missed
    is stated by the run itself. A comparison is met when its paired 95% interval lies above zero and the
    difference reaches its margin."""
    claims = {(c["better"], c["worse"]): c for c in results["claims"]}

    def beats(better: str, worse: str) -> dict:
        c = claims[(better, worse)]
        margin = c["target_points"]
        return {"target": f"{better} beats {worse}" + (f" by >= {margin:.0f} points" if margin else "") + ", CI > 0",
                "measured": _points(c["difference"], c["ci95"]), "met": met(c["difference"], c["ci95"], margin)}

    invalid = results["variants"]["rl-zero"]["invalid_rate"]
    check = results["thinking_check"]["thinking-sft"]
    flags = [check["flags_right_equal"], check["flags_right_differ"]]
    out = [beats("thinking-sft", "direct-sft"), beats("sft-rl", "thinking-sft"), beats("rl-zero", "base"),
           {"target": f"rl-zero invalid verdicts <= {percent(INVALID_TARGET)}%", "measured": f"{percent(invalid)}%",
            "met": invalid <= INVALID_TARGET},
           beats("sft-rl", "rl-zero"), beats("sft-rl", "teacher"),
           {"target": f"thinking-sft flags right >= {percent(FLAGS_TARGET, 0)}% on equal and on differing numbers",
            "measured": " / ".join(f"{percent(f)}%" for f in flags),
            "met": all(f is not None and f >= FLAGS_TARGET for f in flags)}]
    d = results["downstream"]
    gold = d["judges"]["gold"]
    trained = "pass_at_1" in gold
    out.append({"target": "DPO on gold-labelled pairs beats the untrained policy, CI > 0",
                "measured": _points(gold["pass_at_1"] - d["untrained_pass_at_1"], gold["vs_untrained_ci95"])
                if trained else "no pairs", "met": trained and gold["vs_untrained_ci95"][0] > 0})
    best = best_judge(results)
    dpo_target = "the best judge's DPO policy beats the untrained policy, CI > 0"
    if best:
        j = d["judges"][best]
        out.append({"target": dpo_target, "measured": f"{best}: " + _points(j["pass_at_1"] - d["untrained_pass_at_1"],
                                                                          j["vs_untrained_ci95"]),
                    "met": j["vs_untrained_ci95"][0] > 0})
    else:
        out.append({"target": dpo_target, "measured": "no judge produced DPO pairs", "met": False})
    for key, name, goal in (("spearman_bench_accuracy_vs_pass_at_1", "pass@1 after DPO", SPEARMAN_DPO_TARGET),
                            ("spearman_bench_accuracy_vs_best_of_n", "best-of-n pass@1", SPEARMAN_BEST_OF_N_TARGET)):
        rho = d[key]
        out.append({"target": f"Spearman(bench accuracy, {name}) >= {goal}",
                    "measured": "undefined" if rho is None else f"{rho:+.2f}", "met": rho is not None and rho >= goal})
    out.append({"target": f"wall time <= {budget_s:.0f} s", "measured": f"{wall_s:.0f} s", "met": wall_s <= budget_s})
    return out


def _points(difference: float, ci95) -> str:
    return f"{100 * difference:+.1f} ({100 * ci95[0]:+.1f} to {100 * ci95[1]:+.1f})"


def _downstream_rows(d: dict, variants: dict) -> list[list]:
    untrained = d["untrained_pass_at_1"]
    rows = [["(untrained policy)", "", "", "", percent(untrained), "", percent(untrained), ""]]
    for name, j in d["judges"].items():
        bench = percent(variants[name]["accuracy"]) if name in variants else "(gold labels)"
        dpo = ([percent(j["pass_at_1"]), _points(j["pass_at_1"] - untrained, j["vs_untrained_ci95"])]
               if "pass_at_1" in j else ["no pairs: no DPO", ""])
        rows.append([name, bench, percent(j["accuracy_on_policy_samples"]), j["pairs"], *dpo, percent(j["best_of_n"]),
                     _points(j["best_of_n"] - untrained, j["best_of_n_vs_untrained_ci95"])])
    return rows


def _rho(value: float | None) -> str:
    return "undefined (fewer than 3 judges, or a constant side)" if value is None else f"{value:+.2f}"


def _judge_rl_section(j: dict, out: Path) -> tuple[list[str], list[str], list[list]]:
    """report.md's judge-as-reward section (``libra.mini.judge_rl``), its table, and its plot written."""
    from libra.mini.downstream import UNTRAINED

    p = j["pass_at_1"]
    rows = [["untrained", "", percent(p[UNTRAINED]), ""]]
    for arm, reward in (("gold", "rule: verify_answer vs gold"), ("judge", f"judge: {j['judge']} (no gold read)")):
        rows.append([arm, reward, percent(p[arm]), _points(p[arm] - p[UNTRAINED], j["vs_untrained_ci95"][arm])])
    headers = ["policy", "GRPO reward", "pass@1", "vs untrained (95% CI)"]
    training_curves({arm: j["logs"][arm] for arm in ("gold", "judge")}, ["reward", "accuracy"], out / "judge_rl.png",
                    "Policy GRPO on unlabelled problems: rule vs judge reward")
    jr = j["judge_reward"]
    low, high = j["judge_vs_gold_ci95"]
    body = [
        "## A judge as the RL reward (`--judge-rl`)",
        f"GRPO of the downstream policy for {j['steps']} steps on the {j['train_problems']} judge-labelled "
        f"problems, rewarded by the gold rule or by the {j['judge']} judge alone; pass@1 over "
        f"{j['policy_samples']} samples on each of {j['test_problems']} test problems (paired bootstrap).",
        markdown_table(headers, rows).rstrip(),
        f"Judge vs gold reward: {100 * (p['judge'] - p['gold']):+.1f} points ({100 * low:+.1f} to {100 * high:+.1f}). "
        f"During the judge-rewarded run (means over steps): the judge said 'correct' to "
        f"{percent(jr.get('judge_correct', 0))}% of rollouts, agreed with the rule check on "
        f"{percent(jr.get('judge_agreement', 0))}%, gave no valid verdict on {percent(jr.get('judge_invalid', 0))}% "
        f"and found {percent(jr.get('judge_too_long', 0))}% too long for its context.",
        "![judge as reward](judge_rl.png)",
    ]
    return body, headers, rows


def write_report(out: Path, cfg, wall_s: float, stages, budget_s: float, scope: str = "") -> dict:
    """results.json, report.md and the plots of one run; ``scope`` says what a run of this size can show."""
    results = {"config": cfg.__dict__, "wall_time_s": wall_s, "budget_s": budget_s,
               "stages": {"reused": stages.reused, "built_s": stages.built, "keys": stages.keys},
               **collect(out, cfg.judge_rl)}
    results["targets"] = targets(results, wall_s, budget_s)
    write_json(out / "results.json", results)
    variants = results["variants"]
    headers = ["judge", "accuracy", "macro-F1", "invalid", "TP", "FN", "FP", "TN", "tokens"]
    rows = [[name, percent(v["accuracy"]), percent(v["macro_f1"]), percent(v["invalid_rate"]),
             v["confusion"]["tp"], v["confusion"]["fn"], v["confusion"]["fp"], v["confusion"]["tn"],
             f"{v['mean_judgment_tokens']:.0f}"] for name, v in variants.items()]
    accuracy_bars({n: {"n": v["n"], "accuracy": v["accuracy"]} for n, v in variants.items()},
                  out / "accuracy.png", "Mini Libra Bench accuracy by judge")
    curves = {k: v for k, v in results["rl_curves"].items() if v}
    if curves:
        keys = [k for k in CURVE_KEYS if all(k in r for c in curves.values() for r in c)]
        training_curves(curves, keys, out / "rl_curves.png", "GRPO on verifiable judging (training prompts)")
    heldout = {k: v for k, v in results["rl_heldout"].items() if v}
    if heldout:
        training_curves(heldout, ["eval_accuracy", "eval_invalid"], out / "rl_heldout.png",
                        "Held-out Mini Libra Bench during RL (Fig. 3a)")
    d = results["downstream"]
    downstream_plots(out, {n: (variants[n]["accuracy"], j) for n, j in d["judges"].items() if n in variants})
    n = variants["base"]["rows"]
    claims = [[c["claim"], f"{c['better']} vs {c['worse']}", c["status"], f"{100 * c['difference']:+.1f}",
               f"{100 * c['ci95'][0]:+.1f} to {100 * c['ci95'][1]:+.1f}",
               f"{c['target_points']:+.0f}" if c["target_points"] else ""] for c in results["claims"]]
    claim_headers = ["claim", "comparison", "status", "points", "paired 95% CI", "target"]
    down_rows = _downstream_rows(d, variants)
    rs = results["rejection_sampling"]
    judge_rl_body, jrl_headers, jrl_rows = _judge_rl_section(results["judge_rl"], out) if cfg.judge_rl else ([], [], [])
    check_rows = [[name, *(percent(c[k]) if c[k] is not None else "" for k in CHECK_KEYS)]
                  for name, c in results["thinking_check"].items()]
    target_rows = [[t["target"], t["measured"], "yes" if t["met"] else "no"] for t in results["targets"]]
    body = [
        "# Libra-Mini",
        *([scope] if scope else []),
        f"Held-out Mini Libra Bench: {n} rows (balanced correct / incorrect per source model, problems "
        f"unseen in training). The paper's protocol: thinking judges sampled {cfg.eval_samples} times per row at "
        f"temperature {cfg.eval_temperature}, the direct-verdict judge greedy once; accuracy over every judgment, "
        f"macro-F1 and invalid rate in %; TP..TN: the confusion matrix over judgments with "
        f"'correct' as the positive class (invalid verdicts count as wrong); tokens: mean judgment length. "
        f"Intervals: paired bootstrap over rows (each row's share of right judgments). "
        f"`teacher` is the programmatic thinking teacher of rejection sampling (slips in "
        f"{cfg.teacher_error_rate:.0%} of its checks, skims {cfg.teacher_skim_rate:.0%} of its judgments), scored by "
        f"the same harness.",
        markdown_table(headers, rows).rstrip(),
        "## The paper's claims on this run",
        "A claim is *shown* when its paired 95% interval lies above 0 and the difference reaches its target "
        "margin (where it has one).",
        markdown_table(claim_headers, claims).rstrip(),
        "## How the thinking judges check",
        CHECK_TEXT,
        markdown_table(CHECK_HEADERS, check_rows).rstrip(),
        f"Rejection sampling: {rs['kept']} thinking judgments kept of {rs['samples']} teacher samples "
        f"(acceptance {percent(rs['acceptance'])}%).",
        "## Downstream: judge-labelled DPO and best-of-n (section 6)",
        downstream_text(d),
        markdown_table(DOWN_HEADERS, down_rows).rstrip(),
        f"Spearman rank correlation over the judges of bench accuracy and pass@1 after DPO "
        f"({len(d['spearman_judges'])} judges with pairs): {_rho(d['spearman_bench_accuracy_vs_pass_at_1'])}; "
        f"of bench accuracy and best-of-{d['policy_samples']} pass@1: "
        f"{_rho(d['spearman_bench_accuracy_vs_best_of_n'])}.",
        "![accuracy](accuracy.png)\n![held-out during RL](rl_heldout.png)\n![RL curves](rl_curves.png)\n"
        "![downstream](downstream.png)\n![best-of-n](best_of_n.png)",
        *judge_rl_body,
        "## Targets",
        markdown_table(TARGET_HEADERS, target_rows).rstrip(),
        f"Wall time {wall_s:.0f} s (budget {budget_s:.0f} s); stages reused from an earlier run: "
        f"{', '.join(stages.reused) or 'none'}.",
    ]
    (out / "report.md").write_text("\n\n".join(body) + "\n")
    print_results_table(f"Libra-Mini: {n} held-out rows", headers, rows)
    print_results_table("The paper's claims, as measured", claim_headers, claims)
    print_results_table("How the thinking judges check (% of checking judgments)", CHECK_HEADERS, check_rows)
    print_results_table("Downstream: DPO on judge-labelled pairs, and best-of-n", DOWN_HEADERS, down_rows)
    if cfg.judge_rl:
        print_results_table("Policy GRPO with a judge as the reward", jrl_headers, jrl_rows)
    print_results_table("Targets", TARGET_HEADERS, target_rows)
    print(f"wall time {wall_s:.0f} s (budget {budget_s:.0f} s); report: {out / 'report.md'}", flush=True)
    return results


CHECK_KEYS = ("skims", "checks", "sum_right", "answer_right", "flags_right_equal", "flags_right_differ",
              "verdict_follows_flags")
CHECK_HEADERS = ["judge", "skims", "checks", "sum right", "answer copied right", "flags right (numbers equal)",
                 "flags right (numbers differ)", "verdict follows flags"]
CHECK_TEXT = ("Each line of every held-out judgment scored against the truth (`libra/mini/thinking_check.py`): skims "
              "and checks as % of judgments; the rest as % of checking judgments: the recomputed sum against a + b, "
              "the copy of the response's answer, the flags against the two numbers the judge itself wrote "
              "(split by whether they are equal), and whether the verdict follows the flags.")
DOWN_HEADERS = ["judge", "bench accuracy", "accuracy on policy samples", "DPO pairs", "pass@1 after DPO",
                "DPO vs untrained (95% CI)", "best-of-n pass@1", "best-of-n vs untrained (95% CI)"]
TARGET_HEADERS = ["target", "measured (95% CI)", "met"]


def downstream_text(d: dict) -> str:
    return (f"A weak policy ({percent(d['labelled_accuracy_of_policy'])}% of its {d['labelled_solutions']} sampled "
            f"solutions to the labelled problems correct) is trained by DPO on each judge's pairs; pass@1 over "
            f"{d['policy_samples']} samples on each of {d['test_problems']} other held-out problems. Best-of-n: "
            f"each judge labels the untrained policy's {d['policy_samples']} samples of each test problem and one it "
            f"judged correct is picked (uniformly among those; among all when it judged none correct), scored by "
            f"the expected correctness of the pick; no training. Intervals: paired bootstrap over problems against "
            f"the untrained policy's pass@1.")


def downstream_plots(out: Path, judges: dict[str, tuple[float, dict]]) -> None:
    """The paper's Fig. 2 scatter for DPO (judges with pairs) and for best-of-n (every judge)."""
    dpo = {n: (acc, j["pass_at_1"]) for n, (acc, j) in judges.items() if "pass_at_1" in j}
    if dpo:
        correlation_scatter(dpo, out / "downstream.png", "judge accuracy on the Mini Libra Bench (%)",
                            "policy pass@1 after DPO (%)", "Judge accuracy vs downstream pass@1 (Fig. 2)")
    picks = {n: (acc, j["best_of_n"]) for n, (acc, j) in judges.items()}
    if picks:
        correlation_scatter(picks, out / "best_of_n.png", "judge accuracy on the Mini Libra Bench (%)",
                            "best-of-n pass@1 (%)", "Judge accuracy vs best-of-n pass@1")
