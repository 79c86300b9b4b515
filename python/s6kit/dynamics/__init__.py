"""Token-dynamics toolkit (paper, sections 3-4 and appendix B).

- :func:`simulate` integrates the continuous-time system of eq. 7/8 (eq. 9/11 for D = 1) and
  detects finite-time blow-up; :func:`hidden_attention` gives the matrix P of eq. 8/11.
- :func:`classify` names the scenario of Table 1 (D = 1) or of the appendix-B conjecture (D > 1).
- :func:`make_figures` draws figures 1, 2, 3 and 6 of the paper.
- :func:`inspect_model` reads the input-output matrices S_C^T S_B of a Mamba model and the token
  norms across its layers (figures 7/8); :func:`plot_report` draws them.

Needs scipy and matplotlib (``pip install s6kit[dynamics]``). The names load on first use, so
``s6kit.dynamics.cli`` can be registered in a command line that runs without them.
"""
from importlib import import_module

_EXPORTS = {
    "Trajectory": "integration",
    "simulate": "integration",
    "hidden_attention": "system",
    "softplus": "system",
    "classify": "scenarios",
    "sym_eigenvalues": "scenarios",
    "count_signs": "scenarios",
    "make_figures": "figures",
    "inspect_model": "inspection",
    "Report": "inspection",
    "LayerSpectrum": "inspection",
    "TokenNorms": "inspection",
    "plot_report": "report_plot",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 's6kit.dynamics' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
