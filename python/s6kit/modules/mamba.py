"""The Mamba (v1) block on s6kit's selective scan, with the paper's three options.

Constructor arguments, parameter names, shapes and initialisation follow mamba_ssm's ``Mamba``
(modules/mamba_simple.py), so a mamba_ssm state_dict loads unchanged:

    in_proj   Linear(d_model, 2 * d_inner, bias=bias)        x and the gate z
    conv1d    Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)  causal
    x_proj    Linear(d_inner, dt_rank + 2 * d_state)          rows [W_x,dt; S_B; S_C]
    dt_proj   Linear(dt_rank, d_inner)                        S_Delta = W_dt W_x,dt, bias = delta_bias
    A_log     (d_inner, d_state), A = -exp(A_log)             S4D-real init: A_log = log(1..N)
    D         (d_inner,)                                      skip connection, init 1
    out_proj  Linear(d_inner, d_model, bias=bias)

Forward, (batch, L, d_model) -> (batch, L, d_model):

    x, z = in_proj(h);  x = silu(causal_conv(x));  dt, B, C = x_proj(x);  delta = W_dt dt
    y = selective_scan(x, delta, A, B, C, D, z, delta_bias=dt_proj.bias, delta_softplus=True)
    out = out_proj(y)

The paper's options (all off by default, giving mamba_ssm's block exactly):

* ``reorder=True``: tokens are scored ``s_l = <K, S_Delta x_l>`` (eq. 14) and sorted softly in
  ascending order before x_proj, as in Algorithm 1. The gate z is reordered with the same
  permutation and the output stays in importance order (see modules/reorder.py for why). This
  makes the block non-causal: every output depends on every token, so it cannot decode token by
  token (``step`` and ``inference_params`` refuse it).
* ``io_spectrum="positive" | "negative" | "mixed"``: S_C = L^T, S_B = D L^T (appendix C.1), so
  sym(S_C^T S_B) has N non-zero eigenvalues of the promised signs (modules/io_spectrum.py);
  ``io_eigenvalues()`` returns them.
* ``scalar_A=True``: A_d = -a_d I (the paper's form): A_log has shape (d_inner,) and the scan takes
  its scalar fast path.

``scan_backend="reference"`` runs the plain-PyTorch scan instead of s6kit's kernels (tests and the
training benchmark compare the two). ``use_fast_path`` is accepted for compatibility and has no
effect: there is one path, and it is fast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .io_spectrum import IO_SPECTRA, constrain_x_proj, sym_spectrum
from .reorder import TokenReorder
from .scan_backend import scan_function


@dataclass
class InferenceParams:
    """Decoding state shared by the blocks of a model, as mamba_ssm's ``InferenceParams``.

    ``key_value_memory_dict[layer_idx]`` holds each block's ``(conv_state, ssm_state)``;
    ``seqlen_offset`` is the number of tokens already consumed (0 means the next forward is a
    prefill and starts from empty states).
    """

    max_seqlen: int
    max_batch_size: int
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = field(default_factory=dict)
    lengths_per_sample: Optional[Tensor] = None

    def reset(self, max_seqlen: int, max_batch_size: int) -> None:
        self.max_seqlen = max_seqlen
        self.max_batch_size = max_batch_size
        self.seqlen_offset = 0
        if self.lengths_per_sample is not None:
            self.lengths_per_sample.zero_()


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Mamba: argument '{name}' must be a positive int, got {value!r}")
    return value


def channels_first_linear(h: Tensor, linear: nn.Linear) -> Tensor:
    """linear(h) for h (batch, L, features), laid out (batch, out_features, L) with unit stride along
    L, the layout the scan reads (``linear(h).transpose(1, 2)`` would make it copy its inputs)."""
    out = linear.weight @ h.transpose(1, 2)
    return out if linear.bias is None else out + linear.bias.to(out.dtype)[:, None]


def ssm_inputs(x: Tensor, x_proj_weight: Tensor, dt_proj_weight: Tensor, d_state: int):
    """delta (batch, d_inner, L) before its bias, B and C (batch, d_state, L), all in x's dtype,
    from the SSM input x (batch, d_inner, L): ``dt, B, C = x_proj(x)``, ``delta = W_dt dt``."""
    dt_rank = dt_proj_weight.shape[1]
    x_dbl = F.linear(x.transpose(1, 2), x_proj_weight)  # (batch, L, dt_rank + 2N)
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    delta = dt_proj_weight @ dt.transpose(1, 2)  # unit stride along L; the bias is delta_bias
    dtype = x.dtype
    return delta.to(dtype), B.transpose(1, 2).to(dtype), C.transpose(1, 2).to(dtype)


@torch.no_grad()
def init_dt_proj(dt_proj: nn.Linear, dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4) -> None:
    """Mamba's dt_proj initialisation: weight constant or uniform with std dt_rank^-0.5 * dt_scale;
    bias the inverse softplus of dt log-uniform in [dt_min, dt_max], so softplus(bias) = dt."""
    if dt_init not in ("constant", "random"):
        raise ValueError(f"Mamba: argument 'dt_init' must be 'constant' or 'random', got {dt_init!r}")
    dt_rank, d_inner = dt_proj.in_features, dt_proj.out_features
    std = dt_rank ** -0.5 * dt_scale
    if dt_init == "constant":
        nn.init.constant_(dt_proj.weight, std)
    else:
        nn.init.uniform_(dt_proj.weight, -std, std)
    dt = torch.exp(
        torch.rand(d_inner, device=dt_proj.bias.device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    ).clamp(min=dt_init_floor)
    dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    dt_proj.bias._no_reinit = True


class Mamba(nn.Module):
    """The Mamba (v1) block (see the module docstring). The positional arguments are mamba_ssm's;
    the keyword-only ones after ``dtype`` are s6kit's: the paper's options and the scan backend."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank="auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: Optional[int] = None,
        device=None,
        dtype=None,
        *,
        reorder: bool = False,
        reorder_tau: float = 1.0,
        reorder_p: float = 1.0,
        reorder_hard: bool = False,
        io_spectrum: Optional[str] = None,
        scalar_A: bool = False,
        scan_backend: str = "s6kit",
    ):
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.d_state = _positive_int("d_state", d_state)
        self.d_conv = _positive_int("d_conv", d_conv)
        self.expand = _positive_int("expand", expand)
        self.d_inner = self.expand * self.d_model
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else _positive_int("dt_rank", dt_rank)
        if io_spectrum is not None and io_spectrum not in IO_SPECTRA:
            raise ValueError(f"Mamba: argument 'io_spectrum' must be one of {IO_SPECTRA} or None, got {io_spectrum!r}")
        scan_function(scan_backend)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        self.reorder = bool(reorder)
        self.io_spectrum = io_spectrum
        self.scalar_A = bool(scalar_A)
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(self.d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + self.d_state * 2, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        init_dt_proj(self.dt_proj, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

        if self.scalar_A:
            # A_d = -a_d I with a_d uniform in [1, 16] (the range Mamba-2 uses)
            a = torch.empty(self.d_inner, dtype=torch.float32, device=device).uniform_(1, 16)
        else:
            # S4D-real: A[d, n] = -(n + 1)
            a = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=bias, **factory)

        if io_spectrum is not None:
            constrain_x_proj(self.x_proj, io_spectrum, self.dt_rank, self.d_state)
        self.token_reorder = (
            TokenReorder(self.d_inner, reorder_tau, reorder_p, reorder_hard, **factory) if reorder else None
        )

    # ---- the full-sequence forward ----------------------------------------------------------

    def forward(self, hidden_states: Tensor, inference_params: Optional[InferenceParams] = None) -> Tensor:
        """hidden_states (batch, L, d_model) -> (batch, L, d_model).

        With ``inference_params`` the block reads and updates its cached states: a prefill when
        ``inference_params.seqlen_offset == 0``, else a continuation of any length (one token is
        the usual decoding step).
        """
        self._check_input(hidden_states)
        if hidden_states.shape[1] == 0:  # an empty sequence (conv1d rejects length 0)
            return hidden_states.new_zeros(hidden_states.shape)
        if inference_params is not None:
            conv_state, ssm_state = self._get_states_from_cache(inference_params, hidden_states.shape[0])
            return self._forward_cached(hidden_states, conv_state, ssm_state,
                                        fresh=inference_params.seqlen_offset == 0)
        seqlen = hidden_states.shape[1]
        x, z = channels_first_linear(hidden_states, self.in_proj).chunk(2, dim=1)  # (batch, d_inner, L)
        x = self.act(self.conv1d(x)[..., :seqlen])
        y = self._ssm(x, z)
        return self.out_proj(y.transpose(1, 2))

    def _ssm(self, x: Tensor, z: Tensor, initial_state: Optional[Tensor] = None,
             return_last_state: bool = False):
        """The selective scan on the SSM input x (batch, d_inner, L), gated by z."""
        x_proj_weight = self.x_proj.weight  # built once per call when io_spectrum parametrises it
        if self.token_reorder is not None:
            x, z = self.token_reorder(x, z, x_proj_weight[: self.dt_rank], self.dt_proj.weight)
        delta, B, C = ssm_inputs(x, x_proj_weight, self.dt_proj.weight, self.d_state)
        A = -torch.exp(self.A_log.float())
        return scan_function(self.scan_backend)(
            x, delta, A, B, C, self.D.float(), z=z.to(x.dtype), delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=return_last_state, initial_state=initial_state,
        )

    # ---- decoding with cached states ----------------------------------------------------------

    def _forward_cached(self, hidden_states: Tensor, conv_state: Tensor, ssm_state: Tensor,
                        fresh: bool) -> Tensor:
        """Forward that starts from (conv_state, ssm_state) and leaves the states after the input.

        conv_state (batch, d_inner, d_conv) holds the last d_conv conv inputs; ssm_state
        (batch, d_inner, d_state) the scan's state. ``fresh`` ignores their contents (a prefill).
        """
        if self.reorder:
            raise ValueError(
                "Mamba: a block with reorder=True cannot decode with cached states: the soft "
                "reordering mixes every token of the sequence into every position, so the output "
                "at a position depends on tokens after it; run the full sequence instead"
            )
        x, z = channels_first_linear(hidden_states, self.in_proj).chunk(2, dim=1)
        past = torch.zeros_like(conv_state) if fresh else conv_state
        window = torch.cat([past.to(x.dtype), x], dim=-1)  # (batch, d_inner, d_conv + L)
        conv_state.copy_(window[..., -self.d_conv:])
        # each output sees the d_conv - 1 inputs before it: the cached ones, then the new ones
        x = self.act(F.conv1d(window[..., 1:], self.conv1d.weight, self.conv1d.bias, groups=self.d_inner))
        y, last_state = self._ssm(x, z, initial_state=None if fresh else ssm_state, return_last_state=True)
        ssm_state.copy_(last_state)
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden_states: Tensor, conv_state: Tensor, ssm_state: Tensor):
        """Decode one token: hidden_states (batch, 1, d_model) -> (out, conv_state, ssm_state).

        The states (from ``allocate_inference_cache``) are updated in place, as in mamba_ssm.
        """
        self._check_input(hidden_states)
        if hidden_states.shape[1] != 1:
            raise ValueError(
                f"Mamba.step: argument 'hidden_states' must be (batch, 1, d_model), got {tuple(hidden_states.shape)}"
            )
        out = self._forward_cached(hidden_states, conv_state, ssm_state, fresh=False)
        return out, conv_state, ssm_state

    def allocate_inference_cache(self, batch_size: int, max_seqlen: int, dtype=None, **kwargs):
        """Zeroed (conv_state (batch, d_inner, d_conv), ssm_state (batch, d_inner, d_state))."""
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.dt_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=ssm_dtype)
        return conv_state, ssm_state

    def _get_states_from_cache(self, inference_params: InferenceParams, batch_size: int,
                               initialize_states: bool = False):
        if self.layer_idx is None:
            raise ValueError("Mamba: decoding with inference_params needs the block's layer_idx to be set")
        cache = inference_params.key_value_memory_dict
        if self.layer_idx not in cache:
            cache[self.layer_idx] = self.allocate_inference_cache(batch_size, inference_params.max_seqlen)
        conv_state, ssm_state = cache[self.layer_idx]
        if initialize_states:
            conv_state.zero_()
            ssm_state.zero_()
        return conv_state, ssm_state

    # ---- inspection ---------------------------------------------------------------------------

    def io_eigenvalues(self) -> Tensor:
        """Eigenvalues of mu = sym(S_C^T S_B) on its range (float64, ascending; 2 * d_state values,
        the other d_inner - 2 * d_state eigenvalues are zero). Remark 3 of the paper."""
        w = self.x_proj.weight
        s_b = w[self.dt_rank: self.dt_rank + self.d_state]
        s_c = w[self.dt_rank + self.d_state:]
        return sym_spectrum(s_b, s_c)

    def _check_input(self, hidden_states: Tensor) -> None:
        if not isinstance(hidden_states, Tensor) or hidden_states.dim() != 3 \
                or hidden_states.shape[-1] != self.d_model:
            shape = tuple(hidden_states.shape) if isinstance(hidden_states, Tensor) else type(hidden_states).__name__
            raise ValueError(
                f"Mamba: argument 'hidden_states' must be (batch, L, d_model={self.d_model}), got {shape}"
            )

    def extra_repr(self) -> str:
        options = [f"d_model={self.d_model}", f"d_state={self.d_state}", f"d_inner={self.d_inner}"]
        if self.reorder:
            options.append("reorder=True")
        if self.io_spectrum is not None:
            options.append(f"io_spectrum={self.io_spectrum!r}")
        if self.scalar_A:
            options.append("scalar_A=True")
        if self.scan_backend != "s6kit":
            options.append(f"scan_backend={self.scan_backend!r}")
        return ", ".join(options)
