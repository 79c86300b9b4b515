"""Bridge between torch tensors and the torch-free compiled core ``s6kit._C``.

Tensors cross as descriptors ``(data_ptr, dtype, shape, strides, device, index)``; the core
checks them again and runs its kernels on memory that torch owns.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (re-exported for the ops)

# Floating-point storage types, then integer index types; the codes match DType in
# cpp/include/s6kit/tensor.h. Each op's C++ checks say which dtypes each argument accepts.
_DTYPE_CODES = {
    torch.float32: 0,
    torch.float16: 1,
    torch.bfloat16: 2,
    torch.float64: 3,
    torch.int32: 4,
    torch.int64: 5,
}
_DEVICE_CODES = {"cpu": 0, "cuda": 1}  # as s6kit::Device


def desc(t: torch.Tensor | None, op: str, arg: str):
    """The descriptor of ``t`` (None stays None). Raises ValueError naming ``arg``."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: argument '{arg}' must be a torch.Tensor, got {type(t).__name__}")
    code = _DTYPE_CODES.get(t.dtype)
    if code is None:
        raise ValueError(
            f"{op}: argument '{arg}' must be float32, float16, bfloat16, float64, int32 or int64, "
            f"got {t.dtype}"
        )
    if t.is_cuda:
        return (t.data_ptr(), code, t.shape, t.stride(), 1, t.get_device())
    if not t.is_cpu:
        raise ValueError(f"{op}: argument '{arg}' must be on the CPU or a CUDA device, got {t.device}")
    return (t.data_ptr(), code, t.shape, t.stride(), 0, 0)


# The current stream as an integer in one call (torch.cuda.current_stream builds a Stream object).
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def stream_of(t: torch.Tensor) -> int:
    """The current CUDA stream of ``t``'s device as an integer handle (0 on the CPU)."""
    if not t.is_cuda:
        return 0
    if _raw_stream is not None:
        return _raw_stream(t.get_device())
    return torch.cuda.current_stream(t.device).cuda_stream


def num_threads() -> int:
    return torch.get_num_threads()


def byte_allocator(device: torch.device, keep: list):
    """A callback the core uses to ask for scratch memory; ``keep`` holds it until the op ends."""

    def alloc(nbytes: int):
        buf = torch.empty(int(nbytes), dtype=torch.uint8, device=device)
        keep.append(buf)
        return (buf.data_ptr(), 0, (int(nbytes),), (1,), _DEVICE_CODES[device.type], device.index or 0)

    return alloc
