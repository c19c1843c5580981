"""Plots of the evaluation commands (pairwise judging, scalar reward models, pass@k), as PNG files.

Matplotlib's object API on a bare ``Figure`` renders with Agg and touches no global pyplot state, so
plotting works on headless machines and from worker threads alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from libra.report.plots import save_png


def pairwise_bars(groups: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Horizontal bars of accuracy, accuracy (both orders) and consistency, one group of bars per row."""
    metrics = (("accuracy", "accuracy"), ("accuracy_both", "accuracy, both orders"), ("consistency", "consistency"))
    names = list(groups)
    fig = Figure(figsize=(8, 1.2 + 0.45 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    height = 0.8 / len(metrics)
    for i, (key, label) in enumerate(metrics):
        ax.barh(y + (i - 1) * height, [100 * groups[n][key] for n in names], height, label=label)
    ax.set_yticks(y, [f"{n} (n={groups[n]['n']})" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("%")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return save_png(fig, path)


def score_histogram(scores: Sequence[float], labels: Sequence[bool], thresholds: Mapping[str, float],
                    path: Path, title: str) -> Path:
    """Reward-model scores of correct and of incorrect responses, with the threshold(s) drawn across."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    bins = np.histogram_bin_edges(scores, bins=min(50, max(5, len(scores) // 10)))
    ax.hist(scores[labels], bins=bins, alpha=0.6, label=f"correct (n={labels.sum()})")
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label=f"incorrect (n={(~labels).sum()})")
    for (name, value), style in zip(thresholds.items(), ("-", "--", ":")):
        ax.axvline(value, color="black", linestyle=style, label=f"{name} = {value:.4g}")
    ax.set_xlabel("score")
    ax.set_ylabel("responses")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_png(fig, path)


def threshold_curve(thresholds: Sequence[float], averages: Sequence[float], best: float, path: Path,
                    title: str) -> Path:
    """Average-over-subsets accuracy as a function of the decision threshold, the best one marked."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(thresholds, 100 * np.asarray(averages), marker=".", markersize=3)
    ax.axvline(best, color="black", linestyle="--", label=f"best threshold = {best:.4g}")
    ax.set_xlabel("threshold (score >= threshold is judged correct)")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_png(fig, path)


def passk_curves(curves: Mapping[str, Mapping[int, float]], path: Path, title: str) -> Path:
    """pass@k against k (log2 axis), one line per subset."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [100 * curve[k] for k in ks], marker="o", label=name)
    ks = sorted({k for curve in curves.values() for k in curve})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 100)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_png(fig, path)


def training_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str], path: Path,
                    title: str) -> Path:
    """One panel per metric in ``keys`` (e.g. reward, accuracy), one line per run, over optimizer steps;
    ``curves`` maps a run name to its per-step records (``metrics.jsonl`` rows)."""
    fig = Figure(figsize=(4.2 * len(keys), 3.2))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for name, records in curves.items():
            ax.plot([r["step"] for r in records], [r[key] for r in records], marker=".", label=name)
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, y=1.03)  # above the panel titles (the PNG is cropped to its content)
    return save_png(fig, path)


def correlation_scatter(points: Mapping[str, tuple[float, float]], path: Path, xlabel: str, ylabel: str,
                        title: str) -> Path:
    """One labelled point per run (e.g. a judge's bench accuracy against the pass@1 of the policy it
    trained), the paper's Fig. 2 layout; values in [0, 1] are drawn as percentages."""
    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    for name, (x, y) in points.items():
        ax.scatter([100 * x], [100 * y], s=24)
        ax.annotate(name, (100 * x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_png(fig, path)
