"""Let code written for mamba_ssm run on s6kit where mamba_ssm is not installed.

    import s6kit.integrations.mamba_ssm_shim as shim
    shim.install()
    from mamba_ssm import Mamba                                            # s6kit.Mamba
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn   # s6kit.selective_scan_fn
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    from mamba_ssm.models.config_mamba import MambaConfig

``install()`` registers modules named like mamba_ssm's in ``sys.modules``. It is opt-in and refuses
to shadow a real mamba_ssm that is importable, unless ``force=True``. ``uninstall()`` removes
them again. Only the Mamba (v1) names whose signatures s6kit shares are provided (the four above,
``mamba_inner_fn``, ``InferenceParams`` and ``RMSNorm``); importing anything else (Mamba2, the
Triton ops, the block internals) fails as an ordinary ImportError.

Libraries that look for mamba_ssm's kernels when they are imported (transformers does) will find
these ones if the shim is installed first.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import torch.nn.functional as F

from ..modules import InferenceParams, Mamba, MambaConfig, MambaLMHeadModel, RMSNorm
from ..modules.mamba import ssm_inputs
from ..ops.scan import selective_scan_fn
from ..ops.scan_ref import selective_scan_ref

SHIM_VERSION = "0.0.0+s6kit"


def mamba_inner_fn(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                   out_proj_bias, A, B=None, C=None, D=None, delta_bias=None, B_proj_bias=None,
                   C_proj_bias=None, delta_softplus=True, checkpoint_lvl=1, b_rms_weight=None,
                   c_rms_weight=None, dt_rms_weight=None, b_c_dt_rms_eps=1e-6):
    """mamba_ssm's fused Mamba mixer, xz (batch, 2 * d_inner, L) -> (batch, L, d_model), built from
    PyTorch's conv and linear ops and s6kit's scan (``checkpoint_lvl`` has no meaning here)."""
    if any(w is not None for w in (b_rms_weight, c_rms_weight, dt_rms_weight)):
        raise ValueError("mamba_inner_fn: the B/C/dt RMS norms (b_rms_weight, ...) are not supported by s6kit")
    x, z = xz.chunk(2, dim=1)
    weight = conv1d_weight if conv1d_weight.dim() == 3 else conv1d_weight.unsqueeze(1)  # (d, 1, w)
    L, width = x.shape[-1], weight.shape[-1]
    x = F.silu(F.conv1d(x, weight, conv1d_bias, padding=width - 1, groups=x.shape[1])[..., :L])
    delta, B_x, C_x = ssm_inputs(x, x_proj_weight, delta_proj_weight, A.shape[-1])
    if B is None:
        B = B_x if B_proj_bias is None else (B_x + B_proj_bias[:, None]).to(x.dtype)
    if C is None:
        C = C_x if C_proj_bias is None else (C_x + C_proj_bias[:, None]).to(x.dtype)
    y = selective_scan_fn(x, delta, A, B, C, D, z=z, delta_bias=delta_bias,
                          delta_softplus=delta_softplus)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)

# module name -> the attributes it exposes (packages are the names with children)
_MODULES: dict[str, dict[str, object]] = {
    "mamba_ssm": {"Mamba": Mamba, "MambaLMHeadModel": MambaLMHeadModel,
                  "selective_scan_fn": selective_scan_fn, "__version__": SHIM_VERSION},
    "mamba_ssm.ops": {},
    "mamba_ssm.ops.selective_scan_interface": {"selective_scan_fn": selective_scan_fn,
                                               "selective_scan_ref": selective_scan_ref,
                                               "mamba_inner_fn": mamba_inner_fn},
    "mamba_ssm.modules": {},
    "mamba_ssm.modules.mamba_simple": {"Mamba": Mamba},
    "mamba_ssm.models": {},
    "mamba_ssm.models.mixer_seq_simple": {"MambaLMHeadModel": MambaLMHeadModel},
    "mamba_ssm.models.config_mamba": {"MambaConfig": MambaConfig},
    "mamba_ssm.utils": {},
    "mamba_ssm.utils.generation": {"InferenceParams": InferenceParams},
    "mamba_ssm.ops.triton": {},
    "mamba_ssm.ops.triton.layer_norm": {"RMSNorm": RMSNorm},
}


def is_installed() -> bool:
    """True when the shim (not a real mamba_ssm) is what ``import mamba_ssm`` gives."""
    module = sys.modules.get("mamba_ssm")
    return module is not None and getattr(module, "__s6kit_shim__", False)


def install(force: bool = False) -> None:
    """Register the shim modules. Refuses when a real mamba_ssm is importable, unless ``force``."""
    if is_installed():
        return
    real = "mamba_ssm" in sys.modules or importlib.util.find_spec("mamba_ssm") is not None
    if real and not force:
        raise RuntimeError(
            "s6kit's mamba_ssm shim was not installed: a real mamba_ssm is importable here and the "
            "shim would hide it. Use mamba_ssm directly, or call install(force=True) to run "
            "mamba_ssm code on s6kit anyway."
        )
    packages = {name.rpartition(".")[0] for name in _MODULES} - {""}
    for name, attributes in _MODULES.items():
        is_package = name in packages
        module = types.ModuleType(name, f"s6kit's stand-in for {name}")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=is_package)
        if is_package:
            module.__path__ = []
        module.__s6kit_shim__ = True
        module.__dict__.update(attributes)
        sys.modules[name] = module
    for name in _MODULES:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def uninstall() -> None:
    """Remove the shim modules from ``sys.modules`` (a real mamba_ssm is untouched)."""
    for name in _MODULES:
        if getattr(sys.modules.get(name), "__s6kit_shim__", False):
            del sys.modules[name]
