"""`s6kit bench scan`: forward and backward time of the selective scan, with GB/s, the share of
the measured copy bandwidth, and ratios to the reference and to the anchors (ANCHORS.md)."""
from __future__ import annotations

import argparse

import torch

from .. import selective_scan_fn, selective_scan_ref
from . import anchors
from .harness import DTYPES, parse_shapes, write_rows
from .timing import copy_bandwidth_gbps, median_ms



def make_inputs(shape, dtype, device, scalar_A=False, seed=0):
    batch, dim, L, N = shape
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rn(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device=device)

    return dict(
        u=rn(batch, dim, L).to(dtype),
        delta=rn(batch, dim, L, scale=0.5).to(dtype),
        A=-(torch.rand(dim if scalar_A else (dim, N), generator=g) + 0.5).to(device),
        B=rn(batch, 1, N, L).to(dtype),
        C=rn(batch, 1, N, L).to(dtype),
        D=rn(dim),
        z=rn(batch, dim, L).to(dtype),
        delta_bias=rn(dim, scale=0.1),
    )


def time_scan(fn, inputs, device, reps, backward=True, warmup=3):
    """(forward ms, backward ms) of fn on inputs; backward is timed as (fwd + bwd) - fwd."""
    def fwd():
        with torch.no_grad():
            fn(**inputs, delta_softplus=True)

    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves, delta_softplus=True)
    grad = torch.randn_like(out)

    def fwd_bwd():
        o = fn(**leaves, delta_softplus=True)
        torch.autograd.grad(o, list(leaves.values()), grad)

    f = median_ms(fwd, device, warmup=warmup, reps=reps)
    if not backward:
        return f, None
    fb = median_ms(fwd_bwd, device, warmup=warmup, reps=reps)
    return f, fb - f


def _mamba_ssm_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as ref
    except Exception:  # not installed, or not built for this torch
        return None
    return ref


def run(args) -> list[dict]:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    shapes = parse_shapes(args.shape)
    if device.type == "cpu":
        shapes = shapes or [anchors.CPU_SCAN_SHAPE]
        dtypes = args.dtype or ["float32"]
    else:
        shapes = shapes or sorted({s for (_, s) in anchors.MAMBA_SSM_SCAN_MS})
        dtypes = args.dtype or ["bfloat16", "float32"]
    copy_gbps = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    mamba_ssm = _mamba_ssm_fn() if device.type == "cuda" else None
    rows = []
    for dtype_name in dtypes:
        for shape in shapes:
            if device.type == "cuda" and (dtype_name, shape) not in anchors.MAMBA_SSM_SCAN_MS and not args.shape:
                continue
            for scalar_A in ([False, True] if args.scalar_A else [False]):
                inputs = make_inputs(shape, DTYPES[dtype_name], device, scalar_A=scalar_A)
                fwd, bwd = time_scan(selective_scan_fn, inputs, device, args.reps)
                row = dict(device=str(device), dtype=dtype_name, shape=list(shape),
                           A="scalar" if scalar_A else "real", fwd_ms=fwd, bwd_ms=bwd)
                elem = torch.tensor([], dtype=DTYPES[dtype_name]).element_size()
                fb, bb = anchors.scan_bytes(*shape, elem)
                row["fwd_GBps"] = fb / (fwd * 1e-3) / 1e9
                row["bwd_GBps"] = bb / (bwd * 1e-3) / 1e9
                if copy_gbps:
                    row["copy_GBps"] = copy_gbps
                    row["fwd_pct_copy"] = 100 * row["fwd_GBps"] / copy_gbps
                    row["bwd_pct_copy"] = 100 * row["bwd_GBps"] / copy_gbps
                    row["fwd_x_floor"] = fwd / (fb / (copy_gbps * 1e9) * 1e3)
                    row["bwd_x_floor"] = bwd / (bb / (copy_gbps * 1e9) * 1e3)
                anchor = anchors.MAMBA_SSM_SCAN_MS.get((dtype_name, shape))
                if anchor and device.type == "cuda":
                    row["mamba_ssm_anchor_fwd_ms"], row["mamba_ssm_anchor_bwd_ms"] = anchor
                    row["speedup_vs_anchor_fwd"] = anchor[0] / fwd
                    row["speedup_vs_anchor_bwd"] = anchor[1] / bwd
                if mamba_ssm is not None and not scalar_A:
                    mf, mb = time_scan(mamba_ssm, inputs, device, args.reps)
                    row["mamba_ssm_fwd_ms"], row["mamba_ssm_bwd_ms"] = mf, mb
                if args.reference if args.reference is not None else device.type == "cpu":
                    rf, rb = time_scan(selective_scan_ref, inputs, device, reps=1, warmup=0)
                    row["reference_fwd_ms"], row["reference_bwd_ms"] = rf, rb
                    row["speedup_vs_reference_fwd_bwd"] = (rf + rb) / (fwd + bwd)
                if device.type == "cpu" and tuple(shape) == anchors.CPU_SCAN_SHAPE and dtype_name == "float32":
                    for name, (af, afb) in anchors.CPU_SCAN_S.items():
                        row[f"speedup_vs[{name}]_fwd_bwd"] = afb * 1e3 / (fwd + bwd)
                rows.append(row)
                _print_row(row)
    write_rows(args.json, rows)
    return rows


def _print_row(r):
    shape = "(" + ", ".join(str(x) for x in r["shape"]) + ")"
    line = (f"{r['device']:5} {r['dtype']:9} {shape:22} A={r['A']:6} "
            f"fwd {r['fwd_ms']:8.3f} ms  bwd {r['bwd_ms']:8.3f} ms  "
            f"fwd {r['fwd_GBps']:7.1f} GB/s  bwd {r['bwd_GBps']:7.1f} GB/s")
    if "fwd_pct_copy" in r:
        line += f"  ({r['fwd_pct_copy']:.0f}% / {r['bwd_pct_copy']:.0f}% of copy)"
    if "speedup_vs_anchor_fwd" in r:
        line += (f"  vs mamba_ssm anchor: x{r['speedup_vs_anchor_fwd']:.2f} fwd, "
                 f"x{r['speedup_vs_anchor_bwd']:.2f} bwd")
    if "mamba_ssm_fwd_ms" in r:
        line += f"  mamba_ssm here: {r['mamba_ssm_fwd_ms']:.3f} / {r['mamba_ssm_bwd_ms']:.3f} ms"
    if "speedup_vs_reference_fwd_bwd" in r:
        line += (f"  reference: {r['reference_fwd_ms']:.1f} / {r['reference_bwd_ms']:.1f} ms"
                 f" (x{r['speedup_vs_reference_fwd_bwd']:.0f})")
    for k, v in r.items():
        if k.startswith("speedup_vs["):
            line += f"  {k[11:-9]}: x{v:.1f} (fwd+bwd)"
    print(line, flush=True)


def register(subparsers) -> None:
    p = subparsers.add_parser("scan", help="time the selective scan (forward, backward)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", action="append", choices=sorted(DTYPES), help="repeatable")
    p.add_argument("--shape", action="append", help="batch,dim,L,N (repeatable); default: the anchors'")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--scalar-A", dest="scalar_A", action="store_true", help="also time scalar A")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the plain-PyTorch reference, once (default: on the CPU only;"
                        " it takes 30+ s at the CPU shape)")
    p.add_argument("--json", help="write the rows to this JSON file")
    p.set_defaults(func=run)
