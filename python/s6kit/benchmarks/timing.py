"""Timing helpers: medians over repeated runs, CUDA events around back-to-back calls on the GPU,
wall clock on the CPU; capture into a CUDA graph, to time the GPU's work without the host's."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 10) -> float:
    """Median time of fn() in milliseconds.

    On the GPU a sample is the mean over back-to-back calls between two CUDA events, with no
    synchronisation in between: the host queues the next call while the GPU works, as in a
    training loop, so the GPU's time is measured rather than the host's latency per call (a call
    with only microseconds of GPU work stays bounded by its host overhead). A sample has at least
    three calls, and enough for about 10 ms. On the CPU: wall-clock time per call.
    """
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        calls = max(3, min(100, int(10e-3 / max(time.perf_counter() - t0, 1e-6))))
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
        return statistics.median(times)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def capture_cuda_graph(fn: Callable[[], object]) -> tuple[torch.cuda.CUDAGraph, object]:
    """(graph, what fn() returned while captured): fn captured into a CUDA graph, after three
    calls on a side stream (torch's warm-up rule for a capture). Replaying the graph launches the
    captured kernels with one call: a step bound by its host overhead (Python, dispatch, kernel
    launches) is then bound by the GPU, as under torch.compile(mode="reduce-overhead")."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = fn()
    return graph, result


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, warmup=2, reps=10)
    return 2 * nbytes / (ms * 1e-3) / 1e9
