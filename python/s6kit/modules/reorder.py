"""Token reordering by importance (paper, eq. 14 and Algorithm 1 of appendix D.2).

Each token x_l of the SSM input gets the score ``s_l = <K, S_Delta x_l>`` with a learnable K. In a
Mamba block the step-size map is ``S_Delta x = W_dt (W_x,dt x)`` (dt_proj after the dt rows of
x_proj), so ``s_l = <w, x_l>`` with ``w = W_x,dt^T W_dt^T K``: one vector of the SSM width, built from
the current parameters on every forward. dt_proj's bias adds the same constant to every score and
changes no order, so it is left out. SoftSort (ascending, as the paper) then reorders the tokens.

What is reordered, and in which order the outputs leave the block
-----------------------------------------------------------------
The paper's Algorithm 1 reorders the SSM input and returns the scan's output in the reordered
order; it does not sort back. s6kit does the same, and reorders every per-token stream that meets
the SSM output inside the mixer (the gate z of a Mamba block, the z branch of a MambaVision mixer)
with the *same* permutation, in one call: ``[x; z]`` is permuted jointly with the scores of x alone
(z's entries of the scoring vector are zero). So output position i carries one (soft) token end to
end: its SSM output, gated or concatenated with that same token's z. Reordering z with x rather
than leaving it in place keeps the mixer a token-wise function of the reordered sequence: the
mixer equals a plain Mamba mixer run on the reordered sequence.

The outputs are not sorted back. The soft permutation P (rows summing to one, columns not) has no
inverse, P^T is not one, and an exact inverse exists only in hard mode. Sorting back in hard mode alone would make a model trained soft and evaluated hard (or
the reverse) see different layouts, so both modes keep the importance order. The residual stream
therefore receives at position i the update computed for the i-th token in ascending importance:
for vision models with global pooling, where the paper uses reordering, position carries no
meaning; for a causal language model it both mixes positions and lets every position see future
tokens, which is why the language model refuses reordering unless the caller opts in.

The scoring + SoftSort is one call to the fused ``score_and_permute`` (ops/softsort.py).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..ops.softsort import score_and_permute


class TokenReorder(nn.Module):
    """Learnable importance vector K (eq. 14) and the soft reordering of the SSM input.

    Args:
        d_inner: width of the SSM input (the length of K).
        tau, p: SoftSort temperature and exponent (P[i, j] = softmax_j(-|t_i - s_j|^p / tau)).
        hard: exact permutation in the forward, SoftSort's gradient in the backward.
    """

    def __init__(self, d_inner: int, tau: float = 1.0, p: float = 1.0, hard: bool = False,
                 device=None, dtype=None):
        super().__init__()
        if not float(tau) > 0:
            raise ValueError(f"TokenReorder: argument 'tau' must be > 0, got {tau}")
        if not float(p) > 0:
            raise ValueError(f"TokenReorder: argument 'p' must be > 0, got {p}")
        self.tau, self.p, self.hard = float(tau), float(p), bool(hard)
        # N(0, 1): with Mamba's default initialisation of x_proj and dt_proj the scores of
        # distinct tokens then differ by O(1) or more, so SoftSort at tau = 1 starts sharp
        # rather than averaging the sequence (which an all-zero K would do).
        self.K = nn.Parameter(torch.randn(d_inner, device=device, dtype=dtype))

    def scoring_vector(self, x_proj_dt: Tensor, dt_proj_weight: Tensor) -> Tensor:
        """w = W_x,dt^T W_dt^T K, so that s_l = <w, x_l> = <K, S_Delta x_l>.

        x_proj_dt: (dt_rank, d_inner), the dt rows of x_proj; dt_proj_weight: (d_inner, dt_rank).
        """
        return x_proj_dt.t() @ (dt_proj_weight.t() @ self.K)

    def forward(self, x: Tensor, z: Optional[Tensor], x_proj_dt: Tensor,
                dt_proj_weight: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Reorder x (batch, d_inner, L) by its scores, and z (batch, d_z, L) with the same P."""
        w = self.scoring_vector(x_proj_dt, dt_proj_weight)
        if z is None:
            return self._permute(x, w), None
        xz = torch.cat([x, z.to(x.dtype)], dim=1)
        w = torch.cat([w, w.new_zeros(z.shape[1])])
        xz = self._permute(xz, w)
        return xz[:, : x.shape[1]], xz[:, x.shape[1]:]

    def _permute(self, x: Tensor, w: Tensor) -> Tensor:
        return score_and_permute(x, w, tau=self.tau, p=self.p, hard=self.hard, descending=False)

    def extra_repr(self) -> str:
        return f"{self.K.shape[0]}, tau={self.tau}, p={self.p}, hard={self.hard}"
