"""Token-dynamics toolkit (paper, sections 3-4 and appendix B).

- :func:`simulate` integrates the continuous-time system of eq. 7/8 (eq. 9/11 for D = 1) and
  detects finite-time blow-up; :func:`hidden_attention` gives the matrix P of eq. 8/11.
- :func:`classify` names the scenario of Table 1 (D = 1) or of the appendix-B conjecture (D > 1).
- :func:`make_figures` draws figures 1, 2, 3 and 6 of the paper.
- :func:`inspect_model` reads the input-output matrices S_C^T S_B of a Mamba model and the token
  norms across its layers (figures 7/8); :func:`plot_report` draws them.

Needs scipy and matplotlib (``pip install s6kit[dynamics]``).
"""
from .classify import classify, count_signs, sym_eigenvalues
from .figures import make_figures
from .inspection import LayerSpectrum, Report, TokenNorms, inspect_model
from .report_plot import plot_report
from .simulate import Trajectory, simulate
from .system import hidden_attention, softplus

__all__ = [
    "Trajectory",
    "simulate",
    "hidden_attention",
    "softplus",
    "classify",
    "sym_eigenvalues",
    "count_signs",
    "make_figures",
    "inspect_model",
    "Report",
    "LayerSpectrum",
    "TokenNorms",
    "plot_report",
]
