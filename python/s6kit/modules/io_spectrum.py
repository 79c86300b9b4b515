"""Sign constraints on the input-output matrix S_C^T S_B (paper, section 5.1 and appendix C.1).

x_proj's weight stacks three blocks of rows, ``[W_x,dt; S_B; S_C]`` of shapes (dt_rank, d_inner),
(N, d_inner), (N, d_inner): B_l = S_B x_l and C_l = S_C x_l. Appendix C.1 writes

    S_C = L^T,   S_B = D L^T,   so   S_C^T S_B = L D L^T

with L (d_inner, N) lower trapezoidal with unit diagonal and D = diag(sign * softplus(d')). L has full
column rank, so by Sylvester's law of inertia L D L^T (symmetric, rank N) has exactly as many
positive / negative eigenvalues as D has positive / negative entries, and d_inner - N zeros:

    "positive": every sign +1 (the paper's best scenario), "negative": every sign -1,
    "mixed": the first ceil(N/2) signs +1 and the rest -1 (s6kit's choice for the mixed scenario;
    the paper's own mixed runs tie S_C = S_B instead, which leaves the signs to training).

The parametrisation is registered with torch.nn.utils.parametrize, so ``x_proj.weight`` still reads
as the full (dt_rank + 2N, d_inner) tensor and F.linear(x, x_proj.weight) is unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

IO_SPECTRA = ("positive", "negative", "mixed")


def _signs(kind: str, d_state: int) -> Tensor:
    if kind == "positive":
        return torch.ones(d_state)
    if kind == "negative":
        return -torch.ones(d_state)
    return torch.cat([torch.ones((d_state + 1) // 2), -torch.ones(d_state // 2)])


def _inverse_softplus(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


class IOSpectrum(nn.Module):
    """Builds x_proj.weight = [W_x,dt; D L^T; L^T] from (W_x,dt, the strictly lower part of L, d')."""

    def __init__(self, kind: str, dt_rank: int, d_state: int, d_inner: int):
        super().__init__()
        if kind not in IO_SPECTRA:
            raise ValueError(f"io_spectrum must be one of {IO_SPECTRA} or None, got {kind!r}")
        if d_inner < d_state:
            raise ValueError(
                f"io_spectrum needs d_inner >= d_state (L is d_inner x d_state with unit diagonal), "
                f"got d_inner={d_inner}, d_state={d_state}"
            )
        self.kind, self.dt_rank, self.d_state = kind, dt_rank, d_state
        self.register_buffer("signs", _signs(kind, d_state), persistent=False)

    def factors(self, lower: Tensor, d_raw: Tensor) -> tuple[Tensor, Tensor]:
        """L (d_inner, N), unit lower trapezoidal, and the diagonal of D (N,)."""
        eye = torch.eye(lower.shape[0], lower.shape[1], dtype=lower.dtype, device=lower.device)
        return torch.tril(lower, -1) + eye, self.signs.to(d_raw.dtype) * F.softplus(d_raw)

    def forward(self, w_dt: Tensor, lower: Tensor, d_raw: Tensor) -> Tensor:
        L, d = self.factors(lower, d_raw)
        s_c = L.t()
        return torch.cat([w_dt, d[:, None] * s_c, s_c], dim=0)

    @torch.no_grad()
    def right_inverse(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The nearest constrained weight: L from S_C's upper part, d from a per-row fit of S_B.

        Used once at registration (from x_proj's default initialisation) and whenever a full
        weight is assigned to x_proj.weight, e.g. when loading an unconstrained checkpoint.
        """
        w_dt, s_b, s_c = torch.split(weight, [self.dt_rank, self.d_state, self.d_state], dim=0)
        lower = torch.tril(s_c.t(), -1)
        L, _ = self.factors(lower, torch.zeros(self.d_state, dtype=weight.dtype, device=weight.device))
        rows = L.t()
        # least-squares d_j for S_B[j] ~ d_j L^T[j], then clamped to the allowed sign
        d = (s_b * rows).sum(1) / (rows * rows).sum(1)
        magnitude = (d * self.signs.to(d.dtype)).clamp_min(1e-3)
        return w_dt.contiguous(), lower.contiguous(), _inverse_softplus(magnitude)


def constrain_x_proj(x_proj: nn.Linear, kind: str, dt_rank: int, d_state: int,
                     init_magnitude: float = 0.5) -> None:
    """Register the io_spectrum parametrisation on x_proj.weight.

    The dt rows and L start from x_proj's current (default) weights; every |D_jj| starts at
    ``init_magnitude`` so that the B rows ``D_jj L^T[j]`` have about the norm of Mamba's default B rows.
    """
    d_inner = x_proj.weight.shape[1]
    parametrize.register_parametrization(x_proj, "weight",
                                         IOSpectrum(kind, dt_rank, d_state, d_inner))
    d_raw = x_proj.parametrizations.weight.original2
    with torch.no_grad():
        d_raw.fill_(math.log(math.expm1(init_magnitude)))


def sym_spectrum(s_b: Tensor, s_c: Tensor) -> Tensor:
    """Eigenvalues (ascending, float64) of mu = sym(S_C^T S_B) restricted to its range.

    S_B, S_C: (N, d_inner). mu has rank <= 2N and lives in the span of the rows of S_B and S_C:
    with Q an orthonormal basis of that span (d_inner x 2N), Q^T mu Q has the same non-zero
    eigenvalues as mu (the d_inner - 2N others are exactly zero). Returns 2N values, or all
    d_inner of them when d_inner <= 2N.
    """
    s_b, s_c = s_b.detach().double(), s_c.detach().double()
    m = s_c.t() @ s_b
    mu = 0.5 * (m + m.t())
    if mu.shape[0] <= 2 * s_b.shape[0]:
        return torch.linalg.eigvalsh(mu)
    q, _ = torch.linalg.qr(torch.cat([s_b, s_c], dim=0).t())
    return torch.linalg.eigvalsh(q.t() @ mu @ q)
