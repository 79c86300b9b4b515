"""Measured numbers to beat (the project's ANCHORS.md, measured 2026-11-22).

GPU: one NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, CUDA 13.0; medians of 30 runs after warm-up.
CPU: a 2-core AMD EPYC with AVX2 + FMA, torch 2.13 CPU, 2 threads.
"""

# Device-to-device copy of 8 GiB on the H100, bytes read + bytes written.
H100_COPY_GBPS = 2995.0

# mamba_ssm 2.x `selective_scan_cuda` (sm_90), with D, z, delta_bias, softplus, A (dim, N) and
# variable B/C: (dtype, (batch, dim, L, N)) -> (forward ms, backward ms).
MAMBA_SSM_SCAN_MS = {
    ("bfloat16", (8, 1536, 2048, 16)): (0.470, 1.938),
    ("bfloat16", (4, 2048, 4096, 16)): (0.611, 2.553),
    ("bfloat16", (16, 768, 1024, 16)): (0.236, 0.987),
    ("bfloat16", (2, 4096, 8192, 16)): (1.485, 5.095),
    ("float32", (8, 1536, 2048, 16)): (0.924, 2.156),
    ("float32", (4, 2048, 4096, 16)): (1.229, 2.924),
    ("float32", (16, 768, 1024, 16)): (0.454, 1.239),
    ("float32", (2, 4096, 8192, 16)): (2.590, 5.799),
    ("bfloat16", (128, 320, 196, 16)): (0.339, 1.051),
    ("bfloat16", (256, 160, 784, 16)): (1.173, 4.247),
    ("bfloat16", (128, 640, 49, 16)): (0.395, 1.052),
    ("bfloat16", (8, 1536, 2048, 64)): (1.493, 7.068),
    ("bfloat16", (1, 1536, 65536, 16)): (2.243, 7.915),
}

# CPU, (2, 256, 1024, 16) fp32, softplus, D, 2 threads: (forward s, forward + backward s).
CPU_SCAN_S = {
    "PyTorch loop over L": (0.242, 34.9),
    "mamba.py parallel scan": (0.208, 0.513),
}
CPU_SCAN_SHAPE = (2, 256, 1024, 16)

# The paper's SoftSort (materialised P, then einsum), bf16 fwd + bwd on the H100:
# (batch, L, dim) -> (ms or None for out of memory, peak extra bytes or None).
PAPER_SOFTSORT = {
    (64, 196, 320): (2.40, 140e6),
    (8, 1024, 1536): (2.18, 352e6),
    (8, 4096, 1536): (12.45, 4.43e9),
    (4, 16384, 1536): (89.6, 33.0e9),
    (2, 65536, 1536): (None, None),
}


def scan_bytes(batch: int, dim: int, L: int, N: int, elem: int) -> tuple[int, int]:
    """Fewest bytes moved by the scan (ANCHORS.md): forward reads u, delta, z, B, C and writes
    out; backward reads u, delta, z, dout, B, C and writes du, ddelta, dz, dB, dC."""
    fwd = (4 * batch * dim * L + 2 * batch * N * L) * elem
    bwd = (8 * batch * dim * L + 4 * batch * N * L) * elem
    return fwd, bwd
