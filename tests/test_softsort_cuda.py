"""SoftSort reordering on CUDA: float32 / bfloat16 kernels against the float64 reference (and,
for sequences too long for the reference, against the float64 CPU kernels that the CPU tests
check against it), ties, hard mode, the NaN policy, memory at long L and torch.compile.
Skipped without a GPU."""
from __future__ import annotations

import itertools

import pytest
import torch

import s6kit
from cuda_graphs import replays_like_eager
from softsort_cases import (
    assert_close,
    exact_score_inputs,
    run,
    score_and_permute_case,
    soft_permute_case,
    token_inputs,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

DEV = "cuda"
F32 = 1e-4  # float32 kernels (scans over thousands of near-1 decays) against float64


def _on_cuda(fn, x, other, g, dtype=torch.float32, **kw):
    return run(fn, x.to(DEV, dtype), other.to(DEV, torch.float32), g.to(DEV, dtype), **kw)


def _check(got, expected, rtol, what):
    for name, a, e in zip(("out", "dx", "dother"), got, expected):
        assert a.device.type == "cuda"
        assert_close(a, e, rtol, f"{name} {what}")


# ---- against the reference ---------------------------------------------------------------------

GRID = list(itertools.product((1.0, 2.0), (0.1, 1.0, 10.0), (True, False)))


@pytest.mark.parametrize("L", [1, 2, 5, 196, 1000, 4097])
@pytest.mark.parametrize("p,tau,descending", GRID)
def test_soft_permute_matches_reference(L, p, tau, descending):
    batch, dim = (2, 5) if L < 1000 else (2, 3)
    x, s, g = token_inputs(batch, dim, L, "random", seed=L)
    s = s.float().double()  # the kernels sort float32 scores
    kw = dict(tau=tau, p=p, descending=descending)
    _check(_on_cuda(s6kit.soft_permute, x, s, g, **kw), soft_permute_case(x, s, g, **kw), F32, kw)


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
@pytest.mark.parametrize("kind", ["ties", "equal"])
@pytest.mark.parametrize("descending", [True, False])
def test_exact_ties(p, kind, descending):
    x, s, g = token_inputs(2, 6, 700, kind, seed=4)
    kw = dict(tau=0.7, p=p, descending=descending)
    _check(_on_cuda(s6kit.soft_permute, x, s, g, **kw), soft_permute_case(x, s, g, **kw), F32, kw)


@pytest.mark.parametrize("L", [3000, 9000])
@pytest.mark.parametrize("descending", [True, False])
def test_sparse_ties(L, descending):
    """Distinct scores but for a tied pair and a run of 300 tied scores, which spans warps: the
    warps without ties take the short path of the score gradient's sums, the others the general
    one, in one block (rows of one tile) and in the tiles of a longer row."""
    x, s, g = token_inputs(2, 3, L, "random", seed=L + 7)
    s = s.float().double()
    s[:, 10] = s[:, 11]
    s[:, 100:400] = 0.125
    kw = dict(tau=0.5, descending=descending)
    if L <= 4096:
        expected = soft_permute_case(x, s, g, **kw)
    else:  # the float64 CPU kernels, which the CPU tests check against the reference
        expected = run(s6kit.soft_permute, x, s, g, **kw)
    _check(_on_cuda(s6kit.soft_permute, x, s, g, **kw), expected, F32, kw)


@pytest.mark.parametrize("L", [40, 5000])
@pytest.mark.parametrize("descending", [True, False])
def test_signed_zero_scores_are_one_tie(L, descending):
    """-0.0 and +0.0 scores tie: the zero gaps between them (of either sign) decay by 1."""
    x, s, g = token_inputs(2, 3, L, "ties", seed=12)
    s[:, ::3] = 0.0
    s[:, 1::3] = -0.0
    kw = dict(tau=0.3, descending=descending)
    _check(_on_cuda(s6kit.soft_permute, x, s, g, **kw), run(s6kit.soft_permute, x, s, g, **kw),
           F32, kw)


@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("L", [300, 9000])
def test_hard_mode(p, L):
    x, s, g = token_inputs(2, 4, L, "ties", seed=6)
    out, dx, ds = _on_cuda(s6kit.soft_permute, x, s, g, p=p, hard=True)
    order = torch.sort(s.float(), dim=-1, descending=True, stable=True).indices.to(DEV)
    xf, gf = x.to(DEV, torch.float32), g.to(DEV, torch.float32)
    idx = order.unsqueeze(1).expand_as(xf)
    assert torch.equal(out, torch.gather(xf, 2, idx))
    assert torch.equal(dx, torch.zeros_like(xf).scatter_(2, idx, gf))
    _, _, ds_soft = _on_cuda(s6kit.soft_permute, x, s, g, p=p)
    assert_close(ds, ds_soft, 1e-6, "hard dscores vs soft")


# ---- long sequences: several tiles per row ------------------------------------------------------

@pytest.mark.parametrize("L,kind,descending", [(4097, "random", True), (8193, "ties", False),
                                               (20000, "random", True), (65536, "ties", True)])
def test_long_rows_match_the_float64_cpu_kernels(L, kind, descending):
    x, s, g = token_inputs(2, 3, L, kind, seed=L)
    s = s.float().double()
    kw = dict(tau=1.0, descending=descending)
    _check(_on_cuda(s6kit.soft_permute, x, s, g, **kw), run(s6kit.soft_permute, x, s, g, **kw),
           F32, kw)
    # Scores from three channels: dense keys, so every position sees thousands of neighbours
    # through decays just below 1 (the float32 scans' hardest case). Exact scores: both sides
    # sort the same keys (see exact_score_inputs).
    x, w = exact_score_inputs(2, 3, L, torch.Generator().manual_seed(L + 1))
    _check(_on_cuda(s6kit.score_and_permute, x, w, g, **kw),
           run(s6kit.score_and_permute, x, w, g, **kw), 2e-4, kw)


@pytest.mark.parametrize("L,hard", [(9000, False), (20000, True)])
def test_long_rows_in_bfloat16(L, hard):
    """Rows of several tiles in bfloat16, against the float64 CPU kernels on the same rounded
    inputs. These rows fit in shared memory: the apply pass writes K g / Z over the sorted tokens
    in dx, which finish_dx puts back into token order (float32 rows of 65536 tokens do not fit and
    take the float32 scratch and the unpermute, above)."""
    x, s, g = token_inputs(2, 3, L, "random", seed=L + 2)
    x, g = x.to(torch.bfloat16).double(), g.to(torch.bfloat16).double()
    s = s.float().double()
    got = _on_cuda(s6kit.soft_permute, x, s, g, dtype=torch.bfloat16, hard=hard)
    _check(got, run(s6kit.soft_permute, x, s, g, hard=hard), 3e-2, (L, hard))
    xw, w = exact_score_inputs(2, 3, L, torch.Generator().manual_seed(L + 3))
    got = _on_cuda(s6kit.score_and_permute, xw, w, g, dtype=torch.bfloat16, hard=hard)
    _check(got, run(s6kit.score_and_permute, xw, w, g, hard=hard), 3e-2, (L, hard))


# ---- score_and_permute ------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("descending", [False, True])
def test_score_and_permute_matches_reference(p, hard, descending):
    gen = torch.Generator().manual_seed(3)
    x, w = exact_score_inputs(3, 70, 300, gen, w_scale=0.2)  # the same keys on both sides
    g = torch.randn(3, 70, 300, dtype=torch.float64, generator=gen)
    kw = dict(tau=0.8, p=p, hard=hard, descending=descending)
    got = _on_cuda(s6kit.score_and_permute, x, w, g, **kw)
    _check(got, score_and_permute_case(x, w, g, **kw), 2e-4, kw)


@pytest.mark.parametrize("batch,dim,L", [(1, 1, 1), (2, 3, 5), (1, 5, 37), (3, 2, 196),
                                         (2, 13, 100)])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, F32), (torch.bfloat16, 3e-2)])
def test_score_and_permute_edge_shapes_on_strided_tokens(batch, dim, L, hard, dtype, rtol):
    """The score term of dx and dw on one position, one channel, batch 1 and odd lengths (rows
    that are not whole 16-byte chunks), with x a strided view (every other channel of a wider
    tensor). The tokens are exact in bfloat16, so both sides sort the same keys."""
    gen = torch.Generator().manual_seed(L)
    x, w = exact_score_inputs(batch, dim, L, gen, w_scale=0.3)
    g = torch.randn(batch, dim, L, dtype=torch.float64, generator=gen).to(dtype).double()
    wide = torch.zeros(batch, 2 * dim, L, device=DEV, dtype=dtype)
    wide[:, ::2] = x.to(DEV, dtype)
    wide.requires_grad_(True)
    wc = w.to(DEV, torch.float32).requires_grad_(True)
    out = s6kit.score_and_permute(wide[:, ::2], wc, tau=0.7, hard=hard)
    dwide, dw = torch.autograd.grad(out, (wide, wc), g.to(DEV, dtype))
    assert torch.all(dwide[:, 1::2] == 0)
    expected = score_and_permute_case(x, w, g, tau=0.7, hard=hard)
    _check((out, dwide[:, ::2], dw), expected, rtol, (batch, dim, L, hard, dtype))


@pytest.mark.parametrize("L", [9, 5000])
def test_score_and_permute_nonfinite_tokens_poison_their_batch_element(L):
    """A NaN token makes its batch element's scores NaN: that element's output and dx are NaN,
    and so is dw (a sum over the batch); the other element is unaffected."""
    gen = torch.Generator().manual_seed(L)
    x, w = exact_score_inputs(2, 3, L, gen, w_scale=0.3)
    g = torch.randn(2, 3, L, dtype=torch.float64, generator=gen)
    x[0, 1, L // 2] = float("nan")
    out, dx, dw = _on_cuda(s6kit.score_and_permute, x, w, g)
    assert torch.isnan(out[0]).all() and torch.isnan(dx[0]).all() and torch.isnan(dw).all()
    expected = score_and_permute_case(x[1:], w, g[1:])
    _check((out[1:], dx[1:]), expected[:2], F32, "finite element")


@pytest.mark.parametrize("dtype,rtol", [(torch.bfloat16, 3e-2), (torch.float16, 4e-3)])
def test_low_precision(dtype, rtol):
    x, s, g = token_inputs(2, 40, 1000, "random", seed=8)
    x, g = x.to(dtype).double(), g.to(dtype).double()
    ref = soft_permute_case(x, s.float().double(), g)
    got = _on_cuda(s6kit.soft_permute, x, s, g, dtype=dtype)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    _check(got, ref, rtol, dtype)


def test_benchmark_shape_bfloat16():
    """(8, 1536, 4096) in bfloat16, as the benchmark runs it, against float32 math. The scores
    are exact (see exact_score_inputs): with 33 M token pairs, float32 scores summed in another
    order than the reference's reorder a few near-tied pairs, whose score gradients then differ
    by O(1) (0.12 in dx here)."""
    gen = torch.Generator().manual_seed(0)
    x, w = exact_score_inputs(8, 1536, 4096, gen, w_scale=1 / 40)
    x, w = x.to(DEV, torch.bfloat16), w.to(DEV, torch.float32)
    g = torch.randn(8, 1536, 4096, generator=gen).to(DEV, torch.bfloat16)
    out, dx, dw = run(s6kit.score_and_permute, x, w, g)
    xr, wr = x.float().requires_grad_(True), w.clone().requires_grad_(True)
    ref = s6kit.score_and_permute_ref(xr, wr)
    rdx, rdw = torch.autograd.grad(ref, (xr, wr), g.float())
    assert_close(out, ref, 2e-2, "out")
    assert_close(dx, rdx, 3e-2, "dx")
    assert_close(dw, rdw, 3e-2, "dw")


def test_cpu_and_cuda_agree_in_float32():
    x, s, g = token_inputs(3, 33, 2000, "ties", seed=15)
    # Exact scores for score_and_permute (see exact_score_inputs): both sides sort the same keys.
    xw, w = exact_score_inputs(3, 33, 2000, torch.Generator().manual_seed(15))
    for fn, xin, other in ((s6kit.soft_permute, x, s), (s6kit.score_and_permute, xw, w)):
        cpu = run(fn, xin.float(), other.float(), g.float())
        gpu = _on_cuda(fn, xin, other, g)
        _check(gpu, cpu, 1e-4, fn.__name__)


@pytest.mark.parametrize("L,dtype,rtol,kw", [
    (3000, torch.float32, F32, {}), (1001, torch.float32, F32, {}), (37, torch.bfloat16, 3e-2, {}),
    (5000, torch.float32, F32, {}), (300, torch.float32, F32, dict(p=2.0, hard=True))])
def test_gradient_of_a_sum(L, dtype, rtol, kw):
    """out.sum() hands the backward a broadcast gradient (stride 0), as the benchmark does, which
    the kernels read as one value per row: the sweep of rows of one tile (rows of 1001 and 37
    positions end inside a thread's positions, which must see a zero gradient past the row's
    end), the tile kernels of longer rows (5000), and the unpermute of the hard mode (p = 2)."""
    x, s, _ = token_inputs(2, 16, L, "random", seed=16)
    # Exact scores for score_and_permute (see exact_score_inputs): float32 on the GPU and float64
    # here sort the same keys.
    xw, w = exact_score_inputs(2, 16, L, torch.Generator().manual_seed(16), w_scale=0.3)
    for fn, xin, other in ((s6kit.soft_permute, x, s), (s6kit.score_and_permute, xw, w)):
        xin = xin.to(dtype).double()  # the tokens as stored
        other = other.float().double()  # scores (and w) exact in float32: the same keys sorted
        xc = xin.to(DEV, dtype).requires_grad_(True)
        oc = other.to(DEV, torch.float32).requires_grad_(True)
        got = torch.autograd.grad(fn(xc, oc, **kw).sum(), (xc, oc))
        xr, orr = xin.clone().requires_grad_(True), other.clone().requires_grad_(True)
        expected = torch.autograd.grad(fn(xr, orr, **kw).sum(), (xr, orr))
        for name, a, e in zip(("dx", "dother"), got, expected):
            assert_close(a, e, rtol, f"{fn.__name__} {name} {L} {dtype} {kw}")


@pytest.mark.parametrize("L", [300, 5000])
@pytest.mark.parametrize("hard", [False, True])
def test_gradient_strided_along_the_sequence(L, hard):
    """An output gradient whose rows are strided (every other element of a wider tensor) is read
    from global memory at its stride: by the sweep of rows of one tile (300), in both modes, and
    by the kernels of longer rows (5000)."""
    xw, w = exact_score_inputs(2, 9, L, torch.Generator().manual_seed(L), w_scale=0.3)
    g = torch.randn(2, 9, 2 * L, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xc = xw.to(DEV, torch.float32).requires_grad_(True)
    wc = w.to(DEV, torch.float32).requires_grad_(True)
    out = s6kit.score_and_permute(xc, wc, tau=0.6, hard=hard)
    gc = g.to(DEV, torch.float32)[..., ::2]
    assert gc.stride(-1) == 2
    got = (out, *torch.autograd.grad(out, (xc, wc), gc))
    expected = score_and_permute_case(xw, w, g[..., ::2].contiguous(), tau=0.6, hard=hard)
    _check(got, expected, F32, (L, hard))


# ---- memory -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,dim,bound", [(torch.float32, 64, 4.0), (torch.bfloat16, 256, 2.5)])
def test_long_sequence_memory_stays_linear(dtype, dim, bound):
    """L = 65536: P would take 17 GB per batch element; the kernels stay near the tokens' size:
    out, dx and scratch. A float32 row (256 KB) does not fit in shared memory, so the backward
    keeps K g / Z in a float32 scratch (one more token tensor); a bfloat16 row fits, and K g / Z
    takes the place of the sorted tokens in dx."""
    torch.manual_seed(0)
    x = torch.randn(2, dim, 65536, device=DEV).to(dtype).requires_grad_(True)
    w = (torch.randn(dim, device=DEV) * 0.1).requires_grad_(True)
    g = torch.randn_like(x)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = s6kit.score_and_permute(x, w)
    dx, dw = torch.autograd.grad(out, (x, w), g)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    token = x.numel() * x.element_size()
    assert torch.isfinite(dx.float()).all() and torch.isfinite(dw).all()
    assert extra < bound * token, (extra / token, bound)


# ---- compile, errors, NaN policy ----------------------------------------------------------------

def test_torch_compile_fullgraph():
    x, s, g = token_inputs(2, 8, 300, "random", seed=21)
    x, s, g = x.to(DEV, torch.float32), s.to(DEV, torch.float32), g.to(DEV, torch.float32)
    w = torch.randn(8, device=DEV)

    def f(x, s, w):
        return s6kit.soft_permute(x, s, tau=0.5) + s6kit.score_and_permute(x, w, p=2.0)

    compiled = torch.compile(f, fullgraph=True)
    xs = [t.clone().requires_grad_(True) for t in (x, s, w)]
    xe = [t.clone().requires_grad_(True) for t in (x, s, w)]
    out_c, out_e = compiled(*xs), f(*xe)
    assert torch.equal(out_c, out_e)
    for a, b in zip(torch.autograd.grad(out_c, xs, g), torch.autograd.grad(out_e, xe, g)):
        assert torch.equal(a, b)


def test_bad_input_on_cuda():
    x = torch.randn(2, 3, 4, device=DEV)
    with pytest.raises(ValueError, match="'scores' must be on the device of 'x'"):
        s6kit.soft_permute(x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="'w' must be on the device of 'x'"):
        s6kit.score_and_permute(x, torch.randn(3))
    with pytest.raises(ValueError, match="float64 runs on the CPU only"):
        s6kit.soft_permute(x.double(), torch.randn(2, 4, device=DEV))


@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("L", [9, 5000])
def test_nonfinite_scores_poison_only_their_batch_element(p, hard, L):
    x, s, g = token_inputs(2, 3, L, "random", seed=30)
    s[0, L // 2] = float("nan")
    out, dx, ds = _on_cuda(s6kit.soft_permute, x, s, g, p=p, hard=hard)
    assert torch.isnan(out[0]).all() and torch.isnan(dx[0]).all() and torch.isnan(ds[0]).all()
    ref = run(s6kit.soft_permute, x[1:], s[1:].float().double(), g[1:], p=p, hard=hard)
    _check((out[1:], dx[1:], ds[1:]), ref, F32, "finite element")


# ---- CUDA graphs -------------------------------------------------------------------------------

@pytest.mark.parametrize("L,p,hard", [(300, 1.0, False), (5000, 1.0, False), (300, 2.0, False),
                                      (300, 1.0, True)])
def test_score_and_permute_replays_in_a_cuda_graph(L, p, hard):
    """Forward and backward (rows of one tile and of several, p = 1 and 2, hard) captured into a
    CUDA graph and replayed on new tokens, w and output gradient: the eager bits."""
    gen = torch.Generator().manual_seed(L)
    x, w, g = (torch.randn(*s, generator=gen).to(DEV) for s in ((2, 16, L), (16,), (2, 16, L)))
    x.requires_grad_(True)
    w.requires_grad_(True)

    def step():
        out = s6kit.score_and_permute(x, w, p=p, hard=hard)
        return (out, *torch.autograd.grad(out, (x, w), g))

    fresh = [torch.randn(*t.shape, generator=gen).to(DEV) for t in (x, w, g)]
    replays_like_eager(step, (x, w, g), fresh)
