"""SoftSort reordering on the CPU: values and gradients against the float64 reference (which
builds P), ties, hard mode, the fused scoring, gradcheck, low precision, memory at long L,
torch.compile, bad input and the NaN policy."""
from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch

import s6kit
from s6kit._core import _C, byte_allocator, desc
from softsort_cases import (
    assert_close,
    make_scores,
    run,
    score_and_permute_case,
    soft_permute_case,
    token_inputs,
)

F64 = 1e-10  # float64 kernels against the float64 reference, relative to the largest value


def _check_soft_permute(x, s, g, rtol=F64, **kw):
    ref = soft_permute_case(x, s, g, **kw)
    got = run(s6kit.soft_permute, x, s, g, **kw)
    for name, a, e in zip(("out", "dx", "dscores"), got, ref):
        assert_close(a, e, rtol, f"{name} {kw}")


# ---- soft_permute against the reference, float64 --------------------------------------------

GRID = list(itertools.product((1.0, 2.0), (0.1, 1.0, 10.0), (True, False)))


@pytest.mark.parametrize("L", [1, 2, 5, 196, 1000])
@pytest.mark.parametrize("p,tau,descending", GRID)
def test_soft_permute_matches_reference(L, p, tau, descending):
    batch, dim = (2, 3) if L < 1000 else (1, 2)
    x, s, g = token_inputs(batch, dim, L, "random", seed=L)
    _check_soft_permute(x, s, g, tau=tau, p=p, descending=descending)


@pytest.mark.parametrize("p,tau,descending", [(1.0, 0.1, True), (1.0, 10.0, False),
                                              (2.0, 1.0, True), (2.0, 10.0, False)])
def test_soft_permute_matches_reference_long(p, tau, descending):
    x, s, g = token_inputs(1, 2, 4097, "random", seed=7)
    _check_soft_permute(x, s, g, tau=tau, p=p, descending=descending)


@pytest.mark.parametrize("p", [1.5, 3.0])
def test_soft_permute_other_p(p):
    x, s, g = token_inputs(2, 5, 300, "random", seed=3)
    _check_soft_permute(x, s, g, tau=0.5, p=p, descending=True)


def _soft_permute_tie_safe(x, s, tau, p):
    """The reference with |d|^p's derivative taken as 0 at d = 0 (for p < 1 it is infinite and
    the reference's score gradient is NaN: every token ties with itself)."""
    t = torch.sort(s, dim=-1, descending=True, stable=True).values
    d = t.unsqueeze(-1) - s.unsqueeze(-2)
    zero = d == 0
    d_safe = torch.where(zero, torch.ones_like(d), d)
    logits = torch.where(zero, torch.zeros_like(d), -d_safe.abs().pow(p) / tau)
    return torch.einsum("bij,bdj->bdi", torch.softmax(logits, dim=-1), x)


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_soft_permute_p_below_one(kind):
    x, s, g = token_inputs(2, 5, 120, kind, seed=3)
    xr, sr = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
    ref = _soft_permute_tie_safe(xr, sr, 0.5, 0.5)
    expected = (ref.detach(),) + torch.autograd.grad(ref, (xr, sr), g)
    got = run(s6kit.soft_permute, x, s, g, tau=0.5, p=0.5)
    for name, a, e in zip(("out", "dx", "dscores"), got, expected):
        assert_close(a, e, F64, name)


@pytest.mark.parametrize("kind", ["ties", "equal"])
@pytest.mark.parametrize("p,descending", [(1.0, True), (1.0, False), (2.0, True), (2.0, False)])
@pytest.mark.parametrize("L", [7, 300])
def test_exact_ties(kind, p, descending, L):
    """Tied scores: values and token gradients as the reference; the score gradient as the
    reference's too (sign(0) = 0: tied pairs contribute nothing)."""
    x, s, g = token_inputs(2, 4, L, kind, seed=11)
    _check_soft_permute(x, s, g, tau=0.7, p=p, descending=descending)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, F64), (torch.float32, 1e-5)])
@pytest.mark.parametrize("descending", [True, False])
def test_signed_zero_scores_are_one_tie(dtype, rtol, descending):
    """-0.0 and +0.0 are equal scores: sorted keys then alternate signs of zero, and the gap
    between them (-0.0 or +0.0) must give the decay 1, as any other tie."""
    x, s, g = token_inputs(2, 3, 40, "ties", seed=12)
    s[:, ::3] = 0.0
    s[:, 1::3] = -0.0
    got = run(s6kit.soft_permute, x.to(dtype), s.to(dtype), g.to(dtype), tau=0.3,
              descending=descending)
    expected = soft_permute_case(x, s, g, tau=0.3, descending=descending)
    for name, a, e in zip(("out", "dx", "dscores"), got, expected):
        assert_close(a, e, rtol, name)
    # The ranking keeps the order of tied zeros, as torch.sort(stable=True) does.
    hard = s6kit.soft_permute(x, s, hard=True, descending=descending)
    order = torch.sort(s, dim=-1, descending=descending, stable=True).indices
    assert torch.equal(hard, torch.gather(x, 2, order.unsqueeze(1).expand_as(x)))


def test_tie_pairs_do_not_move_scores():
    """Two tokens with one score and nothing else: their mutual weight carries no gradient."""
    x = torch.randn(1, 3, 2, dtype=torch.float64)
    s = torch.zeros(1, 2, dtype=torch.float64)
    g = torch.randn(1, 3, 2, dtype=torch.float64)
    _, _, ds = run(s6kit.soft_permute, x, s, g)
    assert torch.equal(ds, torch.zeros_like(ds))


# ---- hard mode --------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("descending", [True, False])
def test_hard_mode(p, kind, descending):
    x, s, g = token_inputs(2, 4, 65, kind, seed=5)
    out, dx, ds = run(s6kit.soft_permute, x, s, g, p=p, hard=True, descending=descending)
    order = torch.sort(s, dim=-1, descending=descending, stable=True).indices
    gather = torch.gather(x, 2, order.unsqueeze(1).expand_as(x))
    assert torch.equal(out, gather)  # a true permutation, ties included
    # Tokens: the permutation's adjoint; scores: the soft gradient (straight-through).
    assert torch.equal(dx, torch.zeros_like(x).scatter_(2, order.unsqueeze(1).expand_as(x), g))
    _, _, ds_soft = run(s6kit.soft_permute, x, s, g, p=p, hard=False, descending=descending)
    assert_close(ds, ds_soft, 1e-13, "hard dscores vs soft")
    _check_soft_permute(x, s, g, p=p, hard=True, descending=descending)


# ---- score_and_permute ------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("L", [5, 196])
def test_score_and_permute_matches_reference(p, hard, descending, L):
    gen = torch.Generator().manual_seed(L)
    x = torch.randn(2, 19, L, dtype=torch.float64, generator=gen)
    w = torch.randn(19, dtype=torch.float64, generator=gen) * 0.3
    g = torch.randn(2, 19, L, dtype=torch.float64, generator=gen)
    kw = dict(tau=0.8, p=p, hard=hard, descending=descending)
    ref = score_and_permute_case(x, w, g, **kw)
    got = run(s6kit.score_and_permute, x, w, g, **kw)
    for name, a, e in zip(("out", "dx", "dw"), got, ref):
        assert_close(a, e, F64, f"{name} {kw}")


def test_score_and_permute_float32_weights_with_bfloat16_tokens():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 40, generator=gen).bfloat16()
    w = torch.randn(16, generator=gen)
    out, dx, dw = run(s6kit.score_and_permute, x, w, torch.ones(2, 16, 40))
    assert out.dtype == torch.bfloat16 and dx.dtype == torch.bfloat16 and dw.dtype == torch.float32
    ref = score_and_permute_case(x.double(), w.double(), torch.ones(2, 16, 40))
    assert_close(out, ref[0], 2e-2, "out")
    assert_close(dw, ref[2], 5e-2, "dw")


# ---- gradcheck --------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
@pytest.mark.parametrize("descending", [True, False])
def test_gradcheck_soft_permute(p, descending):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    s = make_scores(2, 6, "spread", gen).requires_grad_(True)
    fn = lambda x, s: s6kit.soft_permute(x, s, tau=0.9, p=p, descending=descending)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, s), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_gradcheck_score_and_permute(p):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen)
    w = torch.tensor([0.9, -0.4, 0.3], dtype=torch.float64)
    # Tokens whose scores stay well apart under the finite-difference steps.
    x[:, 0] += torch.arange(5, dtype=torch.float64) * 0.7
    x.requires_grad_(True)
    w.requires_grad_(True)
    fn = lambda x, w: s6kit.score_and_permute(x, w, tau=1.3, p=p)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w), eps=1e-6, atol=1e-7)


# ---- lower precision --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 2e-5), (torch.bfloat16, 3e-2),
                                        (torch.float16, 4e-3)])
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_low_precision(dtype, rtol, p):
    x, s, g = token_inputs(2, 24, 700, "random", seed=9)
    x, g = x.to(dtype), g.to(dtype)
    ref = soft_permute_case(x.double(), s.float().double(), g.double(), tau=0.5, p=p)
    got = run(s6kit.soft_permute, x, s.float(), g, tau=0.5, p=p)
    assert got[0].dtype == dtype and got[1].dtype == dtype and got[2].dtype == torch.float32
    for name, a, e in zip(("out", "dx", "dscores"), got, ref):
        assert_close(a, e, rtol, f"{dtype} {name}")


def test_results_do_not_depend_on_thread_count():
    x, s, g = token_inputs(3, 37, 500, "random", seed=12)
    x, s, g = x.float(), s.float(), g.float()
    w = torch.randn(37)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(run(s6kit.soft_permute, x, s, g) + run(s6kit.score_and_permute, x, w, g))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---- layouts and sizes ------------------------------------------------------------------------

def test_strided_inputs_and_broadcast_gradient():
    x, s, _ = token_inputs(2, 5, 33, "random", seed=13)
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)  # stride 1 along dim, not along L
    g = torch.randn(1, 1, 1, dtype=torch.float64).expand(2, 5, 33)  # stride 0 everywhere
    ref = soft_permute_case(x, s, g.contiguous())
    got = run(s6kit.soft_permute, xt, s.t().contiguous().t(), g)  # scores strided too
    for name, a, e in zip(("out", "dx", "dscores"), got, ref):
        assert_close(a, e, F64, name)


@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 0, 5), (2, 3, 0)])
def test_empty_shapes(shape):
    x = torch.randn(shape, requires_grad=True)
    s = torch.randn(shape[0], shape[2], requires_grad=True)
    w = torch.randn(shape[1], requires_grad=True)
    out = s6kit.soft_permute(x, s)
    assert out.shape == x.shape
    dx, ds = torch.autograd.grad(out.sum(), (x, s), allow_unused=True)
    assert dx.shape == x.shape and ds.shape == s.shape
    assert torch.equal(ds, torch.zeros_like(ds))
    out = s6kit.score_and_permute(x, w)
    dx, dw = torch.autograd.grad(out.sum(), (x, w))
    assert torch.equal(dw, torch.zeros_like(dw))


LONG_L_SCRIPT = textwrap.dedent("""
    import resource, sys, torch, s6kit
    torch.manual_seed(0)
    B, D, L = 1, 64, 65536
    x = torch.randn(B, D, L, requires_grad=True)
    s = (torch.randn(B, L) * 3).requires_grad_(True)
    w = (torch.randn(D) * 0.1).requires_grad_(True)
    g = torch.randn(B, D, L)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = s6kit.soft_permute(x, s, tau=0.05)
    dx, ds = torch.autograd.grad(out, (x, s), g)
    out2 = s6kit.score_and_permute(x, w)
    dx2, dw = torch.autograd.grad(out2, (x, w), g)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Exact float64 rows of P for a few positions.
    t, order = torch.sort(s.detach().double(), dim=-1, descending=True, stable=True)
    rows = torch.tensor([0, 1, 7, 30000, L - 2, L - 1])
    P = torch.softmax(-(t[0, rows, None] - s.detach().double()[0, None, :]).abs() / 0.05, dim=-1)
    expect = P @ x.detach().double()[0].T
    err = ((out.detach().double()[0, :, rows].T - expect).abs().max() / expect.abs().max()).item()
    token_bytes = x.numel() * x.element_size()
    print(peak - base, token_bytes, err, bool(torch.isfinite(dx).all() and torch.isfinite(ds).all()
          and torch.isfinite(dx2).all() and torch.isfinite(dw).all()))
""")


def test_long_sequence_memory_stays_linear():
    """L = 65536: P would take 17 GB; the kernels stay within a few token tensors."""
    res = subprocess.run([sys.executable, "-c", LONG_L_SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    growth, token_bytes, err, finite = res.stdout.split()
    assert finite == "True"
    assert float(err) < 1e-5
    # out, dx, ds and the backward's scratch: far below one L x L matrix (17 GB).
    assert int(growth) < 16 * int(token_bytes), (growth, token_bytes)


# ---- torch.compile and op registration ---------------------------------------------------------

def test_torch_compile_fullgraph():
    x, s, g = token_inputs(2, 6, 50, "random", seed=21)
    x, s, g = x.float(), s.float(), g.float()
    w = torch.randn(6)

    def f(x, s, w):
        return s6kit.soft_permute(x, s, tau=0.5) + s6kit.score_and_permute(x, w, p=2.0)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xs = [t.clone().requires_grad_(True) for t in (x, s, w)]
    xe = [t.clone().requires_grad_(True) for t in (x, s, w)]
    out_c = compiled(*xs)
    out_e = f(*xe)
    assert torch.equal(out_c, out_e)
    for a, b in zip(torch.autograd.grad(out_c, xs, g), torch.autograd.grad(out_e, xe, g)):
        assert torch.equal(a, b)


def test_opcheck():
    x, s, g = token_inputs(2, 3, 9, "random", seed=22)
    w = torch.randn(3, dtype=torch.float64)
    t, perm = torch.sort(s, dim=-1, descending=True, stable=True)
    ops = torch.ops.s6kit
    torch.library.opcheck(ops.soft_permute_fwd, (x.requires_grad_(True), s, 1.0, 1.0, False, True))
    torch.library.opcheck(ops.score_and_permute_fwd, (x, w, 1.0, 2.0, False, False))
    torch.library.opcheck(ops.soft_permute_bwd, (g, x.detach(), t, perm, 1.0, 1.0, False, True))
    torch.library.opcheck(ops.score_and_permute_bwd,
                          (g, x.detach(), w, t, perm, 1.0, 1.0, False, True))


# ---- bad input and the NaN policy --------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: (torch.randn(3, 4), torch.randn(3, 4)), "'x' must be a tensor of shape"),
    (lambda: (torch.randn(2, 3, 4), torch.randn(2, 5)), "'scores' must have shape"),
    (lambda: (torch.randn(2, 3, 4), torch.randn(2, 4, 1)), "'scores' must have shape"),
    (lambda: (torch.randint(0, 3, (2, 3, 4)), torch.randn(2, 4)), "'x' must be a floating"),
    (lambda: (torch.randn(2, 3, 4), torch.randint(0, 3, (2, 4))), "'scores' must be a floating"),
    (lambda: (torch.randn(2, 3, 4), torch.randn(2, 4, device="meta")), "'scores' must be on the device"),
    (lambda: (torch.randn(2, 3, 4), [1.0] * 4), "'scores' must be a torch.Tensor"),
])
def test_bad_input_soft_permute(make, match):
    x, s = make()
    with pytest.raises(ValueError, match=match):
        s6kit.soft_permute(x, s)


@pytest.mark.parametrize("kw,match", [
    (dict(tau=0.0), "'tau' must be a finite number > 0"),
    (dict(tau=-1.0), "'tau' must be a finite number > 0"),
    (dict(tau=float("nan")), "'tau' must be a finite number > 0"),
    (dict(p=0.0), "'p' must be a finite number > 0"),
    (dict(p=float("inf")), "'p' must be a finite number > 0"),
    (dict(tau="1"), "'tau' must be a number"),
])
def test_bad_hyperparameters(kw, match):
    x, s = torch.randn(2, 3, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match=match):
        s6kit.soft_permute(x, s, **kw)
    with pytest.raises(ValueError, match=match):
        s6kit.score_and_permute(x, torch.randn(3), **kw)


def test_bad_input_score_and_permute():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="'w' must have shape"):
        s6kit.score_and_permute(x, torch.randn(4))
    with pytest.raises(ValueError, match="'w' must be a floating"):
        s6kit.score_and_permute(x, torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="'x' must be a tensor of shape"):
        s6kit.score_and_permute(torch.randn(3, 4), torch.randn(3))


def test_core_rejects_bad_descriptors():
    """The compiled core checks everything again (shape, dtype, layout) with clear messages."""
    x = torch.randn(2, 3, 5)
    s = torch.randn(2, 5)
    out, t = torch.empty(2, 3, 5), torch.empty(2, 5)
    perm = torch.empty(2, 5, dtype=torch.int64)
    alloc = lambda n: None  # noqa: E731  (never called on the CPU)

    def fwd(x=x, s=s, w=None, out=out, t=t, perm=perm, tau=1.0, p=1.0):
        _C.softsort_fwd(desc(x, "t", "x"), desc(s, "t", "scores"), desc(w, "t", "w"),
                        desc(out, "t", "out"), desc(t, "t", "sorted_scores"),
                        desc(perm, "t", "perm"), tau, p, False, True, alloc, 0, 1)

    fwd()
    assert torch.equal(perm, torch.sort(s, dim=-1, descending=True, stable=True).indices)
    with pytest.raises(ValueError, match="'perm' must be int64"):
        fwd(perm=perm.int())
    with pytest.raises(ValueError, match="'sorted_scores' must be float32"):
        fwd(t=t.double())
    with pytest.raises(ValueError, match="'scores' must be float32"):
        fwd(s=s.double())
    with pytest.raises(ValueError, match="'scores' or 'w': exactly one"):
        fwd(w=torch.randn(3))
    with pytest.raises(ValueError, match="'w' must have shape"):
        fwd(s=None, w=torch.randn(4))
    with pytest.raises(ValueError, match="'out' must have shape"):
        fwd(out=torch.empty(2, 3, 4))
    with pytest.raises(ValueError, match="'out' must be contiguous"):
        fwd(out=torch.empty(2, 5, 3).transpose(1, 2))
    with pytest.raises(ValueError, match="'x' must have stride 1 in its last dimension"):
        fwd(x=torch.randn(2, 5, 3).transpose(1, 2))
    with pytest.raises(ValueError, match="'tau' must be a finite number > 0"):
        fwd(tau=0.0)
    with pytest.raises(ValueError, match="'p' must be a finite number > 0"):
        fwd(p=-2.0)
    with pytest.raises(ValueError, match="'x' must be float32, float16, bfloat16 or float64"):
        fwd(x=torch.ones(2, 3, 5, dtype=torch.int32))


@pytest.mark.parametrize("arg", ["u", "delta", "A", "B", "C", "D"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_scan_core_still_rejects_integer_tensors(arg, dtype):
    """Integer descriptors exist for permutations; the selective scan's checks refuse them."""
    t = dict(u=torch.randn(1, 2, 4), delta=torch.randn(1, 2, 4), A=torch.randn(2, 3),
             B=torch.randn(1, 3, 4), C=torch.randn(1, 3, 4), D=torch.randn(2))
    t[arg] = t[arg].to(dtype)
    out, last = torch.empty(1, 2, 4), torch.empty(1, 2, 3)
    d = {k: desc(v, "selective_scan", k) for k, v in t.items()}
    with pytest.raises(ValueError, match=f"'{arg}' must"):
        _C.scan_fwd(d["u"], d["delta"], d["A"], d["B"], d["C"], d["D"], None, None, None,
                    desc(out, "s", "out"), desc(last, "s", "last_state"), None, False,
                    byte_allocator(out.device, []), 0, 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("hard", [False, True])
def test_nonfinite_scores_poison_only_their_batch_element(bad, p, hard):
    x, s, g = token_inputs(2, 3, 9, "random", seed=30)
    s[0, 4] = bad
    out, dx, ds = run(s6kit.soft_permute, x, s, g, p=p, hard=hard)
    assert torch.isnan(out[0]).all() and torch.isnan(dx[0]).all() and torch.isnan(ds[0]).all()
    ref = soft_permute_case(x[1:], s[1:], g[1:], p=p, hard=hard)
    for name, a, e in zip(("out", "dx", "dscores"), (out[1:], dx[1:], ds[1:]), ref):
        assert_close(a, e, F64, name)
    w = torch.randn(3, dtype=torch.float64)
    xb = x.clone()
    xb[0, :, 2] = bad
    out, dx, dw = run(s6kit.score_and_permute, xb, w, g, p=p, hard=hard)
    assert torch.isnan(out[0]).all() and torch.isnan(dx[0]).all() and torch.isnan(dw).all()
    assert torch.isfinite(out[1]).all() and torch.isfinite(dx[1]).all()
