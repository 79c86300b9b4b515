"""The selective scan on s6kit's kernels, with autograd.

``selective_scan_fn`` has mamba_ssm's signature and semantics, plus ``initial_state``;
gradients flow to every tensor input, ``initial_state`` included, and back from the last state
when it is returned and used. In eager mode it is an autograd Function (one call into the core
per direction); under torch.compile a torch.library custom op with a fake implementation, so
``torch.compile(fullgraph=True)`` traces through it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._core import _C, byte_allocator, desc, num_threads, stream_of

_OP = "selective_scan"


def _weight_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _state_size(A: Tensor, B: Tensor) -> int:
    if B.dim() == 2:
        return B.shape[1]
    return B.shape[-2]


def _checkpoint_shape(u: Tensor, A: Tensor, B: Tensor, save: bool) -> tuple[int, ...]:
    """States the forward keeps for its backward: h every SCAN_CHECKPOINT_INTERVAL steps."""
    if not save:
        return (0,)
    batch, dim, L = u.shape
    interval = _C.SCAN_CHECKPOINT_INTERVAL
    return (batch, dim, (L + interval - 1) // interval, _state_size(A, B))


def _forward(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus: bool,
             save_checkpoints: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(out, last_state, checkpoints): one call into the core."""
    batch, dim, _ = u.shape
    w = _weight_dtype(u)
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    last = torch.empty(batch, dim, _state_size(A, B), dtype=w, device=u.device)
    ckpt = torch.empty(_checkpoint_shape(u, A, B, save_checkpoints), dtype=w, device=u.device)
    keep: list = []
    _C.scan_fwd(
        desc(u, _OP, "u"), desc(delta, _OP, "delta"), desc(A, _OP, "A"), desc(B, _OP, "B"),
        desc(C, _OP, "C"), desc(D, _OP, "D"), desc(z, _OP, "z"),
        desc(delta_bias, _OP, "delta_bias"), desc(initial_state, _OP, "initial_state"),
        desc(out, _OP, "out"), desc(last, _OP, "last_state"),
        desc(ckpt, _OP, "checkpoints") if ckpt.dim() == 4 else None, delta_softplus,
        byte_allocator(u.device, keep), stream_of(u), num_threads(),
    )
    return out, last, ckpt


def _backward(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state, checkpoints,
              delta_softplus: bool) -> tuple[Optional[Tensor], ...]:
    """Gradients of u, delta, A, B, C, D, z, delta_bias, initial_state (None where absent): one
    call into the core."""
    def like(t):
        return None if t is None else torch.empty(t.shape, dtype=t.dtype, device=t.device)

    du, ddelta, dA, dB, dC = like(u), like(delta), like(A), like(B), like(C)
    dD, dz, ddb, dh0 = like(D), like(z), like(delta_bias), like(initial_state)
    keep: list = []
    _C.scan_bwd(
        desc(u, _OP, "u"), desc(delta, _OP, "delta"), desc(A, _OP, "A"), desc(B, _OP, "B"),
        desc(C, _OP, "C"), desc(D, _OP, "D"), desc(z, _OP, "z"),
        desc(delta_bias, _OP, "delta_bias"), desc(initial_state, _OP, "initial_state"),
        desc(checkpoints, _OP, "checkpoints"), desc(dout, _OP, "dout"), desc(dlast_state, _OP, "dlast_state"),
        desc(du, _OP, "du"), desc(ddelta, _OP, "ddelta"), desc(dA, _OP, "dA"),
        desc(dB, _OP, "dB"), desc(dC, _OP, "dC"), desc(dD, _OP, "dD"), desc(dz, _OP, "dz"),
        desc(ddb, _OP, "ddelta_bias"), desc(dh0, _OP, "dinitial_state"), delta_softplus,
        byte_allocator(u.device, keep), stream_of(u), num_threads(),
    )
    return du, ddelta, dA, dB, dC, dD, dz, ddb, dh0


def _gradients(bwd, dout, dlast, saved, delta_softplus: bool) -> tuple[Optional[Tensor], ...]:
    """The inputs' gradients from the outputs' (either may be None: unused) through ``bwd``."""
    u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt = saved
    if dout is None:
        dout = torch.zeros(u.shape, dtype=u.dtype, device=u.device)
    elif dout.stride(-1) != 1:
        dout = dout.contiguous()
    if dlast is not None:
        dlast = dlast.contiguous()
    grads = bwd(dout, dlast, u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt,
                delta_softplus)
    present = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    return tuple(g if t is not None else None for g, t in zip(grads, present))


def _saved(u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt) -> tuple:
    return (u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt if ckpt.dim() == 4 else None)


# ---- eager autograd --------------------------------------------------------------------------
# Outside torch.compile the scan runs through this Function: one call into the core per
# direction, without the dispatcher round trips of the custom ops below (tens of microseconds
# per call, which small shapes feel).

class _SelectiveScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        out, last, ckpt = _forward(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                   delta_softplus, True)
        ctx.save_for_backward(*_saved(u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt))
        ctx.delta_softplus = delta_softplus
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlast):
        grads = _gradients(_backward, dout, dlast, ctx.saved_tensors, ctx.delta_softplus)
        return grads + (None,)


# ---- custom ops (torch.compile traces through these) ------------------------------------------

@torch.library.custom_op("s6kit::selective_scan_fwd", mutates_args=())
def _scan_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
    z: Optional[Tensor], delta_bias: Optional[Tensor], initial_state: Optional[Tensor],
    delta_softplus: bool, save_checkpoints: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    return _forward(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                    save_checkpoints)


@_scan_fwd.register_fake
def _scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                   save_checkpoints):
    batch, dim, _ = u.shape
    w = _weight_dtype(u)
    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        u.new_empty((batch, dim, _state_size(A, B)), dtype=w),
        u.new_empty(_checkpoint_shape(u, A, B, save_checkpoints), dtype=w),
    )


@torch.library.custom_op("s6kit::selective_scan_bwd", mutates_args=())
def _scan_bwd(
    dout: Tensor, dlast_state: Optional[Tensor], u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
    C: Tensor, D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
    initial_state: Optional[Tensor], checkpoints: Optional[Tensor], delta_softplus: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = _backward(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state,
                      checkpoints, delta_softplus)
    # Absent inputs get distinct empty tensors (outputs of a custom op may not alias).
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@_scan_bwd.register_fake
def _scan_bwd_fake(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, initial_state,
                   checkpoints, delta_softplus):
    def like(t):
        return u.new_empty(0) if t is None else torch.empty_like(t, memory_format=torch.contiguous_format)

    return tuple(like(t) for t in (u, delta, A, B, C, D, z, delta_bias, initial_state))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, _ = inputs
    ctx.save_for_backward(*_saved(u, delta, A, B, C, D, z, delta_bias, initial_state, output[2]))
    ctx.delta_softplus = delta_softplus


def _op_backward(ctx, dout, dlast, _dckpt):
    return _gradients(_scan_bwd, dout, dlast, ctx.saved_tensors, ctx.delta_softplus) + (None, None)


_scan_fwd.register_autograd(_op_backward, setup_context=_setup_context)


def _unit_last_stride(t: Optional[Tensor]) -> Optional[Tensor]:
    if t is not None and t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        return t.contiguous()
    return t


def _check_same_dtype(t: Optional[Tensor], name: str, u: Tensor) -> None:
    if t is not None and isinstance(t, Tensor) and t.dtype != u.dtype:
        raise ValueError(
            f"{_OP}: argument '{name}' must have the dtype of 'u' ({u.dtype}), got {t.dtype}"
        )


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Optional[Tensor] = None,
):
    """Selective scan (S6): ``h_l = exp(dt_l A) h_{l-1} + dt_l B_l u_l``, ``y_l = C_l . h_l + D u_l``,
    ``out = y * silu(z)``, with ``dt = softplus(delta + delta_bias)`` when ``delta_softplus``.

    Shapes: u, delta, z (batch, dim, L); A (dim, N), or (dim,) for the scalar form A_d = A[d] I;
    B, C (batch, N, L), grouped (batch, G, N, L) with dim % G == 0, or time-invariant (dim, N);
    D, delta_bias (dim,); initial_state (batch, dim, N).

    dtypes: u, delta, z and variable B/C share one storage dtype (float32, float16, bfloat16,
    or float64 on the CPU); arithmetic is float32 (float64 for float64). A, D, delta_bias,
    time-invariant B/C and initial_state are used in float32 (float64 with float64 inputs).

    L = 0 is allowed: out is empty and the last state equals the initial state (zeros without).

    Returns out (dtype of u), or (out, last_state) with ``return_last_state``.
    """
    if not isinstance(u, Tensor) or u.dim() != 3:
        shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise ValueError(f"{_OP}: argument 'u' must be a tensor of shape (batch, dim, L), got {shape}")
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias), ("initial_state", initial_state)):
        if isinstance(t, Tensor) and t.device != u.device:
            raise ValueError(
                f"{_OP}: argument '{name}' must be on the device of 'u' ({u.device}), got {t.device}"
            )
    _check_same_dtype(delta, "delta", u)
    _check_same_dtype(z, "z", u)
    for name, t in (("B", B), ("C", C)):
        if isinstance(t, Tensor) and t.dim() >= 3:
            _check_same_dtype(t, name, u)
    w = _weight_dtype(u)

    def weight(t: Optional[Tensor]) -> Optional[Tensor]:
        return t.to(w) if isinstance(t, Tensor) and t.dtype != w else t

    A = weight(A)
    D = weight(D)
    delta_bias = weight(delta_bias)
    initial_state = weight(initial_state)
    if isinstance(initial_state, Tensor) and not initial_state.is_contiguous():
        initial_state = initial_state.contiguous()
    if isinstance(B, Tensor) and B.dim() == 2:
        B = weight(B)
    if isinstance(C, Tensor) and C.dim() == 2:
        C = weight(C)
    u, delta, z = _unit_last_stride(u), _unit_last_stride(delta), _unit_last_stride(z)
    if isinstance(B, Tensor) and B.dim() >= 3:
        B = _unit_last_stride(B)
    if isinstance(C, Tensor) and C.dim() >= 3:
        C = _unit_last_stride(C)

    save = torch.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad
        for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    args = (u, delta, A, B, C, D, z, delta_bias, initial_state, bool(delta_softplus))
    if torch.compiler.is_compiling():
        out, last_state, _ = _scan_fwd(*args, save)
    elif save:
        out, last_state = _SelectiveScanFunction.apply(*args)
    else:
        out, last_state, _ = _forward(*args, False)
    return (out, last_state) if return_last_state else out
