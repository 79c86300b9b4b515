"""The `s6kit` command: info, demo, benchmarks and the token-dynamics tools."""
from __future__ import annotations

import argparse
import sys


def info(args=None) -> dict:
    """Version, backends compiled in, torch version."""
    import torch

    from . import __version__, _C

    facts = {
        "s6kit": __version__,
        "cpu backend": f"yes ({_C.cpu_isa()})",
        "cuda backend": (f"yes (CUDA {_C.cuda_runtime_version()}, archs {_C.cuda_archs()})"
                         if _C.cuda_compiled() else "no (built without nvcc)"),
        "torch": torch.__version__,
        "cuda device": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "compiled module": _C.__file__,
    }
    if args is not None:
        for k, v in facts.items():
            print(f"{k:16} {v}")
    return facts


def build_parser() -> argparse.ArgumentParser:
    from . import demo
    from .benchmarks import scan as bench_scan
    from .benchmarks import softsort as bench_softsort
    from .benchmarks import train as bench_train
    from .dynamics import cli as dynamics_cli

    parser = argparse.ArgumentParser(prog="s6kit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends compiled in, torch").set_defaults(func=info)
    demo.register(sub)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    bench_scan.register(bench)
    bench_softsort.register(bench)
    bench_train.register(bench)
    dynamics_cli.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
