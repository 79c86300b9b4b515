"""Which selective scan a block runs: s6kit's kernels or the plain-PyTorch reference.

Every block keeps the name of its backend in ``scan_backend``; ``set_scan_backend(model, name)`` sets
it on every block of a model (tests compare the two; the training benchmark times both).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..ops.scan import selective_scan_fn
from ..ops.scan_ref import selective_scan_ref

SCAN_BACKENDS: dict[str, Callable] = {"s6kit": selective_scan_fn, "reference": selective_scan_ref}


def scan_function(name: str) -> Callable:
    if name not in SCAN_BACKENDS:
        raise ValueError(f"scan_backend must be one of {tuple(SCAN_BACKENDS)}, got {name!r}")
    return SCAN_BACKENDS[name]


def set_scan_backend(model: nn.Module, name: str) -> nn.Module:
    """Run every s6kit block inside ``model`` on the scan ``name`` ("s6kit" or "reference")."""
    scan_function(name)
    for module in model.modules():
        if hasattr(module, "scan_backend"):
            module.scan_backend = name
    return model
