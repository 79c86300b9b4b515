"""`s6kit demo`: a tour of the library in about ten seconds on a CPU.

1. What this build contains.
2. The selective scan: s6kit's kernel against the plain-PyTorch reference (values, gradients, time).
3. Token reordering: SoftSort applied to tokens, fused, against the paper's materialised matrix.
4. Eigenvalue constraints: three small language models whose input-output matrices S_C^T S_B have
   positive, negative and mixed eigenvalues (appendix C.1), trained for a few steps.
5. Token dynamics: the paper's figures 1-3 and 6, and the trained models' spectra and token norms.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import MambaConfig, MambaLMHeadModel, selective_scan_fn, selective_scan_ref
from .benchmarks.scan import make_inputs
from .ops import score_and_permute, score_and_permute_ref


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _header(title: str) -> None:
    print(f"\n== {title} ==")


def scan_section(device: torch.device) -> None:
    _header("2. The selective scan (S6)")
    shape = (2, 128, 512, 16)
    inputs = make_inputs(shape, torch.float32, device)
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}

    def fwd_bwd(fn):
        out = fn(**leaves, delta_softplus=True)
        return out, torch.autograd.grad(out.square().sum(), list(leaves.values()))

    fwd_bwd(selective_scan_fn)  # first call: kernel and op registration warm-up
    t0 = time.perf_counter()
    out, grads = fwd_bwd(selective_scan_fn)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref, ref_grads = fwd_bwd(selective_scan_ref)
    t_ref = time.perf_counter() - t0
    worst = max(_rel(g, r) for g, r in zip(grads, ref_grads))
    print(f"(batch, dim, L, N) = {shape}, float32, {device}; D, z, delta_bias, softplus")
    print(f"  output error vs reference   {_rel(out, ref):.1e}")
    print(f"  worst gradient error        {worst:.1e}   (u, delta, A, B, C, D, z, delta_bias)")
    print(f"  forward + backward          {t_fast * 1e3:7.1f} ms   (reference loop: {t_ref * 1e3:.0f} ms,"
          f" x{t_ref / t_fast:.0f})")


def reorder_section(device: torch.device) -> None:
    _header("3. Token reordering (SoftSort, eq. 14)")
    g = torch.Generator().manual_seed(0)
    batch, dim, L = 2, 64, 2048
    x = torch.randn(batch, dim, L, generator=g).to(device).requires_grad_(True)
    w = torch.randn(dim, generator=g).to(device).requires_grad_(True)
    print(f"tokens (batch, dim, L) = {(batch, dim, L)}, float32: scores s_l = <w, x_l>,"
          " sorted softly in ascending order, tau = 1, p = 1")
    timings = {}
    for name, fn in (("fused", score_and_permute), ("materialised", score_and_permute_ref)):
        fn(x, w)  # warm-up
        t0 = time.perf_counter()
        out = fn(x, w)
        grads = torch.autograd.grad(out.square().sum(), (x, w))
        timings[name] = (time.perf_counter() - t0, out, grads)
    (t_fast, out, grads), (t_ref, ref, ref_grads) = timings["fused"], timings["materialised"]
    p_mib = batch * L * L * x.element_size() / 2**20
    print(f"  fused O(L dim) scans        {t_fast * 1e3:7.1f} ms forward + backward")
    print(f"  materialised P (L x L)      {t_ref * 1e3:7.1f} ms, P alone {p_mib:.0f} MiB"
          f"   (x{t_ref / t_fast:.0f})")
    print(f"  error: output {_rel(out, ref):.1e}, grad x {_rel(grads[0], ref_grads[0]):.1e},"
          f" grad w {_rel(grads[1], ref_grads[1]):.1e}")
    order = torch.argsort(torch.einsum("bdl,d->bl", x, w), dim=-1, stable=True)
    hard = score_and_permute(x, w, hard=True)
    exact = torch.gather(x, 2, order.unsqueeze(1).expand_as(x))
    print(f"  hard=True is the exact sort: error {_rel(hard, exact):.1e}"
          " (its backward uses SoftSort's gradient)")


def _toy_batch(batch: int, L: int, vocab: int, g: torch.Generator) -> torch.Tensor:
    """Sequences that repeat a random motif of 4 tokens: predictable after its first period."""
    period = 4
    motif = torch.randint(0, vocab, (batch, period), generator=g)
    return motif.repeat(1, L // period)


def spectra_section(device: torch.device, steps: int) -> dict:
    _header("4. Eigenvalue constraints on S_C^T S_B (appendix C.1), trained on a toy task")
    vocab, L, batch = 32, 64, 16
    models = {}
    for spectrum in ("positive", "negative", "mixed"):
        torch.manual_seed(0)
        cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=vocab,
                          ssm_cfg=dict(d_state=8, io_spectrum=spectrum))
        model = MambaLMHeadModel(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(1)
        t0 = time.perf_counter()
        for _ in range(steps):
            ids = _toy_batch(batch, L, vocab, g).to(device)
            logits = model(ids).logits[:, :-1, :vocab]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        eig = model.io_eigenvalues()
        signs = [f"{int((e > 1e-9).sum())}+/{int((e < -1e-9).sum())}-" for e in eig]
        print(f"  {spectrum:9} final loss {loss.item():.3f} after {steps} steps "
              f"({(time.perf_counter() - t0) / steps * 1e3:.0f} ms/step); "
              f"nonzero eigenvalues per layer: {', '.join(signs)}")
        models[spectrum] = model
    return models


def dynamics_section(models: dict, out: Path, vocab: int = 32) -> None:
    _header("5. Token dynamics (sections 3-4, appendix B)")
    from .dynamics import classify, inspect_model, make_figures, plot_report

    for path in make_figures(out):
        print(f"  wrote {path}")
    print(f"  classify(mu=-1.58, s_delta=-0.17, x0=(1, 2)) = {classify(-1.58, -0.17, [1.0, 2.0])!r}"
          "   (Table 1)")
    ids = _toy_batch(4, 64, vocab, torch.Generator().manual_seed(2))
    for spectrum, model in models.items():
        report = inspect_model(model.cpu(), ids)
        path = plot_report(report, out / f"inspect_{spectrum}.png")
        scenarios = ", ".join(layer.scenario for layer in report.layers)
        print(f"  {spectrum:9} layers: {scenarios}; token-norm plot: {path}")


def run(args) -> None:
    from .cli import info

    t0 = time.perf_counter()
    _header("1. s6kit")
    info(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    scan_section(device)
    reorder_section(device)
    models = spectra_section(device, steps=args.steps)
    dynamics_section(models, out)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; figures in {out}/")


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="a short tour of the library")
    p.add_argument("--out", default="s6kit-demo", help="folder for the figures (default s6kit-demo)")
    p.add_argument("--steps", type=int, default=40, help="training steps per toy model")
    p.set_defaults(func=run)
