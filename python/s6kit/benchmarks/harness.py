"""What the benchmark harnesses share: the dtypes `--dtype` names, the parsing of `--shape`
options, and the JSON file of result rows."""
from __future__ import annotations

import json

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_shapes(options: list[str] | None) -> list[tuple[int, ...]] | None:
    """`--shape 8,1536,2048,16` options as tuples of ints (None when none were given)."""
    if not options:
        return None
    return [tuple(int(v) for v in s.split(",")) for s in options]


def write_rows(path: str | None, rows: list[dict]) -> None:
    """The rows and the torch version as JSON at path (nothing when path is None)."""
    if path:
        with open(path, "w") as f:
            json.dump(dict(rows=rows, torch=torch.__version__), f, indent=1)
