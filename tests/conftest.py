import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip (with the reason shown) on machines without an NVIDIA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (CUDA tests run on the GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
