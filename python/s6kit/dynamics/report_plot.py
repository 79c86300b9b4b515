"""Drawing of an inspection Report: eigenvalues of mu per layer and token norms across layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .inspection import Report


def plot_report(report: Report, path) -> Path:
    """Write a PNG: left, the nonzero eigenvalues of sym(S_C^T S_B) per layer with the sign counts;
    right (when the report has token norms), mean, spread (std) and range of ||x_l|| per stage."""
    if not isinstance(report, Report):
        raise ValueError(f"argument 'report' must be a Report, got {type(report).__name__}")
    if not report.layers:
        raise ValueError("argument 'report' has no layers to draw")
    panels = 2 if report.token_norms is not None else 1
    fig = Figure(figsize=(6 * panels, 4.5))
    FigureCanvasAgg(fig)

    ax = fig.add_subplot(1, panels, 1)
    for i, layer in enumerate(report.layers):
        ev = layer.eigenvalues
        ax.scatter(np.full(ev.size, i), ev, s=8, c=np.where(ev > 0, "tab:red", "tab:blue"))
        ax.annotate(f"+{layer.n_positive}/-{layer.n_negative}", (i, float(ev.max()) if ev.size else 0.0),
                    textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("eigenvalues of sym(S_C^T S_B)")
    ax.set_title("input-output matrix per layer (red > 0: divergent)", fontsize=9)

    if report.token_norms is not None:
        norms = report.token_norms
        stage = np.arange(len(norms.stages))
        ax = fig.add_subplot(1, panels, 2)
        ax.fill_between(stage, norms.min, norms.max, color="tab:blue", alpha=0.15, label="min-max")
        ax.fill_between(stage, np.maximum(norms.mean - norms.std, norms.min), norms.mean + norms.std,
                        color="tab:blue", alpha=0.35, label="mean +- std")
        ax.plot(stage, norms.mean, "o-", color="tab:blue", ms=3, label="mean")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("stage (0 = input, k = after layer k)")
        ax.set_ylabel("token norm ||x_l||")
        ax.set_title("token norm evolution (paper, figures 7/8)", fontsize=9)
        ax.legend(fontsize=7)

    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
