"""PNG plots for evaluation reports.

Figures are built with ``matplotlib.figure.Figure`` and written by the Agg renderer that ``savefig``
picks for PNG: pyplot is never imported, so no GUI backend is chosen, no display is needed and no global
figure state leaks between calls (evaluations run on headless servers and inside test processes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from matplotlib.figure import Figure

_DPI = 120


def confusion_heatmap(confusion: Mapping[str, int], path: str | os.PathLike, title: str) -> Path:
    """The 2 x 3 matrix of a binary judge: true label (correct / incorrect) by prediction (correct /
    incorrect / invalid), as ``libra.eval.metrics.Confusion`` counts them; cells show count and row share."""
    matrix = [[confusion["tp"], confusion["fn"], confusion["invalid_pos"]],
              [confusion["fp"], confusion["tn"], confusion["invalid_neg"]]]
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    for r, row in enumerate(matrix):
        total = sum(row)
        for c, count in enumerate(row):
            share = f"\n{100 * count / total:.0f}%" if total else ""
            dark = count > 0.6 * max(max(m) for m in matrix)
            ax.text(c, r, f"{count}{share}", ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(3), ["correct", "incorrect", "invalid"])
    ax.set_yticks(range(2), ["correct", "incorrect"])
    ax.set_xlabel("judge's prediction")
    ax.set_ylabel("true label")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return save_png(fig, path)


def accuracy_bars(groups: Mapping[str, Mapping], path: str | os.PathLike, title: str,
                  average: float | None = None) -> Path:
    """Horizontal bars of accuracy (%) per group (``{name: {"n", "accuracy"}}``, e.g. per subset or per
    source model), each labelled with its value and size; ``average`` draws a dashed line (named in the title,
    as a legend would cover the bar labels)."""
    names = list(groups)
    values = [100 * groups[name]["accuracy"] for name in names]
    fig = Figure(figsize=(6.4, 1.2 + 0.38 * max(len(names), 1)))
    ax = fig.subplots()
    ax.barh(range(len(names)), values, color="#4c72b0")
    for i, (name, value) in enumerate(zip(names, values)):
        ax.text(min(value, 100) + 1, i, f"{value:.1f} (n={groups[name]['n']})", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()  # first group on top, as in the tables
    ax.set_xlim(0, 125)  # room for the value labels right of a 100% bar
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("accuracy (%)")
    if average is not None:
        ax.axvline(100 * average, color="#c44e52", linestyle="--", linewidth=1)
        title += f" (dashed: Average {100 * average:.1f})"
    ax.set_title(title)
    return save_png(fig, path)


def reliability_diagram(report: Mapping, path: str | os.PathLike, title: str, *,
                        xlabel: str = "judge's confidence (share of samples saying correct)") -> Path:
    """Share of correct responses against mean confidence per bin (``libra.eval.calibration.reliability``),
    the diagonal for a calibrated judge, bar width showing the bin and its count printed above it."""
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
    for b in report["bins"]:
        if b["count"]:
            ax.bar(b["lo"], b["accuracy"], width=b["hi"] - b["lo"], align="edge", color="#4c72b0", alpha=0.75,
                   edgecolor="white")
            ax.plot(b["confidence"], b["accuracy"], "o", color="#c44e52", markersize=4)
            ax.text((b["lo"] + b["hi"]) / 2, min(b["accuracy"] + 0.02, 1.02), str(b["count"]), ha="center",
                    fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of responses that are correct")
    ax.set_title(f"{title} (ECE {report['ece']:.3f})" if report.get("ece") is not None else title)
    return save_png(fig, path)


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG (parent folders created), cropped to its content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path
