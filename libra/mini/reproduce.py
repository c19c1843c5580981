"""``libra reproduce``: Libra-Mini at full size once per seed, and one report of every claim per seed and
pooled over the seeds.

Each seed is a complete, resumable run in ``OUT/seed-N`` (its own report.md and results.json). Pooling:
a comparison of two judges over all seeds' held-out rows together, with a paired bootstrap that resamples
rows within each seed (``stratified_paired_ci``), so every seed keeps its weight; downstream comparisons
pool the test problems the same way; Spearman correlations pool the judges of every seed. Targets are
read as the results issue states them: some on every seed, some pooled.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from libra.data.jsonl import write_json
from libra.eval.metrics import stratified_paired_ci
from libra.mini.report import (
    CLAIMS,
    FLAGS_TARGET,
    INVALID_TARGET,
    SPEARMAN_BEST_OF_N_TARGET,
    SPEARMAN_DPO_TARGET,
    TARGET_HEADERS,
    best_judge,
    met,
    right_per_row,
    spearman,
    status,
)
from libra.mini.runs import TEACHER, VARIANTS
from libra.report.curves import correlation_scatter
from libra.report.markdown import markdown_table, percent
from libra.report.plots import accuracy_bars
from libra.report.tables import print_results_table

GOLD, UNTRAINED = "gold", "untrained"


def reproduce(out: Path, seeds: list[int], cfg, budget_s: float, scope: str = "") -> dict:
    """The pipeline for every seed (``OUT/seed-N``), then the combined report in ``out``."""
    from libra.mini.pipeline import run as run_pipeline

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds, got {seeds}")
    runs = {}
    for i, seed in enumerate(seeds):
        print(f"== seed {seed} ({i + 1} of {len(seeds)}) ==", flush=True)
        runs[seed] = run_pipeline(out / f"seed-{seed}", replace(cfg, seed=seed), budget_s, scope)
    return combine(out, runs, budget_s)


def _pooled(strata: list[tuple[dict, dict]]) -> tuple[float, list[float]]:
    """Mean difference over every item of every stratum, and its stratified paired 95% interval."""
    a = [v for s, _ in strata for v in s.values()]
    b = [v for _, s in strata for v in s.values()]
    return float(np.mean(a) - np.mean(b)), list(stratified_paired_ci(strata))


def _points(difference: float, ci95) -> str:
    return f"{100 * difference:+.1f} ({100 * ci95[0]:+.1f} to {100 * ci95[1]:+.1f})"


def combine(out: Path, runs: dict[int, dict], budget_s: float) -> dict:
    """results.json, report.md and plots over ``runs`` ({seed: that run's results.json content})."""
    seeds = sorted(runs)
    folders = {s: out / f"seed-{s}" for s in seeds}
    judges = (*VARIANTS, TEACHER)
    rights = {s: {j: right_per_row(folders[s], j) for j in judges} for s in seeds}
    accuracy = {j: {**{str(s): runs[s]["variants"][j]["accuracy"] for s in seeds},
                    "pooled": float(np.mean([v for s in seeds for v in rights[s][j].values()]))} for j in judges}
    claims = []
    for better, worse, text, target in CLAIMS:
        per_seed = {}
        for s in seeds:
            c = next(c for c in runs[s]["claims"] if (c["better"], c["worse"]) == (better, worse))
            per_seed[str(s)] = {"difference": c["difference"], "ci95": c["ci95"]}
        diff, ci = _pooled([(rights[s][better], rights[s][worse]) for s in seeds])
        claims.append({"better": better, "worse": worse, "claim": text, "target_points": target, "seeds": per_seed,
                       "pooled": {"difference": diff, "ci95": ci, "status": status(diff, ci, target)}})
    downstream = _downstream(runs, seeds)
    results = {"seeds": seeds, "budget_s_per_seed": budget_s, "accuracy": accuracy, "claims": claims,
               "thinking_check": {str(s): runs[s]["thinking_check"] for s in seeds}, "downstream": downstream,
               "wall_time_s": {str(s): runs[s]["wall_time_s"] for s in seeds},
               "per_seed_targets": {str(s): runs[s]["targets"] for s in seeds}}
    results["targets"] = targets(results, runs)
    write_json(out / "results.json", results)
    _write_report(out, results, runs)
    return results


def _downstream(runs: dict[int, dict], seeds: list[int]) -> dict:
    """Per seed and pooled: gold-pair DPO and the best judge's DPO against the untrained policy; Spearman of
    bench accuracy with pass@1 after DPO and with best-of-n pass@1 over the judges of every seed."""
    per = {s: runs[s]["downstream"] for s in seeds}
    problems = {s: per[s]["per_problem"] for s in seeds}

    def pooled_vs_untrained(name_of: dict[int, str], kind: str) -> dict:
        strata = [(problems[s][kind][name_of[s]], problems[s]["pass_at_1"][UNTRAINED]) for s in seeds
                  if name_of[s] in problems[s][kind]]
        if len(strata) < len(seeds):
            return {"difference": None, "ci95": None}
        diff, ci = _pooled(strata)
        return {"difference": diff, "ci95": ci}

    best = {s: best_judge(runs[s]) for s in seeds}
    points_dpo = [(runs[s]["variants"][j]["accuracy"], per[s]["judges"][j]["pass_at_1"])
                  for s in seeds for j in VARIANTS if "pass_at_1" in per[s]["judges"].get(j, {})]
    points_bon = [(runs[s]["variants"][j]["accuracy"], per[s]["judges"][j]["best_of_n"])
                  for s in seeds for j in VARIANTS if j in per[s]["judges"]]
    return {
        "best_judge": {str(s): best[s] for s in seeds},
        "gold_dpo_pooled": pooled_vs_untrained({s: GOLD for s in seeds}, "pass_at_1"),
        "best_judge_dpo_pooled": pooled_vs_untrained(best, "pass_at_1"),
        "best_judge_best_of_n_pooled": pooled_vs_untrained(best, "best_of_n"),
        "spearman_dpo": spearman(*zip(*points_dpo)) if points_dpo else None,
        "spearman_best_of_n": spearman(*zip(*points_bon)) if points_bon else None,
        "points_dpo": len(points_dpo), "points_best_of_n": len(points_bon),
    }


def targets(results: dict, runs: dict[int, dict]) -> list[dict]:
    """The full run's targets: the comparisons on every seed, the teacher and the best judge's DPO pooled,
    the Spearman correlations over the judges of all seeds, and the time per seed."""
    seeds = results["seeds"]
    by_pair = {(c["better"], c["worse"]): c for c in results["claims"]}
    out = []

    def every_seed(better: str, worse: str) -> None:
        c = by_pair[(better, worse)]
        margin = c["target_points"]
        measured = "; ".join(f"seed {s}: {_points(v['difference'], v['ci95'])}" for s, v in c["seeds"].items())
        out.append({"target": f"{better} beats {worse}" + (f" by >= {margin:.0f} points" if margin else "")
                    + ", CI > 0, every seed", "measured": measured,
                    "met": all(met(v["difference"], v["ci95"], margin) for v in c["seeds"].values())})

    every_seed("thinking-sft", "direct-sft")
    every_seed("sft-rl", "thinking-sft")
    every_seed("rl-zero", "base")
    invalid = {s: runs[s]["variants"]["rl-zero"]["invalid_rate"] for s in seeds}
    out.append({"target": f"rl-zero invalid verdicts <= {percent(INVALID_TARGET)}%, every seed",
                "measured": "; ".join(f"seed {s}: {percent(v)}%" for s, v in invalid.items()),
                "met": all(v <= INVALID_TARGET for v in invalid.values())})
    every_seed("sft-rl", "rl-zero")
    teacher = by_pair[("sft-rl", TEACHER)]["pooled"]
    out.append({"target": "sft-rl beats the teacher, pooled over seeds (CI > 0)",
                "measured": _points(teacher["difference"], teacher["ci95"]),
                "met": teacher["ci95"][0] > 0})
    flags = {s: (results["thinking_check"][str(s)]["thinking-sft"]["flags_right_equal"],
                 results["thinking_check"][str(s)]["thinking-sft"]["flags_right_differ"]) for s in seeds}
    out.append({"target": f"thinking-sft flags right >= {percent(FLAGS_TARGET, 0)}% on equal and on differing "
                          f"numbers, every seed",
                "measured": "; ".join(f"seed {s}: {percent(e)}% / {percent(d)}%" for s, (e, d) in flags.items()),
                "met": all(e is not None and d is not None and min(e, d) >= FLAGS_TARGET for e, d in flags.values())})
    gold = {s: runs[s]["downstream"]["judges"][GOLD] for s in seeds}
    out.append({"target": "DPO on gold-labelled pairs beats the untrained policy, CI > 0, every seed",
                "measured": "; ".join(
                    f"seed {s}: " + (_points(g["pass_at_1"] - runs[s]["downstream"]["untrained_pass_at_1"],
                                            g["vs_untrained_ci95"]) if "pass_at_1" in g else "no pairs")
                    for s, g in gold.items()),
                "met": all("pass_at_1" in g and g["vs_untrained_ci95"][0] > 0 for g in gold.values())})
    d = results["downstream"]
    best = d["best_judge_dpo_pooled"]
    out.append({"target": "the best judge's DPO policy beats the untrained policy, pooled over seeds (CI > 0)",
                "measured": "no pairs on some seed" if best["difference"] is None else
                ", ".join(f"{s}: {j}" for s, j in d["best_judge"].items()) + "; "
                + _points(best["difference"], best["ci95"]),
                "met": best["difference"] is not None and best["ci95"][0] > 0})
    for key, name, goal in (("spearman_dpo", "pass@1 after DPO", SPEARMAN_DPO_TARGET),
                            ("spearman_best_of_n", "best-of-n pass@1", SPEARMAN_BEST_OF_N_TARGET)):
        rho = d[key]
        out.append({"target": f"Spearman(bench accuracy, {name}) >= {goal}, over the judges of every seed",
                    "measured": "undefined" if rho is None else f"{rho:+.2f}", "met": rho is not None and rho >= goal})
    budget = results["budget_s_per_seed"]
    walls = results["wall_time_s"]
    out.append({"target": f"wall time <= {budget:.0f} s per seed",
                "measured": "; ".join(f"seed {s}: {w:.0f} s" for s, w in walls.items()),
                "met": all(w <= budget for w in walls.values())})
    return out


def _write_report(out: Path, results: dict, runs: dict[int, dict]) -> None:
    seeds = results["seeds"]
    cols = [f"seed {s}" for s in seeds]
    acc_rows = [[j, *(percent(v[str(s)]) for s in seeds), percent(v["pooled"])] for j, v in results["accuracy"].items()]
    acc_headers = ["judge", *cols, "pooled"]
    claim_rows = []
    for c in results["claims"]:
        p = c["pooled"]
        claim_rows.append([c["claim"], f"{c['better']} vs {c['worse']}",
                           *(_points(v["difference"], v["ci95"]) for v in c["seeds"].values()),
                           _points(p["difference"], p["ci95"]), p["status"],
                           f"{c['target_points']:+.0f}" if c["target_points"] else ""])
    claim_headers = ["claim", "comparison", *cols, "pooled", "pooled status", "target"]
    check_rows = []
    for s in seeds:
        for name in ("thinking-sft", "sft-rl", TEACHER):
            c = results["thinking_check"][str(s)][name]
            check_rows.append([name, s, *(percent(c[k]) if c[k] is not None else "" for k in
                                          ("skims", "sum_right", "answer_right", "flags_right_equal",
                                           "flags_right_differ"))])
    check_headers = ["judge", "seed", "skims", "sum right", "answer copied right", "flags right (equal)",
                     "flags right (differ)"]
    down_rows = []
    for s in seeds:
        d = runs[s]["downstream"]
        u = d["untrained_pass_at_1"]
        down_rows.append(["(untrained)", s, "", "", percent(u), "", percent(u)])
        for j, v in d["judges"].items():
            bench = percent(runs[s]["variants"][j]["accuracy"]) if j in runs[s]["variants"] else "(gold)"
            down_rows.append([j, s, bench, v["pairs"], percent(v["pass_at_1"]) if "pass_at_1" in v else "no pairs",
                              _points(v["pass_at_1"] - u, v["vs_untrained_ci95"]) if "pass_at_1" in v else "",
                              percent(v["best_of_n"])])
    down_headers = ["judge", "seed", "bench accuracy", "DPO pairs", "pass@1 after DPO", "DPO vs untrained (95% CI)",
                    "best-of-n pass@1"]
    target_rows = [[t["target"], t["measured"], "yes" if t["met"] else "no"] for t in results["targets"]]
    d = results["downstream"]
    accuracy_bars({f"{j} (pooled)": {"n": sum(runs[s]["variants"][j]["n"] for s in seeds), "accuracy": v["pooled"]}
                   for j, v in results["accuracy"].items()}, out / "accuracy.png",
                  f"Mini Libra Bench accuracy, pooled over seeds {', '.join(map(str, seeds))}")
    points = {f"{j}/{s}": (runs[s]["variants"][j]["accuracy"], runs[s]["downstream"]["judges"][j]["best_of_n"])
              for s in seeds for j in VARIANTS}
    correlation_scatter(points, out / "best_of_n.png", "judge accuracy on the Mini Libra Bench (%)",
                        "best-of-n pass@1 (%)", "Judge accuracy vs best-of-n pass@1 (judge/seed)")
    dpo = {f"{j}/{s}": (runs[s]["variants"][j]["accuracy"], runs[s]["downstream"]["judges"][j]["pass_at_1"])
           for s in seeds for j in VARIANTS if "pass_at_1" in runs[s]["downstream"]["judges"][j]}
    if dpo:
        correlation_scatter(dpo, out / "downstream.png", "judge accuracy on the Mini Libra Bench (%)",
                            "policy pass@1 after DPO (%)", "Judge accuracy vs pass@1 after DPO (judge/seed)")
    rho = {k: "undefined" if d[k] is None else f"{d[k]:+.2f}" for k in ("spearman_dpo", "spearman_best_of_n")}
    body = [
        f"# Libra-Mini, seeds {', '.join(map(str, seeds))}",
        "Every seed is a complete full-size run (`seed-N/report.md`). Pooled figures use every seed's held-out "
        "rows (or test problems) together; their paired bootstrap resamples within each seed. A claim is *shown* "
        "when its interval lies above 0 and the difference reaches its target margin.",
        "## Accuracy on the held-out Mini Libra Bench (%)",
        markdown_table(acc_headers, acc_rows).rstrip(),
        "## The paper's claims: points (95% CI)",
        markdown_table(claim_headers, claim_rows).rstrip(),
        "## How the thinking judges check (% of checking judgments; skims: % of judgments)",
        markdown_table(check_headers, check_rows).rstrip(),
        "## Downstream: judge-labelled DPO and best-of-n",
        markdown_table(down_headers, down_rows).rstrip(),
        f"Spearman over the judges of every seed: bench accuracy vs pass@1 after DPO {rho['spearman_dpo']} "
        f"({d['points_dpo']} judges with pairs); vs best-of-n pass@1 {rho['spearman_best_of_n']} "
        f"({d['points_best_of_n']} judges).",
        "![accuracy](accuracy.png)\n![downstream](downstream.png)\n![best-of-n](best_of_n.png)",
        "## Targets",
        markdown_table(TARGET_HEADERS, target_rows).rstrip(),
    ]
    (out / "report.md").write_text("\n\n".join(body) + "\n")
    print_results_table("Libra-Mini accuracy (%), per seed and pooled", acc_headers, acc_rows)
    print_results_table("The paper's claims: points (95% CI)", claim_headers, claim_rows)
    print_results_table("Targets", TARGET_HEADERS, target_rows)
    print(f"report: {out / 'report.md'}", flush=True)
