"""s6kit: fast selective state space (S6 / Mamba) layers with the token reordering, eigenvalue
constraints and token-dynamics tools of "Demystifying the Token Dynamics of Deep Selective State
Space Models" (ICLR 2025).
"""
from ._version import __version__
from .ops import (
    score_and_permute,
    score_and_permute_ref,
    selective_scan_fn,
    selective_scan_ref,
    soft_permute,
    soft_permute_ref,
    soft_sort_matrix,
)
from .modules import (
    InferenceParams,
    Mamba,
    MambaConfig,
    MambaLMHeadModel,
    MambaVisionClassifier,
    MambaVisionMixer,
    set_scan_backend,
)
from . import integrations

__all__ = [
    "__version__",
    "selective_scan_fn",
    "selective_scan_ref",
    "soft_permute",
    "score_and_permute",
    "soft_sort_matrix",
    "soft_permute_ref",
    "score_and_permute_ref",
    "Mamba",
    "InferenceParams",
    "MambaConfig",
    "MambaLMHeadModel",
    "MambaVisionMixer",
    "MambaVisionClassifier",
    "set_scan_backend",
    "integrations",
]
