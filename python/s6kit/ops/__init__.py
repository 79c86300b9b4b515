"""Selective state space (S6 / Mamba) operators and the paper's token reordering."""
from .scan import selective_scan_fn
from .scan_ref import selective_scan_ref
from .softsort import score_and_permute, soft_permute
from .softsort_ref import score_and_permute_ref, soft_permute_ref, soft_sort_matrix

__all__ = [
    "selective_scan_fn",
    "selective_scan_ref",
    "soft_permute",
    "score_and_permute",
    "soft_sort_matrix",
    "soft_permute_ref",
    "score_and_permute_ref",
]
