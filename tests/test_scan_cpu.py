"""The CPU selective scan against the float64 reference: values, every gradient, edge cases."""
from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import s6kit
from scan_cases import ScanCase, make_inputs, rel_err, run_with_grads

# The sweep of the Foundation issue: L = 1, 2049, 5000; N = 1 and 64; batch 1; grouped and
# time-invariant B/C; scalar A; with and without each optional input.
SWEEP = [
    ScanCase(),
    ScanCase(L=1),
    ScanCase(L=2, N=1),
    ScanCase(L=130, N=1, initial_state=True, last_state=True),  # one decay per step, vectorised
    ScanCase(batch=1, dim=2, L=2049, N=4, initial_state=True, last_state=True),
    ScanCase(batch=1, dim=1, L=5000, N=2, bc="grouped", groups=1),
    ScanCase(L=65, N=64, bc="invariant"),
    ScanCase(batch=1, L=64, N=1, scalar_A=True),
    ScanCase(dim=6, L=130, bc="grouped", groups=3, scalar_A=True, initial_state=True,
             last_state=True),
    ScanCase(L=40, bc="invariant", scalar_A=True, D=False, z=False),
    ScanCase(L=70, D=False, z=False, delta_bias=False, softplus=False),
    ScanCase(L=63, z=False, initial_state=True),
    ScanCase(L=129, D=False, delta_bias=False, last_state=True),
]


@pytest.mark.parametrize("case", SWEEP, ids=str)
def test_float64_matches_reference(case):
    kw = make_inputs(case, torch.float64)
    outs, grads = run_with_grads(s6kit.selective_scan_fn, kw)
    ref_outs, ref_grads = run_with_grads(s6kit.selective_scan_ref, kw)
    for o, r in zip(outs, ref_outs):
        assert rel_err(o, r) < 1e-10
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        assert rel_err(grads[k], ref_grads[k]) < 1e-10, k


@pytest.mark.parametrize("case", [c for c in SWEEP if c.L <= 2049], ids=str)
def test_float32_matches_float64_reference(case):
    kw32 = make_inputs(case, torch.float32)
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw32.items()}
    outs, grads = run_with_grads(s6kit.selective_scan_fn, kw32)
    ref_outs, ref_grads = run_with_grads(s6kit.selective_scan_ref, kw64)
    for o, r in zip(outs, ref_outs):
        assert o.dtype == torch.float32
        assert rel_err(o, r) < 1e-5
    for k in grads:
        assert grads[k].dtype == kw32[k].dtype
        assert rel_err(grads[k], ref_grads[k]) < 1e-4, k


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("case", [ScanCase(L=300, N=16, initial_state=True, last_state=True),
                                  ScanCase(L=97, bc="grouped", scalar_A=True),
                                  ScanCase(L=50, bc="invariant")], ids=str)
def test_half_storage_within_tolerance(case, dtype, tol):
    kw = make_inputs(case, dtype)
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    outs, grads = run_with_grads(s6kit.selective_scan_fn, kw)
    ref_outs, ref_grads = run_with_grads(s6kit.selective_scan_ref, kw64)
    assert outs[0].dtype == dtype
    for o, r in zip(outs, ref_outs):
        assert rel_err(o, r) < tol
    for k in grads:
        assert grads[k].dtype == kw[k].dtype
        assert rel_err(grads[k], ref_grads[k]) < tol, k


def test_gradcheck_float64():
    case = ScanCase(batch=2, dim=2, L=7, N=3, bc="grouped", groups=2, initial_state=True,
                    last_state=True)
    kw = make_inputs(case, torch.float64)
    names = [k for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")]
    tensors = [kw[k].clone().requires_grad_(True) for k in names]

    def f(*ts):
        args = dict(kw, **dict(zip(names, ts)))
        return s6kit.selective_scan_fn(**args)

    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3), dim_per_group=st.integers(1, 3), groups=st.integers(1, 3),
    L=st.integers(0, 150), N=st.integers(1, 9), bc=st.sampled_from(["variable", "grouped", "invariant"]),
    scalar_A=st.booleans(), D=st.booleans(), z=st.booleans(), delta_bias=st.booleans(),
    softplus=st.booleans(), initial_state=st.booleans(), last_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fuzz_shapes_float64(batch, dim_per_group, groups, L, N, bc, scalar_A, D, z, delta_bias,
                             softplus, initial_state, last_state, seed):
    case = ScanCase(batch=batch, dim=dim_per_group * groups, L=L, N=N, bc=bc, groups=groups,
                    scalar_A=scalar_A, D=D, z=z, delta_bias=delta_bias, softplus=softplus,
                    initial_state=initial_state, last_state=last_state)
    kw = make_inputs(case, torch.float64, seed=seed)
    outs, grads = run_with_grads(s6kit.selective_scan_fn, kw)
    ref_outs, ref_grads = run_with_grads(s6kit.selective_scan_ref, kw)
    for o, r in zip(outs, ref_outs):
        assert o.shape == r.shape
        assert rel_err(o, r) < 1e-10
    for k in grads:
        assert rel_err(grads[k], ref_grads[k]) < 1e-10, k


def test_non_contiguous_inputs():
    case = ScanCase(batch=2, dim=4, L=37, N=5, initial_state=True, last_state=True)
    kw = make_inputs(case, torch.float64)
    b, d, L, N = 2, 4, 37, 5
    strided = dict(kw)
    # u and z as (batch, L, dim) memory transposed; delta as a slice of a wider tensor;
    # B inside a larger buffer (non-unit batch stride); A and C transposed copies.
    strided["u"] = kw["u"].transpose(1, 2).contiguous().transpose(1, 2)
    strided["z"] = kw["z"].transpose(1, 2).contiguous().transpose(1, 2)
    wide = torch.zeros(b, 2 * d, L, dtype=torch.float64)
    wide[:, ::2] = kw["delta"]
    strided["delta"] = wide[:, ::2]
    big = torch.zeros(b, N + 3, L + 2, dtype=torch.float64)
    big[:, 1:N + 1, 2:] = kw["B"]
    strided["B"] = big[:, 1:N + 1, 2:]
    strided["A"] = kw["A"].t().contiguous().t()
    strided["C"] = kw["C"][:, :, :]
    strided["initial_state"] = kw["initial_state"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided["u"].is_contiguous() and not strided["delta"].is_contiguous()
    assert strided["B"].stride(-1) == 1 and not strided["B"].is_contiguous()
    outs, grads = run_with_grads(s6kit.selective_scan_fn, strided)
    ref_outs, ref_grads = run_with_grads(s6kit.selective_scan_ref, kw)
    for o, r in zip(outs, ref_outs):
        assert rel_err(o, r) < 1e-12
    for k in grads:
        assert rel_err(grads[k], ref_grads[k]) < 1e-10, k


def test_empty_sequence_policy():
    """L = 0: out is empty, the last state is the initial state, and d initial = d last."""
    case = ScanCase(L=0, initial_state=True, last_state=True)
    kw = make_inputs(case, torch.float64)
    out, last = s6kit.selective_scan_fn(**kw)
    assert out.shape == (2, 4, 0)
    assert torch.equal(last, kw["initial_state"])
    h0 = kw["initial_state"].clone().requires_grad_(True)
    _, last = s6kit.selective_scan_fn(**dict(kw, initial_state=h0))
    g = torch.randn_like(last)
    (dh0,) = torch.autograd.grad((last * g).sum(), h0)
    assert torch.equal(dh0, g)


@pytest.mark.parametrize("used", ["out", "last_state"])
def test_gradients_when_one_output_is_unused(used):
    """Only one of (out, last_state) feeds the loss: the other's gradient never arrives."""
    kw = make_inputs(ScanCase(L=70, initial_state=True, last_state=True), torch.float64)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]
    grads = {}
    for fn in (s6kit.selective_scan_fn, s6kit.selective_scan_ref):
        leaves = {k: kw[k].clone().requires_grad_(True) for k in names}
        out, last = fn(**dict(kw, **leaves))
        loss = (out ** 2).sum() if used == "out" else (last ** 2).sum()
        got = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads[fn] = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves.values(), got)]
    for name, a, b in zip(names, grads[s6kit.selective_scan_fn], grads[s6kit.selective_scan_ref]):
        assert rel_err(a, b) < 1e-10, name


def test_deterministic_and_thread_count_independent():
    case = ScanCase(batch=3, dim=24, L=200, N=16, bc="grouped", groups=3, initial_state=True,
                    last_state=True)
    kw = make_inputs(case, torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(run_with_grads(s6kit.selective_scan_fn, kw))
    finally:
        torch.set_num_threads(before)
    (o0, g0), *rest = results
    for o, g in rest:
        assert all(torch.equal(a, b) for a, b in zip(o, o0))
        assert all(torch.equal(g[k], g0[k]) for k in g0)


def test_backward_without_saved_checkpoints_recomputes_them():
    """The core's backward accepts a missing checkpoint buffer and recomputes the states."""
    from s6kit.ops.scan import _scan_bwd, _scan_fwd

    kw = make_inputs(ScanCase(L=150, initial_state=True), torch.float64)
    args = [kw[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")]
    out, last, ckpt = _scan_fwd(*args, True, True)
    assert ckpt.shape == (2, 4, 3, 8)
    dout, dlast = torch.randn_like(out), torch.randn_like(last)
    with_saved = _scan_bwd(dout, dlast, *args, ckpt, True)
    recomputed = _scan_bwd(dout, dlast, *args, None, True)
    for a, b in zip(with_saved, recomputed):
        assert rel_err(a, b) < 1e-13


def test_no_gradient_work_without_requires_grad():
    kw = make_inputs(ScanCase(), torch.float32)
    with torch.no_grad():
        out = s6kit.selective_scan_fn(**kw)
    assert not out.requires_grad
    assert rel_err(out, s6kit.selective_scan_ref(**kw)) < 1e-5


def test_torch_compile_fullgraph():
    kw = make_inputs(ScanCase(L=20, initial_state=True, last_state=True), torch.float32)
    u = kw.pop("u").requires_grad_(True)

    def f(u):
        out, last = s6kit.selective_scan_fn(u, **kw)
        return out.square().sum() + last.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(u)
    (g,) = torch.autograd.grad(loss, u)
    loss_ref = f(u)
    (g_ref,) = torch.autograd.grad(loss_ref, u)
    assert torch.allclose(loss, loss_ref)
    assert torch.allclose(g, g_ref)


def test_opcheck_custom_op():
    from s6kit.ops.scan import _scan_fwd

    kw = make_inputs(ScanCase(L=9, initial_state=True), torch.float32)
    args = [kw[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")]
    args = [a.requires_grad_(True) for a in args]
    torch.library.opcheck(_scan_fwd, (*args, True, False))


# ---- bad input ------------------------------------------------------------------------------

def _bad(**changes):
    kw = make_inputs(ScanCase(batch=2, dim=4, L=10, N=3, initial_state=True), torch.float32)
    kw.update(changes)
    return kw


@pytest.mark.parametrize("changes,arg", [
    (dict(u=torch.randn(2, 4, 10, dtype=torch.float64)), "delta"),
    (dict(u=torch.zeros(2, 4, 10, dtype=torch.int64)), "u"),
    (dict(u=torch.randn(2, 4)), "u"),
    (dict(delta=torch.randn(2, 4, 11)), "delta"),
    (dict(A=torch.randn(4, 5)), "A"),
    (dict(A=torch.randn(3, 3)), "A"),
    (dict(A=torch.randn(4, 3, 1)), "A"),
    (dict(B=torch.randn(3, 3, 10)), "B"),
    (dict(B=torch.randn(2, 3, 3, 10), C=torch.randn(2, 3, 3, 10)), "B"),
    (dict(C=torch.randn(2, 4, 10)), "C"),
    (dict(C=torch.randn(2, 3, 10, dtype=torch.float16)), "C"),
    (dict(B=torch.randn(5, 3)), "B"),
    (dict(D=torch.randn(5)), "D"),
    (dict(delta_bias=torch.randn(4, 1)), "delta_bias"),
    (dict(z=torch.randn(2, 4, 9)), "z"),
    (dict(z=torch.randn(2, 4, 10, dtype=torch.bfloat16)), "z"),
    (dict(initial_state=torch.randn(2, 4, 4)), "initial_state"),
    (dict(delta=torch.randn(2, 4, 10, device="meta")), "delta"),
    (dict(D=torch.randn(4, device="meta")), "D"),
])
def test_bad_input_raises_value_error_naming_argument(changes, arg):
    with pytest.raises(ValueError, match=f"'{arg}'"):
        s6kit.selective_scan_fn(**_bad(**changes))


def test_compiled_core_is_torch_free():
    """The compiled module names no libtorch / libc10 among its dynamic dependencies."""
    import shutil
    import subprocess

    from s6kit import _C

    readelf = shutil.which("readelf")
    assert readelf is not None, "readelf (binutils) is needed to read the module's dynamic section"
    out = subprocess.run([readelf, "-d", _C.__file__], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line]
    assert needed, "no NEEDED entries found: the dynamic section was not read"
    assert not [n for n in needed if "torch" in n or "c10" in n], needed
