"""Run a Hugging Face transformers Mamba model (MambaModel, MambaForCausalLM) on s6kit.

    model = MambaForCausalLM.from_pretrained(...)
    s6kit.integrations.transformers.patch(model)   # same weights, same outputs, s6kit's scan
    model.generate(...)                             # prefill + cached decoding work as before
    s6kit.integrations.transformers.unpatch(model)

``patch`` replaces the ``forward`` of every ``MambaMixer`` instance (not the class) with one that
follows transformers' own MambaMixer.forward step by step (padding mask, conv and recurrent states
in the ``Cache``, single-token decoding, the full-sequence path), with the selective scan and the
decoding step done by :func:`s6kit.selective_scan_fn` (a decoding step is a scan of length 1 from
the cached state). Written against the cache API of transformers 5 (``Cache.get_conv_state``,
``update_conv_state``, ``get_recurrent_state``, ``update_recurrent_state``); older versions are
refused with a message.

One behaviour is kept as transformers has it, so that outputs match: a forward of several tokens
on a cache that already holds states continues the convolution from the cached inputs but starts
the scan from a zero state.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.scan import selective_scan_fn

_PATCHED = "_s6kit_patched"


def _mask_padding(hidden_states: torch.Tensor, attention_mask):
    """Zero the padded positions (batch, L, channels), as transformers' apply_mask_to_padding_states."""
    if attention_mask is None:
        return hidden_states
    return (hidden_states * attention_mask[:, :, None]).to(hidden_states.dtype)


def _mixer_forward(self, hidden_states, cache=None, attention_mask=None, cache_params=None, **kwargs):
    """transformers' MambaMixer.forward with the scan and the decoding step on s6kit."""
    cache = cache if cache is not None else cache_params
    seq_len, dtype = hidden_states.shape[1], hidden_states.dtype
    conv_state = recurrent_state = None
    if cache is not None:
        conv_state = cache.get_conv_state(self.layer_idx, state_idx=0)
        recurrent_state = cache.get_recurrent_state(self.layer_idx, state_idx=0)

    hidden_states = _mask_padding(hidden_states, attention_mask)
    x, gate = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L)
    A = -torch.exp(self.A_log.float())

    # depthwise causal convolution, continuing from the cached inputs when there are some
    weight, channels = self.conv1d.weight, self.conv1d.weight.shape[0]
    if conv_state is not None and seq_len == 1 and not cache.is_recording_past(self.layer_idx):
        window = torch.cat([conv_state, x], dim=-1).to(weight.dtype)
        conv_state.copy_(window[:, :, -conv_state.shape[-1]:])
        x = F.conv1d(window, weight, self.conv1d.bias, groups=channels)[:, :, -seq_len:]
        x = self.act(x).to(dtype)
    else:
        if cache is not None:
            x = cache.update_conv_state(x, self.layer_idx, conv_kernel_size=self.conv_kernel_size)
        length = x.shape[-1]
        x = F.conv1d(x.to(weight.dtype), weight, self.conv1d.bias, padding=weight.shape[-1] - 1,
                     groups=channels)[:, :, :length]
        x = self.act(x).to(dtype)
        if cache is not None:
            x = x[:, :, -seq_len:]

    x = _mask_padding(x.transpose(1, 2), attention_mask)  # (batch, L, d_inner)
    time_step, B, C = torch.split(self.x_proj(x), [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
    time_step = self.dt_proj.weight @ time_step.transpose(1, 2)
    delta_bias = self.dt_proj.bias.float() if self.dt_proj.bias is not None else None
    u = x.transpose(1, 2)
    scan_args = (u, time_step.to(u.dtype), A, B.transpose(1, 2).to(u.dtype), C.transpose(1, 2).to(u.dtype),
                 self.D.float())
    scan_kwargs = dict(z=gate.to(u.dtype), delta_bias=delta_bias, delta_softplus=True)

    if recurrent_state is not None and seq_len == 1:
        # one decoding step: a scan of length 1 from the cached state, written back in place
        y, last_state = selective_scan_fn(*scan_args, **scan_kwargs, return_last_state=True,
                                          initial_state=recurrent_state)
        recurrent_state.copy_(last_state)
    elif cache is not None:
        y, last_state = selective_scan_fn(*scan_args, **scan_kwargs, return_last_state=True)
        cache.update_recurrent_state(last_state, self.layer_idx)
    else:
        y = selective_scan_fn(*scan_args, **scan_kwargs)
    return self.out_proj(y.transpose(1, 2).to(dtype))


def _mixer_class():
    try:
        from transformers import cache_utils
        from transformers.models.mamba.modeling_mamba import MambaMixer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"s6kit.integrations.transformers needs transformers with Mamba support: {err}") from err
    if not hasattr(cache_utils.Cache, "get_conv_state"):
        import transformers

        raise ValueError(
            "s6kit.integrations.transformers.patch follows the cache API of transformers 5 "
            f"(Cache.get_conv_state); the installed transformers is {transformers.__version__}"
        )
    return MambaMixer


def patch(model: nn.Module) -> nn.Module:
    """Run every MambaMixer of ``model`` on s6kit; returns ``model`` (patched in place)."""
    mixer_cls = _mixer_class()
    mixers = [m for m in model.modules() if isinstance(m, mixer_cls)]
    if not mixers:
        raise ValueError(f"patch: argument 'model' contains no transformers MambaMixer (got {type(model).__name__})")
    for mixer in mixers:
        mixer.forward = types.MethodType(_mixer_forward, mixer)
        setattr(mixer, _PATCHED, True)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo :func:`patch`: the mixers run transformers' own forward again."""
    for module in model.modules():
        if getattr(module, _PATCHED, False):
            del module.forward
            delattr(module, _PATCHED)
    return model


def is_patched(model: nn.Module) -> bool:
    return any(getattr(m, _PATCHED, False) for m in model.modules())
