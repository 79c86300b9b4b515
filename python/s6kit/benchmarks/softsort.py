"""`s6kit bench softsort`: forward + backward time and peak extra memory of the fused importance
scoring and SoftSort reordering (`score_and_permute`) against the paper's formulation
(materialised P, then einsum: `score_and_permute_ref`), with effective GB/s, the share of the
measured copy bandwidth and the ratio to the anchors (ANCHORS.md).

Both run `out = f(x, w)` then the backward of `out.sum()` for x and w, tau = 1, p = 1, ascending
importance (the paper's order); `--dense-grad` backpropagates a fixed random output gradient
instead (as training does: the sum's gradient is one broadcast value). Shapes are (batch, L, dim)
as in ANCHORS.md; x is (batch, dim, L).

GB/s counts the tokens' bytes that the fused kernels of rows of one tile move: the forward reads
x twice (scores, reordering) and writes the output; the backward's sweep reads x and the output
gradient and writes dx in sorted order, then its finishing pass reads dx and x and writes dx in
token order: 9 token-sized tensors. (The gradient of a sum is a broadcast scalar, which costs
almost nothing to read, so the true traffic is nearer 8; longer rows take more passes, see
bench/results/README.md.)
"""
from __future__ import annotations

import math

import torch

from .. import score_and_permute, score_and_permute_ref
from . import anchors
from .harness import DTYPES, parse_shapes, write_rows
from .timing import capture_cuda_graph, copy_bandwidth_gbps, median_ms

CPU_SHAPES = [(2, 196, 64), (2, 1024, 256), (1, 4096, 256)]
TOKEN_PASSES = 9  # token-sized tensors moved by fwd + bwd (see the module docstring)


def make_inputs(shape, dtype, device, seed=0):
    """x (batch, dim, L) and w (dim,) with scores of unit scale."""
    batch, L, dim = shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, dim, L, generator=g).to(device=device, dtype=dtype)
    w = (torch.randn(dim, generator=g) / math.sqrt(dim)).to(device)
    return x, w


def _step(fn, x, w, tau, p, g=None):
    """Forward, then the backward of out.sum(), or of the output gradient g when given."""
    out = fn(x, w, tau=tau, p=p)
    if g is None:
        torch.autograd.grad(out.sum(), (x, w))
    else:
        torch.autograd.grad(out, (x, w), g)


def measure(fn, x, w, device, reps, tau=1.0, p=1.0, g=None, graph=False):
    """(median ms of forward + backward, peak extra bytes on CUDA or None); with `graph`, the
    time of the step captured into a CUDA graph and replayed (its memory is measured eagerly)."""
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)

    def step():
        _step(fn, x, w, tau, p, g)

    timed = capture_cuda_graph(step)[0].replay if graph else step
    ms = median_ms(timed, device, warmup=3, reps=reps)
    extra = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _step(fn, x, w, tau, p, g)
        torch.cuda.synchronize(device)
        extra = torch.cuda.max_memory_allocated(device) - base
    return ms, extra


def kernel_times(x, w, tau=1.0, p=1.0, steps=3, g=None) -> list[tuple[str, float]]:
    """(kernel, ms per forward + backward) of `score_and_permute` on CUDA, most time first, from
    torch's profiler over `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    _step(score_and_permute, x, w, tau, p, g)
    torch.cuda.synchronize(x.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            _step(score_and_permute, x, w, tau, p, g)
        torch.cuda.synchronize(x.device)
    rows = []
    for e in prof.key_averages():
        total = getattr(e, "device_time_total", 0.0)
        if total > 0:
            rows.append((_kernel_name(e.key), total / 1e3 / steps))
    return sorted(rows, key=lambda r: -r[1])


def _kernel_name(key: str) -> str:
    for noise in ("void ", "s6kit::cuda_softsort::", "(anonymous namespace)::", "at::native::"):
        key = key.replace(noise, "")
    return key.split("(s6kit::cuda_softsort::Args)")[0][:90]


def _reference_fits(shape, elem, device) -> tuple[bool, float]:
    """Whether the paper's formulation may fit: P and about five P-sized temporaries."""
    batch, L, _ = shape
    need = 6 * batch * L * L * max(elem, 4)
    if device.type != "cuda":
        return need < 8e9, need
    free, _ = torch.cuda.mem_get_info(device)
    return need < free, need


def run(device="cuda", dtypes=None, shapes=None, reps=10, threads=2, reference=True, tau=1.0,
        p=1.0, json_path=None, kernels=False, dense_grad=False, graph=False) -> list[dict]:
    device = torch.device(device)
    if graph and device.type != "cuda":
        raise ValueError("graph: CUDA graphs need device='cuda'")
    if device.type == "cpu":
        torch.set_num_threads(threads)
        shapes = shapes or CPU_SHAPES
        dtypes = dtypes or ["float32"]
    else:
        shapes = shapes or list(anchors.PAPER_SOFTSORT)
        dtypes = dtypes or ["bfloat16"]
    copy_gbps = copy_bandwidth_gbps(device) if device.type == "cuda" else None
    rows = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        elem = torch.tensor([], dtype=dtype).element_size()
        for shape in shapes:
            x, w = make_inputs(shape, dtype, device)
            g = torch.randn_like(x) if dense_grad else None
            ms, extra = measure(score_and_permute, x, w, device, reps, tau, p, g, graph)
            token_bytes = x.numel() * elem
            row = dict(device=str(device), dtype=dtype_name, shape=list(shape), tau=tau, p=p,
                       grad="dense" if dense_grad else "sum",
                       timing="cuda graph" if graph else "eager", ms=ms, extra_bytes=extra,
                       token_bytes=token_bytes, GBps=TOKEN_PASSES * token_bytes / (ms * 1e-3) / 1e9)
            if extra is not None:
                row["extra_x_tokens"] = extra / token_bytes
            if copy_gbps:
                row["copy_GBps"] = copy_gbps
                row["pct_copy"] = 100 * row["GBps"] / copy_gbps
            anchor = anchors.PAPER_SOFTSORT.get(tuple(shape))
            if anchor and device.type == "cuda" and dtype_name == "bfloat16" and tau == 1 and p == 1:
                row["anchor_ms"], row["anchor_extra_bytes"] = anchor
                if anchor[0] is not None:
                    row["speedup_vs_anchor"] = anchor[0] / ms
            if reference:
                fits, need = _reference_fits(shape, elem, device)
                if not fits:
                    row["reference"] = f"skipped (P and its temporaries need ~{need / 1e9:.0f} GB)"
                else:
                    try:
                        rms, rextra = measure(score_and_permute_ref, x, w, device,
                                              max(1, reps // 3), tau, p, g, graph)
                        row["reference_ms"], row["reference_extra_bytes"] = rms, rextra
                        row["speedup_vs_reference"] = rms / ms
                    except torch.OutOfMemoryError:
                        row["reference"] = "out of memory"
                        torch.cuda.empty_cache()
            if kernels and device.type == "cuda":
                row["kernels"] = kernel_times(x, w, tau, p, g=g)
            del x, w, g
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append(row)
            _print_row(row)
    write_rows(json_path, rows)
    return rows


def _mb(b):
    return "-" if b is None else f"{b / 1e6:.0f} MB"


def _print_row(r):
    shape = "(" + ", ".join(str(v) for v in r["shape"]) + ")"
    grad = " (dense grad)" if r.get("grad") == "dense" else ""
    grad += " (CUDA graph)" if r.get("timing") == "cuda graph" else ""
    line = (f"{r['device']:5} {r['dtype']:9} {shape:20} fwd+bwd{grad} {r['ms']:9.3f} ms  "
            f"{r['GBps']:7.1f} GB/s")
    if "pct_copy" in r:
        line += f" ({r['pct_copy']:.0f}% of copy)"
    line += f"  extra {_mb(r['extra_bytes'])}"
    if "extra_x_tokens" in r:
        line += f" ({r['extra_x_tokens']:.2f}x tokens)"
    if "anchor_ms" in r:
        am = "out of memory" if r["anchor_ms"] is None else f"{r['anchor_ms']:.2f} ms"
        line += f"  paper anchor {am}"
        if "speedup_vs_anchor" in r:
            line += f" (x{r['speedup_vs_anchor']:.1f})"
    if "reference_ms" in r:
        line += (f"  reference here {r['reference_ms']:.3f} ms, {_mb(r['reference_extra_bytes'])}"
                 f" (x{r['speedup_vs_reference']:.1f})")
    elif "reference" in r:
        line += f"  reference {r['reference']}"
    print(line, flush=True)
    for name, ms in r.get("kernels", []):
        print(f"    {ms:8.3f} ms  {name}", flush=True)


def _cli(args):
    shapes = parse_shapes(args.shape)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if (args.kernels or args.graph) and device != "cuda":
        raise SystemExit("--kernels and --graph need --device cuda")
    run(device, args.dtype, shapes, args.reps, args.threads, not args.no_reference, args.tau,
        args.p, args.json, args.kernels, args.dense_grad, args.graph)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "softsort", help="time scoring + SoftSort reordering (fwd + bwd) against the paper's P")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", action="append", choices=sorted(DTYPES),
                   help="repeatable (default bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--shape", action="append",
                   help="batch,L,dim (repeatable); default: the anchors' on cuda, small on cpu")
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--p", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--no-reference", action="store_true", help="skip the materialised-P reference")
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--dense-grad", action="store_true",
                   help="backpropagate a random output gradient instead of that of out.sum()")
    p.add_argument("--kernels", action="store_true",
                   help="also print each CUDA kernel's time per forward + backward (profiler)")
    p.add_argument("--graph", action="store_true",
                   help="time forward + backward captured into a CUDA graph and replayed: the "
                        "GPU's time where small shapes are bound by the host's launches")
    p.set_defaults(func=_cli)

