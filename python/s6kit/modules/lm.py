"""A Mamba language model with mamba_ssm's layout (models/mixer_seq_simple.py).

    tokens -> backbone.embedding -> [backbone.layers.i: norm -> mixer (+ norm2 -> mlp)] x n_layer
           -> backbone.norm_f -> lm_head (tied to the embedding)

Each layer is pre-norm with the residual stream carried beside the hidden states (kept in float32
with ``residual_in_fp32``), exactly as mamba_ssm's ``Block`` does without its fused add+norm kernel
(``fused_add_norm`` is accepted and computes the same thing). State-dict keys are mamba_ssm's, so
its checkpoints load with ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import namedtuple
from functools import partial
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MambaConfig
from .generation import GenerationMixin
from .mamba import InferenceParams, Mamba
from .norm import RMSNorm

CausalLMOutput = namedtuple("CausalLMOutput", ["logits"])


class GatedMLP(nn.Module):
    """fc2(a * silu(g)) with [a; g] = fc1(x): mamba_ssm's MLP for d_intermediate > 0."""

    def __init__(self, in_features: int, hidden_features: int, multiple_of: int = 128,
                 device=None, dtype=None):
        super().__init__()
        hidden = (hidden_features + multiple_of - 1) // multiple_of * multiple_of
        self.fc1 = nn.Linear(in_features, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, in_features, bias=False, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.silu(gate))


class Block(nn.Module):
    """norm -> mixer (and norm2 -> mlp), returning (hidden_states, residual) as mamba_ssm."""

    def __init__(self, d_model: int, mixer: Mamba, norm_cls, mlp: Optional[nn.Module],
                 residual_in_fp32: bool):
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.norm = norm_cls(d_model)
        self.mixer = mixer
        if mlp is not None:
            self.norm2 = norm_cls(d_model)
            self.mlp = mlp
        else:
            self.mlp = None

    def _add_norm(self, hidden_states: Tensor, residual: Optional[Tensor], norm: nn.Module):
        residual = hidden_states if residual is None else hidden_states + residual
        hidden_states = norm(residual.to(dtype=norm.weight.dtype))
        if self.residual_in_fp32:
            residual = residual.to(torch.float32)
        return hidden_states, residual

    def forward(self, hidden_states: Tensor, residual: Optional[Tensor] = None,
                inference_params: Optional[InferenceParams] = None):
        hidden_states, residual = self._add_norm(hidden_states, residual, self.norm)
        hidden_states = self.mixer(hidden_states, inference_params=inference_params)
        if self.mlp is not None:
            hidden_states, residual = self._add_norm(hidden_states, residual, self.norm2)
            hidden_states = self.mlp(hidden_states)
        return hidden_states, residual

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int, dtype=None, **kwargs):
        return self.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype, **kwargs)


class MixerModel(nn.Module):
    """Embedding, the stack of blocks and the final norm (mamba_ssm's ``backbone``)."""

    def __init__(self, config: MambaConfig, vocab_size: int, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.residual_in_fp32 = config.residual_in_fp32
        self.embedding = nn.Embedding(vocab_size, config.d_model, **factory)
        norm_cls = partial(RMSNorm if config.rms_norm else nn.LayerNorm, eps=1e-5, **factory)
        ssm_cfg = {k: v for k, v in config.ssm_cfg.items() if k != "layer"}
        layers = []
        for i in range(config.n_layer):
            mixer = Mamba(config.d_model, layer_idx=i, **ssm_cfg, **factory)
            mlp = GatedMLP(config.d_model, config.d_intermediate, **factory) if config.d_intermediate > 0 else None
            layers.append(Block(config.d_model, mixer, norm_cls, mlp, config.residual_in_fp32))
        self.layers = nn.ModuleList(layers)
        self.norm_f = norm_cls(config.d_model)

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int, dtype=None, **kwargs):
        return {i: layer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype, **kwargs)
                for i, layer in enumerate(self.layers)}

    def forward(self, input_ids: Tensor, inference_params: Optional[InferenceParams] = None,
                **mixer_kwargs) -> Tensor:
        hidden_states = self.embedding(input_ids)
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(hidden_states, residual, inference_params=inference_params)
        residual = hidden_states if residual is None else hidden_states + residual
        return self.norm_f(residual.to(dtype=self.norm_f.weight.dtype))


def _init_weights(module: nn.Module, n_layer: int, initializer_range: float = 0.02,
                  rescale_prenorm_residual: bool = True, n_residuals_per_layer: int = 1) -> None:
    """mamba_ssm's initialisation: zero Linear biases (except dt_proj's), N(0, 0.02) embeddings,
    and the output projections of each residual branch scaled by 1/sqrt(#residuals) (GPT-2)."""
    if isinstance(module, nn.Linear):
        if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual:
        for name, p in module.named_parameters():
            if name in ("out_proj.weight", "fc2.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(n_residuals_per_layer * n_layer)


def _check_config(config: MambaConfig) -> None:
    if config.attn_layer_idx:
        raise ValueError("MambaLMHeadModel: attention layers (config.attn_layer_idx) are not supported by s6kit")
    layer = config.ssm_cfg.get("layer", "Mamba1")
    if layer != "Mamba1":
        raise ValueError(f"MambaLMHeadModel: config.ssm_cfg['layer'] must be 'Mamba1', got {layer!r}")
    if config.ssm_cfg.get("reorder", False) and not config.allow_noncausal_reorder:
        raise ValueError(
            "MambaLMHeadModel: ssm_cfg['reorder']=True makes the language model non-causal: the "
            "soft reordering mixes every token of the sequence into every position, so position l "
            "sees tokens after l and next-token training leaks the answer. Set "
            "config.allow_noncausal_reorder=True to build it anyway (e.g. for bidirectional tasks)."
        )


class MambaLMHeadModel(nn.Module, GenerationMixin):
    """The language model: ``backbone`` (a :class:`MixerModel`) and a tied ``lm_head``."""

    def __init__(self, config: MambaConfig, initializer_cfg: Optional[dict] = None, device=None, dtype=None):
        super().__init__()
        _check_config(config)
        self.config = config
        vocab_size = config.vocab_size
        if vocab_size % config.pad_vocab_size_multiple != 0:
            vocab_size += config.pad_vocab_size_multiple - vocab_size % config.pad_vocab_size_multiple
        self.backbone = MixerModel(config, vocab_size, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.d_model, vocab_size, bias=False, device=device, dtype=dtype)
        self.apply(partial(_init_weights, n_layer=config.n_layer, **(initializer_cfg or {}),
                           n_residuals_per_layer=1 if config.d_intermediate == 0 else 2))
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    @property
    def reorders(self) -> bool:
        """True when some block reorders tokens (the model is then non-causal)."""
        return any(layer.mixer.reorder for layer in self.backbone.layers)

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int, dtype=None, **kwargs):
        return self.backbone.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype, **kwargs)

    def forward(self, input_ids: Tensor, position_ids=None, inference_params: Optional[InferenceParams] = None,
                num_last_tokens: int = 0, **mixer_kwargs) -> CausalLMOutput:
        """input_ids (batch, L) -> CausalLMOutput(logits (batch, L, padded vocab)).

        ``num_last_tokens > 0`` computes the logits of the last positions only.
        """
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
            shape = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ValueError(f"MambaLMHeadModel: argument 'input_ids' must be an integer tensor (batch, L), got {shape}")
        hidden_states = self.backbone(input_ids, inference_params=inference_params)
        if num_last_tokens > 0:
            hidden_states = hidden_states[:, -num_last_tokens:]
        return CausalLMOutput(logits=self.lm_head(hidden_states))

    @classmethod
    def from_pretrained(cls, directory, device=None, dtype=None, **kwargs) -> "MambaLMHeadModel":
        """Load a mamba_ssm-format checkpoint from a local directory (config.json and
        pytorch_model.bin, as mamba_ssm saves them). s6kit downloads nothing."""
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "pytorch_model.bin").is_file():
            raise ValueError(
                f"from_pretrained: argument 'directory' must be a local directory holding config.json and "
                f"pytorch_model.bin, got {str(directory)!r} (s6kit does not download checkpoints)"
            )
        fields = json.loads((directory / "config.json").read_text())
        unknown = set(fields) - {f.name for f in dataclasses.fields(MambaConfig)}
        if unknown:
            raise ValueError(f"from_pretrained: config.json has keys MambaConfig does not know: {sorted(unknown)}")
        model = cls(MambaConfig(**fields), device=device, dtype=dtype, **kwargs)
        state = torch.load(directory / "pytorch_model.bin", map_location=device or "cpu", weights_only=True)
        model.load_state_dict(state)
        return model

    def save_pretrained(self, directory) -> None:
        """Write config.json and pytorch_model.bin in mamba_ssm's format."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "pytorch_model.bin")
        (directory / "config.json").write_text(json.dumps(dataclasses.asdict(self.config), indent=2))

    def io_eigenvalues(self) -> list[Tensor]:
        """Per layer, the eigenvalues of sym(S_C^T S_B) (see :meth:`Mamba.io_eigenvalues`)."""
        return [layer.mixer.io_eigenvalues() for layer in self.backbone.layers]
