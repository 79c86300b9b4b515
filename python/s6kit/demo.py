"""`s6kit demo`: a tour of the library in about a minute on a CPU.

1. What this build contains.
2. The selective scan: s6kit's kernel against the plain-PyTorch reference, values, gradients, time.
"""
from __future__ import annotations

import time

import torch

from . import selective_scan_fn, selective_scan_ref
from .benchmarks.scan import make_inputs


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def scan_section(device: torch.device) -> None:
    print("\n== The selective scan (S6) ==")
    shape = (2, 128, 512, 16)
    inputs = make_inputs(shape, torch.float32, device)
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}
    t0 = time.perf_counter()
    out = selective_scan_fn(**leaves, delta_softplus=True)
    grads = torch.autograd.grad(out.square().sum(), list(leaves.values()))
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = selective_scan_ref(**leaves, delta_softplus=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(leaves.values()))
    t_ref = time.perf_counter() - t0
    print(f"shape (batch, dim, L, N) = {shape}, float32, on {device}")
    print(f"output error vs reference      {_rel(out, ref):.1e}")
    worst = max(_rel(g, r) for g, r in zip(grads, ref_grads))
    print(f"worst gradient error           {worst:.1e}  (u, delta, A, B, C, D, z, delta_bias)")
    print(f"forward + backward             {t_fast * 1e3:.1f} ms (s6kit) vs {t_ref * 1e3:.0f} ms "
          f"(PyTorch loop): x{t_ref / t_fast:.0f}")


def run(args) -> None:
    from .cli import info

    print("== s6kit ==")
    info(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scan_section(device)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="a one-minute tour of the library")
    p.set_defaults(func=run)
