"""The selective scan in plain PyTorch: the ground truth every fast path is tested against.

It follows the recurrence of DESIGN.md (paper eq. 1-2) step by step, in float32 for 16/32-bit
inputs and in float64 for float64 inputs, and is differentiable by autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_bc(X: torch.Tensor, dim: int, compute: torch.dtype) -> torch.Tensor:
    """B or C as (batch, dim, N, L) for variable input, (dim, N) when time-invariant."""
    X = X.to(compute)
    if X.dim() == 2:
        return X
    if X.dim() == 3:  # (batch, N, L): one group
        X = X.unsqueeze(1)
    groups = X.shape[1]
    return X.repeat_interleave(dim // groups, dim=1)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
):
    """Reference selective scan. Same arguments and results as :func:`s6kit.selective_scan_fn`.

    u, delta, z: (batch, dim, L). A: (dim, N), or (dim,) for the scalar form A_d = A[d] * I.
    B, C: (batch, N, L), (batch, G, N, L) or time-invariant (dim, N). D, delta_bias: (dim,).
    initial_state: (batch, dim, N). Returns out (dtype of u) and, with return_last_state,
    the final state h_L (float32, or float64 for float64 inputs).
    """
    in_dtype = u.dtype
    compute = torch.float64 if in_dtype == torch.float64 else torch.float32
    batch, dim, L = u.shape
    u = u.to(compute)
    dt = delta.to(compute)
    if delta_bias is not None:
        dt = dt + delta_bias.to(compute)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Bx = _expand_bc(B, dim, compute)
    Cx = _expand_bc(C, dim, compute)
    N = Bx.shape[-1] if Bx.dim() == 2 else Bx.shape[2]
    A = A.to(compute)
    A2 = A[:, None].expand(dim, N) if A.dim() == 1 else A

    decay = torch.exp(dt[:, :, :, None] * A2[None, :, None, :])  # (batch, dim, L, N)
    if Bx.dim() == 2:
        drive = (dt * u)[:, :, :, None] * Bx[None, :, None, :]
    else:
        drive = (dt * u)[:, :, :, None] * Bx.transpose(2, 3)
    h = (
        initial_state.to(compute)
        if initial_state is not None
        else torch.zeros(batch, dim, N, dtype=compute, device=u.device)
    )
    ys = []
    for l in range(L):
        h = decay[:, :, l] * h + drive[:, :, l]
        C_l = Cx[None] if Cx.dim() == 2 else Cx[:, :, :, l]
        ys.append((h * C_l).sum(-1))
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(compute)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(compute))
    out = y.to(in_dtype)
    return (out, h) if return_last_state else out
