"""Libra Bench results as a reader sees them: the paper's Table 2 row per judge, report.md's sections
(settings, confusion matrix, thresholds, source models, confidence and calibration) and the PNGs: pure
rendering of the metrics ``libra.eval.libra_bench`` computes, kept apart from the computing."""

from __future__ import annotations

from pathlib import Path

from libra.judge import judge_kind
from libra.report.markdown import markdown_table, percent

PLOTS = {"confusion": "confusion.png", "subsets": "accuracy_by_subset.png", "source_models": "accuracy_by_model.png"}
RELIABILITY_PLOT = "reliability.png"  # with n > 1 samples per row
VERDICT_RELIABILITY_PLOT = "reliability_verdict.png"  # with --verdict-confidence


def model_name(model: str) -> str:
    """A short name for tables: a local directory's name, or the hub id."""
    path = Path(model)
    return path.name if path.is_dir() else model


def accuracy_table(name: str, metrics: dict) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 2 layout: one row per judge, a column per subset, then Average (in %)."""
    subsets = list(metrics["subsets"])
    rows = [[name, *[percent(metrics["subsets"][s]["accuracy"]) for s in subsets], percent(metrics["average"])]]
    if "majority" in metrics:
        vote = metrics["majority"]
        rows.append([f"{name} (majority vote)", *[percent(vote["subsets"][s]["accuracy"]) for s in subsets],
                     percent(vote["average"])])
    if metrics.get("prompts_too_long"):
        rows.append(["prompts that do not fit the context (rows, judged wrong)",
                     *[metrics["prompts_too_long_by_subset"][s] for s in subsets], metrics["prompts_too_long"]])
    return ["Model", *subsets, "Average"], rows


def report_notes(resolved: dict, metrics: dict, *, plots: bool = True) -> list[str]:
    """report.md below the accuracy table: the settings, then the diagnostics behind the numbers, then the plots."""
    s = resolved["sampling"]
    ci = metrics["average_ci95"]
    c = metrics["confusion"]
    threshold = f", threshold {resolved['threshold']}" if judge_kind(resolved["verdict"]).uses_threshold else ""
    engine = f", engine {resolved['engine']}" if resolved.get("engine") else ""
    notes = [
        f"Bench `{resolved['bench']}` ({resolved['rows']} rows), template `{resolved['template']}` "
        f"({resolved['verdict']} verdicts, {resolved['verdict_mode']}{threshold}){engine}, model weights "
        f"{resolved['model_fingerprint']}, n={s['n']}, temperature {s['temperature']}, "
        f"max {s['max_tokens']} new tokens. Average 95% CI (bootstrap over rows): {percent(ci[0])} to "
        f"{percent(ci[1])}; accuracy over all {metrics['n']} judgments: {percent(metrics['accuracy'])}.",
        "## Confusion matrix (correct is the positive class)",
        markdown_table(["true label", "predicted correct", "predicted incorrect", "invalid"],
                       [["correct", c["tp"], c["fn"], c["invalid_pos"]],
                        ["incorrect", c["fp"], c["tn"], c["invalid_neg"]]]).rstrip(),
        markdown_table(["metric", "value"],
                       [["macro-F1 (%)", percent(metrics["macro_f1"])],
                        ["invalid rate (%)", percent(metrics["invalid_rate"])],
                        ["prompts that do not fit the context (rows)", metrics.get("prompts_too_long", 0)],
                        ["mean judgment length (tokens)", f"{metrics['mean_judgment_tokens']:.1f}"],
                        ["finish reasons", ", ".join(f"{k} {v}" for k, v in metrics["finish_reasons"].items())]]
                       ).rstrip(),
    ]
    if "by_threshold" in metrics:
        notes += ["## Accuracy by threshold (score >= t predicts 'correct', %)",
                  markdown_table(["threshold", "accuracy", "Average", "macro-F1"],
                                 [[t, percent(m["accuracy"]), percent(m["average"]), percent(m["macro_f1"])]
                                  for t, m in metrics["by_threshold"].items()]).rstrip()]
    notes += ["## Accuracy by source model (%)",
              markdown_table(["source model", "n", "accuracy"],
                             [[m, g["n"], percent(g["accuracy"])] for m, g in metrics["source_models"].items()]
                             ).rstrip()]
    if "confidence" in metrics:
        notes += confidence_notes(metrics["confidence"])
    if "verdict_confidence" in metrics:
        notes += verdict_confidence_notes(metrics["verdict_confidence"])
    if plots:
        shown = {**PLOTS, **({"reliability": RELIABILITY_PLOT} if "confidence" in metrics else {}),
                 **({"reliability_verdict": VERDICT_RELIABILITY_PLOT} if "verdict_confidence" in metrics else {})}
        notes += ["## Plots", "\n".join(f"![{key}]({file})" for key, file in shown.items())]
    return notes


def confidence_notes(conf: dict) -> list[str]:
    """report.md's confidence section: AUROC, ECE, accuracy against k, the chosen threshold."""
    return [
        f"## Confidence ({conf['samples_per_row']} samples per row: confidence = share of a row's valid samples "
        "judging 'correct')",
        markdown_table(["metric", "value"], calibration_rows(conf, "rows without a valid sample")).rstrip(),
        markdown_table(["k samples", "majority vote (%)", "mean confidence >= 0.5 (%)"],
                       [[k, percent(v["majority"]), percent(v["mean_confidence"])]
                        for k, v in conf["accuracy_vs_k"].items()]).rstrip(),
    ]


def verdict_confidence_notes(conf: dict) -> list[str]:
    """report.md's verdict-token confidence section."""
    mass = "-" if conf["mean_verdict_mass"] is None else f"{conf['mean_verdict_mass']:.3f}"
    return [
        "## Verdict-token confidence (P(correct) over the verdict labels written in place of the judge's own, "
        "mean over a row's judgments)",
        markdown_table(["metric", "value"], [
            *calibration_rows(conf, "rows without a scored verdict"),
            ["judgments scored / without a valid verdict",
             f"{conf['judgments_scored']} / {conf['judgments_without_verdict']}"],
            ["mean probability of writing a valid verdict there", mass]]).rstrip(),
    ]


def calibration_rows(conf: dict, missing: str) -> list[list]:
    """The table rows of one ``calibration.calibration`` result."""
    t = conf["chosen_threshold"]
    return [["AUROC (confidence vs label)", "-" if conf["auroc"] is None else f"{conf['auroc']:.3f}"],
            ["expected calibration error (10 bins)", "-" if conf["ece"] is None else f"{conf['ece']:.3f}"],
            [missing, conf["rows_without_confidence"]],
            [f"threshold chosen on {t['calibration_rows']} rows (seed {t['seed']})", f"{t['threshold']:.3f}"],
            [f"accuracy on the other {t['evaluation_rows']} rows at it (%)", percent(t["accuracy_at_threshold"])],
            ["... at the fixed 0.5 (%)", percent(t["accuracy_at_0.5"])]]


def write_plots(out: Path, metrics: dict, name: str) -> None:
    """The PNGs of a run, named as ``PLOTS`` (report.md links them)."""
    from libra.report.plots import accuracy_bars, confusion_heatmap, reliability_diagram  # matplotlib: only here

    confusion_heatmap(metrics["confusion"], out / PLOTS["confusion"], f"{name}: confusion matrix")
    accuracy_bars(metrics["subsets"], out / PLOTS["subsets"], f"{name}: accuracy by subset",
                  average=metrics["average"])
    accuracy_bars(metrics["source_models"], out / PLOTS["source_models"], f"{name}: accuracy by source model")
    if "confidence" in metrics:
        reliability_diagram(metrics["confidence"], out / RELIABILITY_PLOT, f"{name}: reliability")
    if "verdict_confidence" in metrics:
        reliability_diagram(metrics["verdict_confidence"], out / VERDICT_RELIABILITY_PLOT,
                            f"{name}: verdict-token reliability", xlabel="verdict token's P(correct)")
