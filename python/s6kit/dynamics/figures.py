"""Figures 1, 2, 3 and 6 of the paper from the parameters in their captions and appendix B.

Reading of the paper's numbers:
- Figures 1 and 2 list a = -1.08 and a = -1.80 although the text takes a > 0 (A = -a I). We read
  them as the diagonal entry of A, as appendix B writes "A = -0.370332 I_2", and use a = 1.08 and
  1.80. The scenarios do not depend on this choice (both signs give convergence in figure 1 and
  log-rate divergence in figure 2), but a < 0 makes exp(-a sum Delta) grow, outside Mamba's model.
- The captions of figures 2 and 3 call them "convergence scenario"; their parameters give the
  slow-divergence (mu > 0, S_Delta x_l0 < 0 for all l) and fast-divergence (mu > 0, S_Delta > 0,
  x0 > 0) scenarios, which is what the caption text then describes.
- Figure 6: the caption orders the panels A = two positive eigenvalues of mu, B = one positive,
  C = two negative ("in cases (A) and (B) all tokens diverge, in case (C) they converge"), while
  appendix B lists the parameter sets under the opposite letters (its "6A" set has eigenvalues
  -0.967 and -0.552). We follow the caption and assign each parameter set by its eigenvalues.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .scenarios import classify
from .integration import Trajectory, simulate
from .system import hidden_attention

DPI = 100


@dataclass(frozen=True)
class Case:
    """One parameter set of the paper: D = 1 (scalars, x0 (L,)) or D = 2 (matrices, x0 (L, 2))."""

    label: str
    mu: object
    s_delta: object
    a: object
    x0: tuple
    t_max: float
    scenario: str  # what the caption says the tokens do, in classify()'s words
    log_time: bool = False  # time axis in log scale (slow divergence)
    log_attention: bool = False  # heat maps of log10|P| (blow-up: P spans many decades)

    def simulate(self, num_points: int | None = 400) -> Trajectory:
        """The trajectory at num_points times (log-spaced for log_time), or at the solver's steps."""
        if num_points is None:
            t_eval = None
        elif self.log_time:
            t_eval = np.concatenate([[0.0], np.logspace(-3, np.log10(self.t_max), num_points - 1)])
        else:
            t_eval = np.linspace(0.0, self.t_max, num_points)
        return simulate(np.array(self.x0), np.array(self.mu), np.array(self.s_delta), np.array(self.a),
                        self.t_max, t_eval=t_eval)

    def classify(self) -> str:
        return classify(np.array(self.mu), np.array(self.s_delta), np.array(self.x0))


FIGURE_1 = Case(
    "Figure 1: convergence (mu = -1.58, S_Delta = -0.17, a = 1.08)", -1.58, -0.17, 1.08,
    (-1.79, -0.34, 0.46, -1.25, 0.83, -0.83, 1.81, -1.16, 0.13, -0.19), 100.0, "convergent",
)
FIGURE_2 = Case(
    "Figure 2: slow divergence (mu = 1.79, S_Delta = -0.71, a = 1.80)", 1.79, -0.71, 1.80,
    (1.55, 2.84, 3.81, 4.57, 5.99, 6.94, 7.71, 8.96, 9.59, 10.75), 1e6, "slow-divergent", log_time=True,
)
FIGURE_3 = Case(
    "Figure 3: fast divergence (mu = 0.76, S_Delta = 0.59, a = 1.66)", 0.76, 0.59, 1.66,
    (0.83, 0.91, 0.64, 0.78, 0.66, 0.99, 0.68, 0.72, 0.61, 0.90), 1.0, "fast-divergent",
    log_attention=True,
)
FIGURE_6 = (
    Case(
        "6A: mu has two positive eigenvalues (1.396, 0.190)",
        ((0.981721, -0.803219), (-0.342524, 0.605171)), ((0.653732, -0.228578), (-0.960714, -0.495344)),
        0.997408, ((1.1932, -0.702409), (-1.49159, -0.735305), (1.21287, -0.816296), (-0.462258, 1.44549)),
        10.0, "divergent",
    ),
    Case(
        "6B: mu has one positive, one negative eigenvalue (0.847, -0.741)",
        ((-0.155283, 0.542694), (0.989821, 0.260748)), ((0.430263, 0.555071), (-0.654555, 0.422737)),
        0.573698, ((1.39902, 1.60628), (-0.342366, -0.845203), (0.616744, 1.63846), (-0.185335, -1.34566)),
        10.0, "divergent",
    ),
    Case(
        "6C: mu has two negative eigenvalues (-0.967, -0.552)",
        ((-0.552679, -0.843293), (0.869146, -0.967042)), ((0.287585, 0.99662), (-0.201208, -0.964587)),
        0.370332, ((-1.47982, -0.228103), (-0.406453, 1.24415), (1.8491, -0.625385), (1.26989, -1.91216)),
        100.0, "convergent",
    ),
)


def _snapshot_indices(traj: Trajectory) -> list[int]:
    """Three sample indices: the start, the middle (in log time for long runs) and the end."""
    t = traj.t
    if t[-1] > 100.0:
        middle = int(np.searchsorted(t, np.sqrt(max(t[1], 1e-3) * t[-1])))
    else:
        middle = int(np.searchsorted(t, 0.5 * t[-1]))
    return sorted({0, min(middle, len(t) - 1), len(t) - 1})


def _draw_tokens_and_attention(fig: Figure, case: Case, traj: Trajectory) -> None:
    grid = fig.add_gridspec(1, 4, width_ratios=[2.2, 1, 1, 1], wspace=0.35, left=0.06, right=0.96, bottom=0.14)
    ax = fig.add_subplot(grid[0, 0])
    for token in range(traj.x.shape[1]):
        ax.plot(traj.t, traj.x[:, token], lw=1.2, label=f"x{token + 1}")
    if case.log_time:
        ax.set_xscale("symlog", linthresh=1e-2)
    if traj.blowup_time is not None:
        ax.set_yscale("symlog", linthresh=1.0)
        ax.axvline(traj.blowup_time, color="k", ls=":", lw=1)
    ax.set_xlabel("t (depth)")
    ax.set_ylabel("tokens x_l(t)")
    ax.set_title(case.label, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="best")
    for k, i in enumerate(_snapshot_indices(traj)):
        P = hidden_attention(traj.x[i], case.mu, case.s_delta, case.a)
        hax = fig.add_subplot(grid[0, k + 1])
        if case.log_attention:
            with np.errstate(divide="ignore"):
                shown = np.where(P != 0, np.log10(np.abs(P)), np.nan)  # zeros (l < j) stay blank
            image = hax.imshow(shown, cmap="magma")
            title = f"log10|P|, t = {traj.t[i]:.4g} (blank: 0)"
        else:
            bound = float(np.max(np.abs(P))) or 1.0
            image = hax.imshow(P, cmap="RdBu_r", vmin=-bound, vmax=bound)
            title = f"P(t), t = {traj.t[i]:.4g}"
        hax.set_title(title, fontsize=8)
        hax.set_xticks([])
        hax.set_yticks([])
        fig.colorbar(image, ax=hax, fraction=0.046, pad=0.04, format="%.2g").ax.tick_params(labelsize=6)


def _outcome(traj: Trajectory) -> str:
    biggest = float(np.max(np.abs(traj.x[-1])))
    if traj.status == "blowup":
        return f"x{traj.blowup_token + 1} blows up at t = {traj.blowup_time:.3g}"
    if traj.status == "threshold":
        return f"max|x| = {biggest:.2g} at t = {traj.t[-1]:.3g} (fast growth, no blow-up signature)"
    return f"max|x| = {biggest:.2g} at t = {traj.t[-1]:g}"


def _draw_planar(fig: Figure, cases, trajectories) -> None:
    for k, (case, traj) in enumerate(zip(cases, trajectories)):
        ax = fig.add_subplot(1, len(cases), k + 1)
        x0 = np.array(case.x0)
        box = 3.0 * float(np.max(np.abs(x0)))
        for token in range(x0.shape[0]):
            ax.plot(traj.x[:, token, 0], traj.x[:, token, 1], lw=1.3, label=f"x{token + 1}")
            ax.plot(*x0[token], "o", color=ax.lines[-1].get_color(), ms=4)
        ax.plot(0, 0, "k+", ms=8)
        ax.set_xlim(-box, box)
        ax.set_ylim(-box, box)
        ax.set_aspect("equal")
        ax.set_title(f"{case.label}\n{_outcome(traj)}", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def make_figures(out_dir) -> list[Path]:
    """Write fig1.png, fig2.png, fig3.png (1200 x 400 px) and fig6.png (1500 x 500 px) to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, case in ((1, FIGURE_1), (2, FIGURE_2), (3, FIGURE_3)):
        fig = Figure(figsize=(12, 4))
        # blow-up: the solver's own steps crowd near the singularity, where the curves turn
        traj = case.simulate(num_points=None if case.scenario == "fast-divergent" else 400)
        _draw_tokens_and_attention(fig, case, traj)
        paths.append(_save(fig, out / f"fig{number}.png"))
    fig = Figure(figsize=(15, 5))
    _draw_planar(fig, FIGURE_6, [case.simulate(num_points=None) for case in FIGURE_6])
    paths.append(_save(fig, out / "fig6.png"))
    return paths
