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
