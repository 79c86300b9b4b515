"""Random inputs for the selective scan tests, shared by the CPU and CUDA test files."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScanCase:
    batch: int = 2
    dim: int = 4
    L: int = 33
    N: int = 8
    bc: str = "variable"  # "variable" (batch, N, L), "grouped" (batch, G, N, L), "invariant" (dim, N)
    groups: int = 2
    scalar_A: bool = False
    D: bool = True
    z: bool = True
    delta_bias: bool = True
    softplus: bool = True
    initial_state: bool = False
    last_state: bool = False

    def __str__(self):
        flags = [k for k in ("scalar_A", "D", "z", "delta_bias", "softplus", "initial_state",
                             "last_state") if getattr(self, k)]
        return f"b{self.batch}d{self.dim}L{self.L}N{self.N}-{self.bc}-" + "+".join(flags)


def make_inputs(case: ScanCase, dtype=torch.float64, device="cpu", seed=0):
    """Inputs as a dict of selective_scan_fn keyword arguments; weights in float32/float64."""
    g = torch.Generator().manual_seed(seed)
    w = torch.float64 if dtype == torch.float64 else torch.float32
    b, d, L, N = case.batch, case.dim, case.L, case.N

    def rn(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dt)

    A_shape = (d,) if case.scalar_A else (d, N)
    A = -(torch.rand(*A_shape, generator=g, dtype=torch.float64) + 0.3).to(w)
    if case.bc == "variable":
        B, C = rn(b, N, L), rn(b, N, L)
    elif case.bc == "grouped":
        B, C = rn(b, case.groups, N, L), rn(b, case.groups, N, L)
    else:
        B, C = rn(d, N, dt=w), rn(d, N, dt=w)
    kw = dict(
        u=rn(b, d, L),
        delta=rn(b, d, L, scale=0.5, shift=-0.5 if case.softplus else 0.0),
        A=A, B=B, C=C,
        D=rn(d, dt=w) if case.D else None,
        z=rn(b, d, L) if case.z else None,
        delta_bias=rn(d, scale=0.2, dt=w) if case.delta_bias else None,
        delta_softplus=case.softplus,
        return_last_state=case.last_state,
        initial_state=rn(b, d, N, dt=w) if case.initial_state else None,
    )
    if not case.softplus:
        kw["delta"] = kw["delta"].abs().to(dtype)  # a positive step without softplus
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


TENSOR_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def run_with_grads(fn, kw, seed=1):
    """Calls fn(**kw) with gradients on every tensor input; returns (outputs, grads by name).

    The loss mixes every output with fixed random weights, so the gradient also flows back
    through the last state when it is returned."""
    kw = {k: (v.detach().clone().requires_grad_(True) if k in TENSOR_ARGS and v is not None else v)
          for k, v in kw.items()}
    res = fn(**kw)
    outs = res if isinstance(res, tuple) else (res,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)).sum()
               for o in outs)
    names = [k for k in TENSOR_ARGS if kw.get(k) is not None]
    inputs = [kw[k] for k in names]
    if loss.requires_grad:  # an empty sequence without last state touches no input
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    else:
        grads = [None] * len(inputs)
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]
    return [o.detach() for o in outs], dict(zip(names, grads))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    denom = b.norm().item()
    diff = (a - b).norm().item()
    return diff / denom if denom > 0 else diff
