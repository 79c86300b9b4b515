"""Token dynamics of a real Mamba model: the input-output matrices and the token norms per layer.

A Mamba mixer is any submodule with an ``x_proj`` (weight of shape (dt_rank + 2N, d_inner)) and a
``dt_proj`` (weight (d_inner, dt_rank)): s6kit's and mamba_ssm's ``Mamba`` and Hugging Face's
``MambaMixer`` alike. The rows of x_proj.weight are [W_dt; S_B; S_C], so the input-output matrix of
the paper is S_C^T S_B (d_inner, d_inner) and its symmetric part mu decides the scenario
(Remark 3: some positive eigenvalue -> divergent, all negative -> convergent).

mu has rank <= 2N, much less than d_inner in practice: with the QR factorisation
[S_B^T, S_C^T] = Q [R_B, R_C] (Q: d_inner x 2N, orthonormal columns),
S_C^T S_B = Q (R_C R_B^T) Q^T, so the eigenvalues of mu are those of the 2N x 2N symmetric matrix
sym(R_C R_B^T) plus d_inner - 2N exact zeros. The zeros (mu's null space) neither grow nor shrink
tokens and are reported but do not enter the scenario.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .scenarios import count_signs

# Computed eigenvalues with |lambda| <= ZERO_RTOL * max|lambda| count as zero (float32 weights).
ZERO_RTOL = 1e-6


@dataclass
class LayerSpectrum:
    """Eigenvalues of mu = sym(S_C^T S_B) of one mixer.

    eigenvalues: the min(d_inner, 2N) eigenvalues that can be nonzero, ascending; the other
    d_inner - 2N are exactly zero and counted in n_zero. scenario: "divergent" (some eigenvalue
    > 0), "convergent" (none > 0, some < 0) or "degenerate" (all zero).
    """

    name: str
    d_inner: int
    d_state: int
    dt_rank: int
    eigenvalues: np.ndarray
    n_positive: int
    n_negative: int
    n_zero: int
    scenario: str

    def to_dict(self) -> dict:
        return {
            "name": self.name, "d_inner": self.d_inner, "d_state": self.d_state, "dt_rank": self.dt_rank,
            "eigenvalues": [float(v) for v in self.eigenvalues], "n_positive": self.n_positive,
            "n_negative": self.n_negative, "n_zero": self.n_zero, "scenario": self.scenario,
        }


@dataclass
class TokenNorms:
    """Statistics of ||x_l|| over all tokens of the batch at each stage of the residual stream.

    stages[0] is "input" (the stream entering the first layer), then one entry per layer.
    """

    stages: list
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def to_dict(self) -> dict:
        return {"stages": list(self.stages), **{k: [float(v) for v in getattr(self, k)]
                                                for k in ("mean", "std", "min", "max")}}


@dataclass
class Report:
    layers: list = field(default_factory=list)  # LayerSpectrum per mixer, in module order
    token_norms: TokenNorms | None = None

    def to_dict(self) -> dict:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "token_norms": None if self.token_norms is None else self.token_norms.to_dict(),
        }


def _is_mixer(module: nn.Module) -> bool:
    return all(
        isinstance(getattr(module, attr, None), nn.Module)
        and isinstance(getattr(getattr(module, attr), "weight", None), torch.Tensor)
        and getattr(module, attr).weight.dim() == 2
        for attr in ("x_proj", "dt_proj")
    )


def find_mixers(model: nn.Module) -> list:
    """(name, module) of every Mamba mixer in ``model`` (module order)."""
    return [(name, module) for name, module in model.named_modules() if _is_mixer(module)]


def _sizes(name: str, mixer: nn.Module, weight: torch.Tensor) -> tuple[int, int, int]:
    """(d_inner, N, dt_rank) from the weights, checked against the attributes the mixer declares."""
    rows, d_inner = weight.shape
    dt_rank = mixer.dt_proj.weight.shape[1]
    if (rows - dt_rank) <= 0 or (rows - dt_rank) % 2:
        raise ValueError(
            f"mixer '{name}': x_proj.weight has {rows} rows, expected dt_rank + 2 * d_state with "
            f"dt_rank = {dt_rank} (dt_proj.weight.shape[1])"
        )
    d_state = (rows - dt_rank) // 2
    declared = {
        "dt_rank": getattr(mixer, "dt_rank", getattr(mixer, "time_step_rank", None)),
        "d_state": getattr(mixer, "d_state", getattr(mixer, "ssm_state_size", None)),
        "d_inner": getattr(mixer, "d_inner", getattr(mixer, "intermediate_size", None)),
    }
    found = {"dt_rank": dt_rank, "d_state": d_state, "d_inner": d_inner}
    for key, value in declared.items():
        if isinstance(value, int) and value != found[key]:
            raise ValueError(f"mixer '{name}': attribute {key} = {value} but the x_proj/dt_proj weights give {found[key]}")
    return d_inner, d_state, dt_rank


def mu_eigenvalues(s_b: np.ndarray, s_c: np.ndarray) -> np.ndarray:
    """The min(D, 2N) possibly nonzero eigenvalues (ascending) of sym(S_C^T S_B); S_B, S_C (N, D)."""
    n, d = s_b.shape
    if d <= 2 * n:
        m = s_c.T @ s_b
        return np.linalg.eigvalsh(0.5 * (m + m.T))
    _, r = np.linalg.qr(np.concatenate([s_b.T, s_c.T], axis=1))  # [S_B^T, S_C^T] = Q R
    k = r[:, n:] @ r[:, :n].T  # Q^T (S_C^T S_B) Q = R_C R_B^T
    return np.linalg.eigvalsh(0.5 * (k + k.T))


def layer_spectrum(name: str, mixer: nn.Module, zero_rtol: float = ZERO_RTOL) -> LayerSpectrum:
    # through the attribute, so torch.nn.utils.parametrize'd weights give their current value
    weight = mixer.x_proj.weight.detach()
    d_inner, n, dt_rank = _sizes(name, mixer, weight)
    w = weight.to(device="cpu", dtype=torch.float64).numpy()
    ev = mu_eigenvalues(w[dt_rank:dt_rank + n], w[dt_rank + n:dt_rank + 2 * n])
    pos, neg, zero = count_signs(ev, zero_rtol)
    zero += d_inner - ev.size
    scenario = "divergent" if pos else ("convergent" if neg else "degenerate")
    return LayerSpectrum(name, d_inner, n, dt_rank, ev, pos, neg, zero, scenario)


def _stream(value):
    """The residual stream from a layer's output or input: a tensor, or (hidden, residual) pairs
    as mamba_ssm's Block returns (the stream is their sum; a None residual means hidden alone)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        if len(value) > 1 and isinstance(value[1], torch.Tensor) and value[1].shape == value[0].shape:
            return value[0] + value[1]
        return value[0]
    return None


def _layer_of(model: nn.Module, mixer_name: str) -> tuple[str, nn.Module]:
    """(name, module) of the block holding the mixer (its parent), or of the mixer itself when it
    sits in a container or is the model; the model itself is named "(model)"."""
    parent_name = mixer_name.rpartition(".")[0]
    name = mixer_name
    if mixer_name and not isinstance(model.get_submodule(parent_name), (nn.ModuleList, nn.Sequential, nn.ModuleDict)):
        name = parent_name
    return name or "(model)", model.get_submodule(name)


def token_norms(model: nn.Module, inputs, mixers: list) -> TokenNorms:
    """Run ``model`` on ``inputs`` (a tensor, or a dict of keyword arguments) and collect ||x_l|| of
    the residual stream (last dimension = channels) entering the first layer and after every layer
    call, in call order (a layer called twice, as with weight sharing, gives two stages)."""
    layers = list(dict(_layer_of(model, name) for name, _ in mixers).items())
    records: list = []  # (stage, norms of all tokens)
    calls: dict = {}

    def keep(stage, value):
        stream = _stream(value)
        if stream is not None:
            records.append((stage, stream.detach().float().norm(dim=-1).flatten().cpu().numpy()))

    def before(_module, args, kwargs):
        if not records:
            keep("input", args if args else kwargs.get("hidden_states"))

    def after(name):
        def hook(_module, _args, out):
            calls[name] = calls.get(name, 0) + 1
            keep(name if calls[name] == 1 else f"{name}#{calls[name]}", out)
        return hook

    handles = []
    for name, layer in layers:
        handles.append(layer.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(layer.register_forward_hook(after(name)))
    try:
        with torch.no_grad():
            if isinstance(inputs, dict):
                model(**inputs)
            else:
                model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not records or records[0][0] != "input" or len(records) < 2:
        raise ValueError("argument 'inputs': the forward pass did not run the Mamba layers (or their "
                         "inputs/outputs are not tensors)")
    stats = np.array([[n.mean(), n.std(), n.min(), n.max()] for _, n in records])
    return TokenNorms([stage for stage, _ in records], stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3])


def inspect_model(model: nn.Module, inputs=None, zero_rtol: float = ZERO_RTOL) -> Report:
    """Per-mixer eigenvalues of sym(S_C^T S_B) and, given ``inputs``, the token norms per layer
    (the paper's figures 7/8). ``inputs``: what ``model`` takes (token ids), or a dict of keyword
    arguments for it. Raises ValueError when the model has no Mamba mixer."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    mixers = find_mixers(model)
    if not mixers:
        raise ValueError("argument 'model' has no Mamba mixer (a submodule with x_proj and dt_proj)")
    report = Report(layers=[layer_spectrum(name, mixer, zero_rtol) for name, mixer in mixers])
    if inputs is not None:
        report.token_norms = token_norms(model, inputs, mixers)
    return report
