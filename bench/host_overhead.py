"""Host time of eager steps on CUDA, where small shapes are bound by the host rather than the GPU.

For three eager forward + backward steps (score_and_permute at (64, 196, 320) bf16; the scan op at
(4, 512, 512, 16) bf16; one Mamba block, d_model 256, L 512, batch 4, under bf16 autocast) it
prints the step time without and with a final synchronisation (equal when the host is the
bound), torch's profiler table by self CPU time (20 steps) and cProfile's by own time (100 steps).
Run on a GPU machine with s6kit installed: python3 bench/host_overhead.py
"""
import cProfile
import io
import pstats
import time

import torch
from torch.profiler import ProfilerActivity, profile

import s6kit
from s6kit.benchmarks.softsort import _step, make_inputs

dev = torch.device("cuda")


def softsort_case():
    x, w = make_inputs((64, 196, 320), torch.bfloat16, dev)
    x.requires_grad_(True)
    w.requires_grad_(True)
    return lambda: _step(s6kit.score_and_permute, x, w, 1.0, 1.0)


def scan_case():
    from s6kit.modules.mamba import Mamba
    m = Mamba(d_model=256, d_state=16).to(dev)
    x = torch.randn(4, 512, 256, device=dev, requires_grad=True)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = m(x)
        y.float().sum().backward()
    return step


def scan_op_case():
    b, d, L, N = 4, 512, 512, 16

    def mk(*shape):
        return torch.randn(*shape, device=dev, dtype=torch.bfloat16, requires_grad=True)
    u, dl, z = mk(b, d, L), mk(b, d, L), mk(b, d, L)
    B, C = mk(b, 1, N, L), mk(b, 1, N, L)
    A = (-torch.rand(d, N, device=dev)).requires_grad_(True)
    D = torch.randn(d, device=dev, requires_grad=True)
    db = torch.randn(d, device=dev, requires_grad=True)

    def step():
        y = s6kit.selective_scan_fn(u, dl, A, B, C, D, z, db, delta_softplus=True)
        torch.autograd.grad(y.sum(), (u, dl, A, B, C, D, z, db))
    return step


CASES = [("softsort (64,196,320) bf16", softsort_case),
         ("scan op (4,512,512,16) bf16", scan_op_case),
         ("Mamba block d_model 256 L 512 batch 4", scan_case)]

for name, make in CASES:
    step = make()
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        step()
    host = (time.perf_counter() - t) / n * 1e3
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t) / n * 1e3
    print(f"\n##### {name}: host {host:.3f} ms/step, with sync {wall:.3f} ms/step")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30,
                                    max_name_column_width=60))
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(100):
        step()
    torch.cuda.synchronize()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
    print(s.getvalue()[:6000])
