"""Configuration of the language model, with mamba_ssm's field names (models/config_mamba.py)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MambaConfig:
    """Fields as mamba_ssm's ``MambaConfig``; the block options go in ``ssm_cfg``.

    ``ssm_cfg`` holds keyword arguments of :class:`s6kit.Mamba` (d_state, d_conv, expand, ...,
    and the paper's ``reorder``, ``io_spectrum``, ``scalar_A``). ``allow_noncausal_reorder`` is
    s6kit's: a language model with ``reorder=True`` is built only when it is True, because
    reordering lets every position see tokens after it.
    """

    d_model: int = 2560
    d_intermediate: int = 0
    n_layer: int = 64
    vocab_size: int = 50277
    ssm_cfg: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    allow_noncausal_reorder: bool = False
