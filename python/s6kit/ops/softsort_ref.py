"""SoftSort (Prillo & Eisenschlos, 2020) in plain PyTorch: the ground truth for the fused kernels.

With ``t = sort(scores)`` (descending by default), the relaxed permutation matrix is

    P[i, j] = softmax_j( -|t_i - s_j|^p / tau )

and reordering tokens x (batch, dim, L) along L gives ``x'_i = sum_j P[i, j] x_j`` (paper, eq. 14
and Algorithm 1 of appendix D.2). ``hard=True`` applies the exact permutation in the forward
(a gather by the stable argsort, so tied scores still give a permutation) and the soft matrix's
gradient in the backward (straight-through).
"""
from __future__ import annotations

import torch


def _check(scores: torch.Tensor, tau: float, p: float, op: str) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{op}: argument 'scores' must be a tensor of shape (batch, L), got {shape}")
    if not scores.is_floating_point():
        raise ValueError(f"{op}: argument 'scores' must be a floating-point tensor, got {scores.dtype}")
    if not (float(tau) > 0):
        raise ValueError(f"{op}: argument 'tau' must be > 0, got {tau}")
    if not (float(p) > 0):
        raise ValueError(f"{op}: argument 'p' must be > 0, got {p}")


def soft_sort_matrix(
    scores: torch.Tensor,
    tau: float = 1.0,
    p: float = 1.0,
    hard: bool = False,
    descending: bool = True,
) -> torch.Tensor:
    """The SoftSort matrix P (batch, L, L) of ``scores`` (batch, L); row i is a softmax over j.

    Memory is O(L^2): use it for small L and for tests; :func:`s6kit.soft_permute` applies the same
    operator to tokens without building P.
    """
    _check(scores, tau, p, "soft_sort_matrix")
    s = scores
    t = torch.sort(s, dim=-1, descending=descending, stable=True).values
    logits = -(t.unsqueeze(-1) - s.unsqueeze(-2)).abs().pow(p) / tau
    P = torch.softmax(logits, dim=-1)
    if hard:
        order = torch.sort(s, dim=-1, descending=descending, stable=True).indices
        P_hard = torch.zeros_like(P).scatter_(-1, order.unsqueeze(-1), 1.0)
        P = (P_hard - P).detach() + P
    return P


def soft_permute_ref(
    x: torch.Tensor,
    scores: torch.Tensor,
    tau: float = 1.0,
    p: float = 1.0,
    hard: bool = False,
    descending: bool = True,
) -> torch.Tensor:
    """Reference reordering ``x'[b, :, i] = sum_j P[b, i, j] x[b, :, j]`` with x (batch, dim, L)."""
    P = soft_sort_matrix(scores, tau=tau, p=p, hard=hard, descending=descending)
    return torch.einsum("bij,bdj->bdi", P.to(x.dtype), x)


def score_and_permute_ref(
    x: torch.Tensor,
    w: torch.Tensor,
    tau: float = 1.0,
    p: float = 1.0,
    hard: bool = False,
    descending: bool = False,
) -> torch.Tensor:
    """Importance scores ``s_l = <w, x_l>`` (paper eq. 14 with w = S_Delta^T K) and the reordering of
    x (batch, dim, L) by them, ascending by default as the paper does."""
    scores = torch.einsum("bdl,d->bl", x, w.to(x.dtype))
    return soft_permute_ref(x, scores, tau=tau, p=p, hard=hard, descending=descending)
