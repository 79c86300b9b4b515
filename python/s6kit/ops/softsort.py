"""SoftSort token reordering on s6kit's kernels, with autograd.

``soft_permute(x, scores)`` reorders tokens x (batch, dim, L) by the SoftSort relaxation of the
argsort of ``scores`` (batch, L): ``x'[:, :, i] = sum_j P[i, j] x[:, :, j]`` with
``P[i, j] = softmax_j(-|t_i - s_j|^p / tau)`` and t the sorted scores (paper eq. 14, Algorithm 1
of appendix D.2). The kernels never build P: for p = 1 two scans along the sorted order give the
result in O(L dim) (DESIGN.md, "Importance scoring and SoftSort"); for other p a banded sum skips
the pairs whose weight is exactly 0 (see ``s6kit/softsort_params.h``).

``score_and_permute(x, w)`` also computes the importance scores ``s_l = <w, x_l>`` (eq. 14 with
w = S_Delta^T K) and, in its backward, the gradients of x through both the scores and the
reordering and the gradient of w, in two passes over the tokens.

Sorting is stable (ties keep their order, NaN sorts above +inf, -0.0 equals +0.0), as
torch.sort(stable=True), and happens inside the core: a forward is one call into it, a backward
another. In eager mode the ops are autograd Functions; under torch.compile they are custom ops with
fake implementations, so ``torch.compile(fullgraph=True)`` traces through them.

Precision: 16- and 32-bit tokens are reordered in float32 arithmetic with float32 scores; float64
tokens (CPU only) in float64.

NaN policy: a batch element whose scores contain NaN or an infinity gets NaN in every output and
every gradient (of its tokens and scores; w's gradient sums over the batch and so becomes NaN too).
Other batch elements are unaffected. The kernels detect it without a host synchronisation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._core import _C, byte_allocator, desc, num_threads, stream_of

_OP = "soft_permute"
_SCORE_OP = "score_and_permute"

def _threads(x: Tensor) -> int:
    return 1 if x.is_cuda else num_threads()


def _acc_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _forward(x: Tensor, scores: Tensor | None, w: Tensor | None, tau: float, p: float,
             hard: bool, descending: bool, op: str) -> tuple[Tensor, Tensor, Tensor]:
    """(out, sorted scores, perm): one call into the core ranks (scores from w when given, the
    stable sort) and reorders."""
    batch, _, L = x.shape
    dev = x.device
    out = torch.empty(x.shape, dtype=x.dtype, device=dev)
    t = torch.empty((batch, L), dtype=_acc_dtype(x), device=dev)
    perm = torch.empty((batch, L), dtype=torch.int64, device=dev)
    keep: list = []
    _C.softsort_fwd(
        desc(x, op, "x"), desc(scores, op, "scores"), desc(w, op, "w"), desc(out, op, "out"),
        desc(t, op, "sorted_scores"), desc(perm, op, "perm"), tau, p, hard, descending,
        byte_allocator(dev, keep), stream_of(x), _threads(x),
    )
    return out, t, perm


def _backward(dout: Tensor, x: Tensor, t: Tensor, perm: Tensor, w: Tensor | None, tau: float,
              p: float, hard: bool, descending: bool, op: str) -> tuple[Tensor, Tensor]:
    """(dx, dscores) without w, (dx, dw) with w."""
    dev = x.device
    dx = torch.empty(x.shape, dtype=x.dtype, device=dev)
    dscores = torch.empty(t.shape, dtype=t.dtype, device=dev) if w is None else None
    dw = None if w is None else torch.empty(w.shape, dtype=w.dtype, device=dev)
    keep: list = []
    _C.softsort_bwd(
        desc(x, op, "x"), desc(t, op, "sorted_scores"), desc(perm, op, "perm"),
        desc(dout, op, "dout"), desc(dx, op, "dx"), desc(dscores, op, "dscores"),
        desc(w, op, "w"), desc(dw, op, "dw"), tau, p, hard, descending,
        byte_allocator(dev, keep), stream_of(x), _threads(x),
    )
    return dx, (dscores if w is None else dw)


def _fake_outputs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    batch, _, L = x.shape
    return (
        torch.empty_like(x, memory_format=torch.contiguous_format),
        x.new_empty((batch, L), dtype=_acc_dtype(x)),
        x.new_empty((batch, L), dtype=torch.int64),
    )


# ---- eager autograd --------------------------------------------------------------------------
# Outside torch.compile the ops run through these Functions: one call into the core per
# direction, without the dispatcher round trips of the custom ops below.

class _SoftSortFunction(torch.autograd.Function):
    """soft_permute (``other`` is the scores) and score_and_permute (``with_w``: ``other`` is w)."""

    @staticmethod
    def forward(ctx, x, other, with_w, tau, p, hard, descending):
        scores, w, op = (None, other, _SCORE_OP) if with_w else (other, None, _OP)
        out, t, perm = _forward(x, scores, w, tau, p, hard, descending, op)
        ctx.save_for_backward(x, t, perm, w)
        ctx.hyper = (tau, p, hard, descending, op)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, t, perm, w = ctx.saved_tensors
        dx, dother = _backward(dout, x, t, perm, w, *ctx.hyper)
        return dx, dother, None, None, None, None, None


# ---- custom ops (torch.compile traces through these) ------------------------------------------

@torch.library.custom_op("s6kit::soft_permute_fwd", mutates_args=())
def _soft_permute_fwd(x: Tensor, scores: Tensor, tau: float, p: float, hard: bool,
                      descending: bool) -> tuple[Tensor, Tensor, Tensor]:
    return _forward(x, scores, None, tau, p, hard, descending, _OP)


@_soft_permute_fwd.register_fake
def _soft_permute_fwd_fake(x, scores, tau, p, hard, descending):
    return _fake_outputs(x)


@torch.library.custom_op("s6kit::soft_permute_bwd", mutates_args=())
def _soft_permute_bwd(dout: Tensor, x: Tensor, t: Tensor, perm: Tensor, tau: float, p: float,
                      hard: bool, descending: bool) -> tuple[Tensor, Tensor]:
    return _backward(dout, x, t, perm, None, tau, p, hard, descending, _OP)


@_soft_permute_bwd.register_fake
def _soft_permute_bwd_fake(dout, x, t, perm, tau, p, hard, descending):
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(t)


@torch.library.custom_op("s6kit::score_and_permute_fwd", mutates_args=())
def _score_and_permute_fwd(x: Tensor, w: Tensor, tau: float, p: float, hard: bool,
                           descending: bool) -> tuple[Tensor, Tensor, Tensor]:
    return _forward(x, None, w, tau, p, hard, descending, _SCORE_OP)


@_score_and_permute_fwd.register_fake
def _score_and_permute_fwd_fake(x, w, tau, p, hard, descending):
    return _fake_outputs(x)


@torch.library.custom_op("s6kit::score_and_permute_bwd", mutates_args=())
def _score_and_permute_bwd(dout: Tensor, x: Tensor, w: Tensor, t: Tensor, perm: Tensor,
                           tau: float, p: float, hard: bool,
                           descending: bool) -> tuple[Tensor, Tensor]:
    return _backward(dout, x, t, perm, w, tau, p, hard, descending, _SCORE_OP)


@_score_and_permute_bwd.register_fake
def _score_and_permute_bwd_fake(dout, x, w, t, perm, tau, p, hard, descending):
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(w)


def _register_autograd(fwd_op, bwd_op, with_w: bool) -> None:
    """Gradients of a forward custom op from ``bwd_op`` (its arguments: dout, x, then w when
    ``with_w``, then t, perm and the hyperparameters)."""

    def setup(ctx, inputs, output):
        x, other, tau, p, hard, descending = inputs
        _, t, perm = output
        ctx.save_for_backward(x, t, perm, other if with_w else None)
        ctx.hyper = (tau, p, hard, descending)

    def backward(ctx, dout, _dt, _dperm):
        x, t, perm, w = ctx.saved_tensors
        dx, dother = bwd_op(dout, x, *((w,) if with_w else ()), t, perm, *ctx.hyper)
        return dx, dother, None, None, None, None

    fwd_op.register_autograd(backward, setup_context=setup)


_register_autograd(_soft_permute_fwd, _soft_permute_bwd, with_w=False)
_register_autograd(_score_and_permute_fwd, _score_and_permute_bwd, with_w=True)


# ---- public functions --------------------------------------------------------------------------

def _check_tokens(x, op: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{op}: argument 'x' must be a tensor of shape (batch, dim, L), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{op}: argument 'x' must be a floating-point tensor, got {x.dtype}")
    if x.device.type == "cuda" and x.dtype == torch.float64:
        raise ValueError(f"{op}: argument 'x' is float64 on a CUDA device: float64 runs on the CPU only")
    return x.contiguous() if x.shape[-1] > 1 and x.stride(-1) != 1 else x


def _check_hyper(tau, p, op: str) -> tuple[float, float]:
    for name, v in (("tau", tau), ("p", p)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{op}: argument '{name}' must be a number, got {type(v).__name__}")
        if not (v > 0) or not math.isfinite(v):
            raise ValueError(f"{op}: argument '{name}' must be a finite number > 0, got {v}")
    return float(tau), float(p)


def _check_companion(t, name: str, x: Tensor, shape: tuple, names: str, op: str) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{op}: argument '{name}' must have shape {names} = {shape}, "
                         f"got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{op}: argument '{name}' must be a floating-point tensor, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{op}: argument '{name}' must be on the device of 'x' ({x.device}), "
                         f"got {t.device}")


def soft_permute(
    x: Tensor,
    scores: Tensor,
    tau: float = 1.0,
    p: float = 1.0,
    hard: bool = False,
    descending: bool = True,
) -> Tensor:
    """Reorder tokens x (batch, dim, L) by the SoftSort of ``scores`` (batch, L).

    Same result as :func:`s6kit.soft_permute_ref` (``P = soft_sort_matrix(scores)``,
    ``x'[b, :, i] = sum_j P[b, i, j] x[b, :, j]``) without building P: O(L dim) time and memory
    for p = 1. ``hard=True`` returns the exact permutation (a gather by the stable argsort); in
    the backward the scores get the soft matrix's gradient (straight-through) and x the adjoint
    of the permutation, as the reference's ``(P_hard - P).detach() + P`` gives. Gradients flow to ``x`` and ``scores``; exact
    ties in the scores contribute nothing to the scores' gradient (sign(0) = 0, as torch's abs).

    x: float32, float16, bfloat16 (float64 on the CPU); scores: any floating dtype, used in
    float32 (float64 with float64 tokens). Returns a contiguous tensor of x's shape and dtype.
    Scores with NaN or infinities give NaN for their batch element (see the module docstring).
    """
    x = _check_tokens(x, _OP)
    _check_companion(scores, "scores", x, (x.shape[0], x.shape[2]), "(batch, L)", _OP)
    tau, p = _check_hyper(tau, p, _OP)
    scores = scores.to(_acc_dtype(x)).contiguous()
    hard, descending = bool(hard), bool(descending)
    if torch.compiler.is_compiling():
        return _soft_permute_fwd(x, scores, tau, p, hard, descending)[0]
    return _SoftSortFunction.apply(x, scores, False, tau, p, hard, descending)


def score_and_permute(
    x: Tensor,
    w: Tensor,
    tau: float = 1.0,
    p: float = 1.0,
    hard: bool = False,
    descending: bool = False,
) -> Tensor:
    """Importance scores ``s_l = <w, x_l>`` (paper eq. 14 with w = S_Delta^T K) and the SoftSort
    reordering of x (batch, dim, L) by them, ascending by default as the paper does.

    Same result as :func:`s6kit.score_and_permute_ref`, with scores accumulated in float32
    (float64 for float64 tokens). Gradients flow to x (through the scores and the reordering) and
    to w (dim,).
    """
    x = _check_tokens(x, _SCORE_OP)
    _check_companion(w, "w", x, (x.shape[1],), "(dim,)", _SCORE_OP)
    tau, p = _check_hyper(tau, p, _SCORE_OP)
    w = w.to(_acc_dtype(x)).contiguous()
    hard, descending = bool(hard), bool(descending)
    if torch.compiler.is_compiling():
        return _score_and_permute_fwd(x, w, tau, p, hard, descending)[0]
    return _SoftSortFunction.apply(x, w, True, tau, p, hard, descending)
