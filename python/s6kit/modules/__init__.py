"""Mamba blocks and models on s6kit's kernels, with the paper's refinements as options."""
from .config import MambaConfig
from .generation import GenerationOutput, sample_tokens
from .lm import MambaLMHeadModel, MixerModel
from .mamba import InferenceParams, Mamba
from .norm import RMSNorm
from .reorder import TokenReorder
from .scan_backend import set_scan_backend
from .vision import MambaVisionClassifier, MambaVisionMixer

__all__ = [
    "Mamba",
    "InferenceParams",
    "MambaConfig",
    "MambaLMHeadModel",
    "MixerModel",
    "RMSNorm",
    "TokenReorder",
    "MambaVisionMixer",
    "MambaVisionClassifier",
    "GenerationOutput",
    "sample_tokens",
    "set_scan_backend",
]
