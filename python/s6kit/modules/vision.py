"""A small image classifier with the MambaVision mixer, reordering tokens as the paper's vision
experiments do (section 5.2: MambaVision with token reordering).

    image -> patch embedding (two stride-2 convs) -> stages of [norm -> mixer, norm -> MLP] blocks,
    a stride-2 conv between stages -> mean over tokens -> norm -> linear head

The MambaVision mixer splits in_proj's output into an x branch (non-causal depthwise conv, SiLU,
selective scan) and a z branch (depthwise conv, SiLU), concatenates both and projects back. Image
patches have no natural order, so the first mixer of every stage reorders its tokens by importance
(modules/reorder.py; z is reordered with x, the output stays in importance order, which a global
pooling head does not see).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mamba import channels_first_linear, init_dt_proj, ssm_inputs
from .reorder import TokenReorder
from .scan_backend import scan_function


class MambaVisionMixer(nn.Module):
    """MambaVision's token mixer: out_proj([scan(silu(conv(x))); silu(conv(z))]), (batch, L, d_model)."""

    def __init__(self, d_model: int, d_state: int = 8, d_conv: int = 3, expand: int = 1,
                 dt_rank="auto", reorder: bool = False, reorder_tau: float = 1.0,
                 reorder_p: float = 1.0, reorder_hard: bool = False, scan_backend: str = "s6kit"):
        super().__init__()
        if d_conv % 2 != 1:
            raise ValueError(f"MambaVisionMixer: argument 'd_conv' must be odd (a centred conv), got {d_conv}")
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        half = expand * d_model // 2  # each branch gets half of in_proj's output
        self.reorder = reorder
        self.scan_backend = scan_backend
        scan_function(scan_backend)
        self.in_proj = nn.Linear(d_model, 2 * half, bias=False)
        self.conv1d_x = nn.Conv1d(half, half, d_conv, groups=half, padding=d_conv // 2)
        self.conv1d_z = nn.Conv1d(half, half, d_conv, groups=half, padding=d_conv // 2)
        self.x_proj = nn.Linear(half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half, bias=True)
        init_dt_proj(self.dt_proj)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(half, 1)))
        self.D = nn.Parameter(torch.ones(half))
        self.out_proj = nn.Linear(2 * half, d_model, bias=False)
        self.token_reorder = TokenReorder(half, reorder_tau, reorder_p, reorder_hard) if reorder else None

    def forward(self, hidden_states: Tensor) -> Tensor:
        x, z = channels_first_linear(hidden_states, self.in_proj).chunk(2, dim=1)  # (batch, half, L)
        x = F.silu(self.conv1d_x(x))
        z = F.silu(self.conv1d_z(z))
        if self.token_reorder is not None:
            x, z = self.token_reorder(x, z, self.x_proj.weight[: self.dt_rank], self.dt_proj.weight)
        delta, B, C = ssm_inputs(x, self.x_proj.weight, self.dt_proj.weight, self.d_state)
        y = scan_function(self.scan_backend)(
            x, delta, -torch.exp(self.A_log.float()), B, C, self.D.float(),
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(torch.cat([y, z.to(y.dtype)], dim=1).transpose(1, 2))


class MixerBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, **mixer_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = MambaVisionMixer(dim, **mixer_kwargs)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens + self.mixer(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


class MambaVisionClassifier(nn.Module):
    """Images (batch, in_chans, H, W) -> class logits; H and W divisible by 2^(1 + len(dims))."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, dims: Sequence[int] = (32, 64, 128),
                 depths: Sequence[int] = (1, 2, 2), d_state: int = 8, mlp_ratio: float = 2.0,
                 reorder: bool = True, reorder_tau: float = 1.0, reorder_p: float = 1.0,
                 reorder_hard: bool = False, scan_backend: str = "s6kit"):
        super().__init__()
        if len(dims) != len(depths) or not dims:
            raise ValueError(f"MambaVisionClassifier: 'dims' and 'depths' must have the same non-zero length, got {dims}, {depths}")
        self.patch_embed = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(dims[0], dims[0], 3, stride=2, padding=1),
        )
        reorder_kwargs = dict(reorder_tau=reorder_tau, reorder_p=reorder_p, reorder_hard=reorder_hard)
        self.stages = nn.ModuleList(
            nn.Sequential(*(
                MixerBlock(dim, mlp_ratio, d_state=d_state, reorder=reorder and i == 0,
                           scan_backend=scan_backend, **reorder_kwargs)
                for i in range(depth)
            ))
            for dim, depth in zip(dims, depths)
        )
        self.downsample = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False) for a, b in zip(dims[:-1], dims[1:])
        )
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"MambaVisionClassifier: argument 'images' must be (batch, channels, H, W), got {shape}")
        x = self.patch_embed(images)
        for i, stage in enumerate(self.stages):
            batch, channels, height, width = x.shape
            tokens = stage(x.flatten(2).transpose(1, 2))  # (batch, H*W, channels), row-major patches
            x = tokens.transpose(1, 2).reshape(batch, channels, height, width)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        return self.head(self.norm(x.mean(dim=(2, 3))))
