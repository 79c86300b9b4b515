"""Small SoftSort cases for compute-sanitizer (bench/device.sh): every CUDA kernel family of
soft_permute and score_and_permute runs at least once, forward and backward.

    compute-sanitizer --tool memcheck --kernel-name kns=cuda_softsort python3 bench/softsort_sanitize.py

Rows of one tile (L = 37, rows that are not whole 16-byte chunks, and L = 300) and of several
(L = 5000, the tile kernels), p = 1 and p = 2, hard and soft, bfloat16 and float32, a full and a
broadcast output gradient.
"""
import torch

import s6kit


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    for L in (37, 300, 5000):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(2, 8, L, generator=gen).to("cuda", dtype)
            scores = torch.randn(2, L, generator=gen).cuda()
            w = torch.randn(8, generator=gen).cuda()
            g = torch.randn(2, 8, L, generator=gen).to("cuda", dtype)
            for p in (1.0, 2.0):
                for hard in (False, True):
                    for fn, other in ((s6kit.soft_permute, scores), (s6kit.score_and_permute, w)):
                        xs, os_ = x.clone().requires_grad_(True), other.clone().requires_grad_(True)
                        out = fn(xs, os_, p=p, hard=hard)
                        torch.autograd.grad(out, (xs, os_), g)
                        torch.autograd.grad(fn(xs, os_, p=p, hard=hard).sum(), (xs, os_))
    torch.cuda.synchronize()
    print("softsort sanitizer cases done")


if __name__ == "__main__":
    main()
