"""Replaying a step (a forward and its backward) from a CUDA graph against running it eagerly.
No host synchronisation inside the ops and workspaces from torch's allocator are what make them
capturable (torch.cuda.graphs; torch.compile's mode="reduce-overhead" relies on it)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from s6kit.benchmarks.timing import capture_cuda_graph


def replays_like_eager(step: Callable[[], Sequence[torch.Tensor]],
                       inputs: Sequence[torch.Tensor], fresh: Sequence[torch.Tensor]) -> None:
    """Captures step, copies `fresh` values into its `inputs`, replays it, and asserts that every
    result has the bits of step() run eagerly on those values."""
    graph, static = capture_cuda_graph(step)
    with torch.no_grad():
        for t, v in zip(inputs, fresh):
            t.copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    eager = step()
    assert len(static) == len(eager)
    for i, (a, e) in enumerate(zip(static, eager)):
        assert torch.equal(a, e), f"result {i} of the replay differs from the eager run"
