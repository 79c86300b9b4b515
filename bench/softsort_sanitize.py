"""Small SoftSort cases for compute-sanitizer (bench/device.sh): every CUDA kernel family of
soft_permute and score_and_permute runs at least once, forward and backward.

    compute-sanitizer --tool memcheck --kernel-name kns=cuda_softsort python3 bench/softsort_sanitize.py
    compute-sanitizer --tool racecheck --kernel-name kns=cuda_softsort python3 bench/softsort_sanitize.py --few

Rows of one tile (L = 37, rows that are not whole 16-byte chunks, and L = 300) and of several
(L = 5000, the tile kernels), p = 1 and p = 2, hard and soft, bfloat16 and float32, a full and a
broadcast output gradient; soft_permute at L = 65536 (rows staged one at a time); and
score_and_permute on 200 and 128 channels (L = 300 and 5000), so that a block pipelines several
channel rows. --few runs a case per kernel family instead (racecheck is slow): score_and_permute
with p = 1 on rows of one tile (float32; soft, and hard with L = 37) and of several (bfloat16),
with p = 2 (bfloat16), and soft_permute with p = 1 on rows of one tile (float32) and, hard, of
several (bfloat16); and the two cases of many channels.
"""
import sys

import torch

import s6kit


def run_case(fn, L, dtype, p, hard, gen, broadcast_too=True, dim=8) -> None:
    x = torch.randn(2, dim, L, generator=gen).to("cuda", dtype).requires_grad_(True)
    other = (torch.randn(dim, generator=gen) if fn is s6kit.score_and_permute
             else torch.randn(2, L, generator=gen)).cuda().requires_grad_(True)
    g = torch.randn(2, dim, L, generator=gen).to("cuda", dtype)
    torch.autograd.grad(fn(x, other, p=p, hard=hard), (x, other), g)
    if broadcast_too:
        torch.autograd.grad(fn(x, other, p=p, hard=hard).sum(), (x, other))


def main(few: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    if few:
        run_case(s6kit.score_and_permute, 300, torch.float32, 1.0, False, gen, False)
        run_case(s6kit.score_and_permute, 37, torch.float32, 1.0, True, gen, False)
        run_case(s6kit.score_and_permute, 5000, torch.bfloat16, 1.0, False, gen, False)
        run_case(s6kit.score_and_permute, 300, torch.bfloat16, 2.0, False, gen, False)
        run_case(s6kit.soft_permute, 300, torch.float32, 1.0, False, gen, False)
        run_case(s6kit.soft_permute, 5000, torch.bfloat16, 1.0, True, gen, False)
    else:
        for L in (37, 300, 5000):
            for dtype in (torch.float32, torch.bfloat16):
                for p in (1.0, 2.0):
                    for hard in (False, True):
                        for fn in (s6kit.soft_permute, s6kit.score_and_permute):
                            run_case(fn, L, dtype, p, hard, gen)
        # Rows too long for two stages in shared memory (the gathers take them one at a time).
        run_case(s6kit.soft_permute, 65536, torch.bfloat16, 1.0, False, gen, False)
    # Blocks of several channel rows (the pipelines of rows of one tile and of the tile kernels).
    run_case(s6kit.score_and_permute, 300, torch.float32, 1.0, False, gen, False, dim=200)
    run_case(s6kit.score_and_permute, 5000, torch.bfloat16, 1.0, False, gen, False, dim=128)
    torch.cuda.synchronize()
    print("softsort sanitizer cases done")


if __name__ == "__main__":
    main("--few" in sys.argv[1:])
