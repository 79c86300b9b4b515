"""Inputs and reference results shared by the SoftSort tests (CPU and CUDA)."""
from __future__ import annotations

import torch

from s6kit.ops.softsort_ref import score_and_permute_ref, soft_permute_ref


def make_scores(batch: int, L: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """float64 scores: 'random' (distinct), 'ties' (few distinct values), 'equal' (one value),
    'spread' (well separated, safe for finite differences)."""
    if kind == "random":
        return torch.randn(batch, L, dtype=torch.float64, generator=generator) * 2
    if kind == "ties":
        return torch.randint(0, max(2, L // 3), (batch, L), generator=generator).double() * 0.5
    if kind == "equal":
        return torch.full((batch, L), 0.25, dtype=torch.float64)
    if kind == "spread":
        base = torch.arange(L, dtype=torch.float64) * 0.3
        order = torch.stack([torch.randperm(L, generator=generator) for _ in range(batch)])
        return base[order] + 0.05 * torch.rand(batch, L, dtype=torch.float64, generator=generator)
    raise ValueError(kind)


def token_inputs(batch: int, dim: int, L: int, kind: str, seed: int = 0):
    """float64 tokens x (batch, dim, L), scores of make_scores' `kind` and an output gradient g."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, L, dtype=torch.float64, generator=gen)
    s = make_scores(batch, L, kind, gen)
    g = torch.randn(batch, dim, L, dtype=torch.float64, generator=gen)
    return x, s, g


def exact_score_inputs(batch: int, dim: int, L: int, generator: torch.Generator,
                       w_scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 tokens x (batch, dim, L) and weights w (dim,) whose scores s_l = <w, x_l> come out
    exactly, in float32 as in float64 and in any summation order, so that every implementation
    sorts the same keys.

    The p = 1 SoftSort's gradient for the scores jumps where two scores cross: the gradient of
    sorted position i moves from one token to the other (dscores changes by O(1) for both, and
    score_and_permute's dx by that times w). Two float32 summation orders that differ in the last
    bit reorder near-tied pairs (a few per 10^4 tokens), so comparing their gradients compares two
    sides of a jump. Here x is a multiple of 1/64 in [-4, 4] (exact in bfloat16) and w a multiple
    of 1/256: products are multiples of 2^-14 and every partial sum stays below 2^10, within the
    24 bits of a float32 significand. Ties are then exact and every kernel breaks them the same
    (stable) way."""
    x = (torch.randn(batch, dim, L, dtype=torch.float64, generator=generator) * 64).round()
    x = x.clamp(-256, 256) / 64
    w = (torch.randn(dim, dtype=torch.float64, generator=generator) * w_scale * 256).round() / 256
    assert 4 * w.abs().sum().item() < 2 ** 10, "partial sums would leave the exact range"
    return x, w


def soft_permute_case(x, scores, g, **kw):
    """(out, dx, dscores) of the reference in float64."""
    x = x.detach().double().requires_grad_(True)
    s = scores.detach().double().requires_grad_(True)
    out = soft_permute_ref(x, s, **kw)
    dx, ds = torch.autograd.grad(out, (x, s), g.double())
    return out.detach(), dx, ds


def score_and_permute_case(x, w, g, **kw):
    """(out, dx, dw) of the reference in float64."""
    x = x.detach().double().requires_grad_(True)
    w = w.detach().double().requires_grad_(True)
    out = score_and_permute_ref(x, w, **kw)
    dx, dw = torch.autograd.grad(out, (x, w), g.double())
    return out.detach(), dx, dw


def run(fn, x, other, g, **kw):
    """(out, d x, d other) of fn(x, other, **kw) with the incoming gradient g."""
    x = x.detach().clone().requires_grad_(True)
    other = other.detach().clone().requires_grad_(True)
    out = fn(x, other, **kw)
    dx, do = torch.autograd.grad(out, (x, other), g.to(out.dtype))
    return out.detach(), dx, do


def assert_close(actual, expected, rtol, name):
    """Max error relative to the largest reference magnitude (a scale-aware check)."""
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    scale = max(expected.abs().max().item(), 1e-30) if expected.numel() else 1.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= rtol * scale, f"{name}: max error {err:.3e} > {rtol:.1e} x {scale:.3e}"
