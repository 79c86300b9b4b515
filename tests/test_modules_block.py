"""The Mamba block: values and gradients against the reference scan, decoding, the state-dict
layout of mamba_ssm, the paper's options (scalar A, io_spectrum, reordering) and causality."""
import copy

import pytest
import torch

from s6kit import InferenceParams, Mamba, set_scan_backend

D_MODEL, D_STATE = 16, 4


def _pair(dtype=torch.float32, seed=0, **kwargs):
    """A block on s6kit's kernels and an identical copy on the reference scan."""
    torch.manual_seed(seed)
    block = Mamba(D_MODEL, d_state=D_STATE, layer_idx=0, **kwargs).to(dtype)
    return block, set_scan_backend(copy.deepcopy(block), "reference")


def _check_same_values_and_grads(block, ref, x, rtol, atol):
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = block(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=rtol, atol=atol)
    grad_out = torch.randn_like(y1)
    (y1 * grad_out).sum().backward()
    (y2 * grad_out).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=rtol, atol=atol)
    params1, params2 = dict(block.named_parameters()), dict(ref.named_parameters())
    assert params1.keys() == params2.keys()
    for name, p in params1.items():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, params2[name].grad, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float32, 1e-4, 1e-5), (torch.float64, 1e-9, 1e-11)])
@pytest.mark.parametrize("options", [{}, {"scalar_A": True}], ids=["A_full", "A_scalar"])
def test_block_matches_reference_scan(dtype, rtol, atol, options):
    block, ref = _pair(dtype, **options)
    if options.get("scalar_A"):
        assert block.A_log.shape == (block.d_inner,)
    x = torch.randn(2, 23, D_MODEL, dtype=dtype)
    _check_same_values_and_grads(block, ref, x, rtol, atol)


@pytest.mark.parametrize("options", [
    {"io_spectrum": "mixed"},
    {"reorder": True},
    {"reorder": True, "reorder_hard": True},
], ids=["io_mixed", "reorder_soft", "reorder_hard"])
def test_block_options_match_reference_scan(options):
    block, ref = _pair(torch.float32, **options)
    x = torch.randn(2, 17, D_MODEL)
    _check_same_values_and_grads(block, ref, x, 1e-4, 1e-5)


def test_mamba_ssm_state_dict_layout_loads_strict_and_round_trips():
    d_model, d_state, d_conv, expand = 24, 8, 3, 2
    d_inner, dt_rank = expand * d_model, 2  # dt_rank "auto" = ceil(24 / 16)
    expected = {  # mamba_ssm's Mamba (mamba_simple.py), conv_bias=True, bias=False
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }
    block = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == expected
    incoming = {k: torch.randn(shape) for k, shape in expected.items()}
    block.load_state_dict(incoming, strict=True)
    for key, value in block.state_dict().items():
        assert torch.equal(value, incoming[key]), key
    with_bias = Mamba(d_model, bias=True, conv_bias=False)
    assert "in_proj.bias" in with_bias.state_dict() and "out_proj.bias" in with_bias.state_dict()
    assert "conv1d.bias" not in with_bias.state_dict()


def test_initialisation_follows_mamba():
    torch.manual_seed(0)
    block = Mamba(32, d_state=8, dt_min=0.01, dt_max=0.05)
    A = -torch.exp(block.A_log)
    torch.testing.assert_close(A[5], -torch.arange(1.0, 9.0))  # S4D-real
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)
    assert torch.equal(block.D, torch.ones(64))


def test_step_decoding_equals_full_forward():
    block, _ = _pair()
    x = torch.randn(3, 11, D_MODEL)
    full = block(x)
    conv_state, ssm_state = block.allocate_inference_cache(3, 11)
    outs = [block.step(x[:, t:t + 1], conv_state, ssm_state)[0] for t in range(11)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-5, atol=1e-6)


def test_inference_params_prefill_then_chunks_equal_full_forward():
    block, _ = _pair(scalar_A=True)
    x = torch.randn(2, 15, D_MODEL)
    full = block(x)
    params = InferenceParams(max_seqlen=15, max_batch_size=2)
    outs = []
    for start, stop in [(0, 6), (6, 7), (7, 12), (12, 15)]:
        outs.append(block(x[:, start:stop], inference_params=params))
        params.seqlen_offset = stop
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-5, atol=1e-6)
    # a new prefill (offset 0) ignores the stale states left in the cache
    params.seqlen_offset = 0
    torch.testing.assert_close(block(x[:, :4], inference_params=params), full[:, :4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["positive", "negative", "mixed"])
def test_io_spectrum_signs_at_init_and_after_training(kind):
    torch.manual_seed(0)
    d_state = 6
    block = Mamba(D_MODEL, d_state=d_state, io_spectrum=kind)
    want_pos = {"positive": d_state, "negative": 0, "mixed": d_state // 2}[kind]

    def counts():
        ev = block.io_eigenvalues()
        tol = 1e-9 * ev.abs().max()
        return int((ev > tol).sum()), int((ev < -tol).sum())

    assert counts() == (want_pos, d_state - want_pos)
    assert block.x_proj.weight.shape == (block.dt_rank + 2 * d_state, block.d_inner)
    optimizer = torch.optim.AdamW(block.parameters(), lr=5e-2)
    x = torch.randn(2, 12, D_MODEL)
    before = block.x_proj.weight.detach().clone()
    for _ in range(5):
        optimizer.zero_grad()
        block(x).pow(2).mean().backward()
        optimizer.step()
    assert not torch.allclose(block.x_proj.weight, before)  # it trained
    assert counts() == (want_pos, d_state - want_pos)


def test_unconstrained_spectrum_is_that_of_the_full_matrix():
    torch.manual_seed(0)
    block = Mamba(8, d_state=3)
    w = block.x_proj.weight.detach().double()
    s_b, s_c = w[block.dt_rank:block.dt_rank + 3], w[block.dt_rank + 3:]
    m = s_c.t() @ s_b
    full = torch.linalg.eigvalsh(0.5 * (m + m.t()))
    nonzero = full[full.abs() > 1e-12]
    got = block.io_eigenvalues()
    torch.testing.assert_close(got[got.abs() > 1e-12], nonzero)


def test_reorder_uses_the_paper_scores_and_trains_K():
    block, _ = _pair(reorder=True)
    x_proj_dt = block.x_proj.weight[:block.dt_rank]
    w = block.token_reorder.scoring_vector(x_proj_dt, block.dt_proj.weight)
    u = torch.randn(block.d_inner)
    s_delta_u = block.dt_proj.weight @ (x_proj_dt @ u)  # S_Delta u without the bias
    torch.testing.assert_close(w @ u, block.token_reorder.K @ s_delta_u)
    for hard in (False, True):
        block.token_reorder.hard = hard
        block.zero_grad()
        block(torch.randn(2, 9, D_MODEL)).sum().backward()
        assert block.token_reorder.K.grad.abs().sum() > 0


def test_reorder_hard_sorts_the_ssm_input_ascending():
    block, _ = _pair(reorder=True, reorder_hard=True)
    x = torch.randn(1, block.d_inner, 7)
    z = torch.randn(1, block.d_inner, 7)
    x_proj_dt = block.x_proj.weight[:block.dt_rank]
    xr, zr = block.token_reorder(x, z, x_proj_dt, block.dt_proj.weight)
    w = block.token_reorder.scoring_vector(x_proj_dt, block.dt_proj.weight)
    order = torch.argsort(torch.einsum("bdl,d->bl", x, w), dim=-1)[0]
    torch.testing.assert_close(xr[0], x[0][:, order])
    torch.testing.assert_close(zr[0], z[0][:, order])  # the gate follows its token


def _leak(block, x, position_changed):
    y = block(x)
    x2 = x.clone()
    x2[:, -1] = position_changed(x2[:, -1])
    return (block(x2)[:, :-1] - y[:, :-1]).abs().max().item()


def test_soft_reordering_leaks_future_tokens_and_plain_block_does_not():
    x = torch.randn(2, 10, D_MODEL)
    plain, _ = _pair()
    with torch.no_grad():
        assert _leak(plain, x, lambda t: t + 1.0) == 0.0
        soft, _ = _pair(reorder=True)
        assert _leak(soft, x, lambda t: t + 1.0) > 1e-4
        hard, _ = _pair(reorder=True, reorder_hard=True)
        # a large change of the last token moves its rank: earlier positions now hold other tokens
        torch.manual_seed(1)
        assert _leak(hard, x, lambda t: t + 5.0 * torch.randn_like(t)) > 1e-4


def test_reorder_refuses_cached_decoding():
    block, _ = _pair(reorder=True)
    conv_state, ssm_state = block.allocate_inference_cache(1, 4)
    with pytest.raises(ValueError, match="cannot decode"):
        block.step(torch.randn(1, 1, D_MODEL), conv_state, ssm_state)


def test_empty_sequence_gives_empty_output():
    block, _ = _pair()
    assert block(torch.randn(2, 0, D_MODEL)).shape == (2, 0, D_MODEL)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="d_model"):
        Mamba(0)
    with pytest.raises(ValueError, match="io_spectrum"):
        Mamba(8, io_spectrum="complex")
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(8, dt_init="normal")
    with pytest.raises(ValueError, match="scan_backend"):
        Mamba(8, scan_backend="cuda")
    with pytest.raises(ValueError, match="d_inner >= d_state"):
        Mamba(2, d_state=16, expand=1, io_spectrum="positive")
    block = Mamba(8)
    with pytest.raises(ValueError, match="hidden_states"):
        block(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="layer_idx"):
        block(torch.randn(1, 3, 8), inference_params=InferenceParams(3, 1))
    conv_state, ssm_state = block.allocate_inference_cache(1, 4)
    with pytest.raises(ValueError, match=r"\(batch, 1, d_model\)"):
        block.step(torch.randn(1, 2, 8), conv_state, ssm_state)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("options", [{}, {"scalar_A": True}, {"reorder": True, "io_spectrum": "positive"}],
                         ids=["plain", "scalar_A", "reorder_io"])
def test_block_on_cuda_matches_reference_scan(options):
    block, ref = _pair(**options)
    x = torch.randn(2, 300, D_MODEL, device="cuda")
    # the GPU sums the gradients of B, C, A over L in another order than the reference
    _check_same_values_and_grads(block.cuda(), ref.cuda(), x, 1e-3, 1e-4)


@pytest.mark.cuda
@cuda
def test_block_on_cuda_decoding_and_bf16_autocast():
    block, _ = _pair()
    block.cuda()
    x = torch.randn(2, 40, D_MODEL, device="cuda")
    full = block(x)
    conv_state, ssm_state = block.allocate_inference_cache(2, 40)
    steps = torch.cat([block.step(x[:, t:t + 1], conv_state, ssm_state)[0] for t in range(40)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = block(x.requires_grad_(True))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), full, rtol=5e-2, atol=5e-2 * full.abs().max().item())
    got.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())
