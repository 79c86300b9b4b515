"""Training-step benchmark: a small Mamba language model, forward + backward + AdamW step, on
s6kit's kernels and on the plain-PyTorch reference scan (same weights, same batch).

    s6kit bench train [--d-model 256 --n-layer 4 --vocab 1024 --seqlen 512 --batch 4]
                      [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--steps 5]
                      [--reference-steps N] [--skip-reference] [--threads N]
    python -m s6kit.benchmarks.train ...        (the same, without the CLI)

bfloat16 / float16 train with autocast (float32 master weights). Prints milliseconds per step
(median and minimum over the timed steps) for both backends and their ratio.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ..modules import MambaConfig, MambaLMHeadModel, set_scan_backend
from .harness import DTYPES



def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` command to an argparse subparsers object (``s6kit bench train``)."""
    parser = subparsers.add_parser(
        "train", help="training step of a small Mamba LM: s6kit's kernels against the reference scan",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per backend")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per backend")
    parser.add_argument("--reference-steps", type=int, default=None,
                        help="timed steps for the (slow) reference; default: --steps")
    parser.add_argument("--skip-reference", action="store_true", help="time s6kit only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and s6kit's CPU kernels (default: torch's setting)")
    parser.set_defaults(func=run)
    return parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(model: torch.nn.Module, tokens: torch.Tensor, steps: int, warmup: int,
                  dtype: torch.dtype) -> tuple[list[float], list[float]]:
    """Milliseconds and loss of each timed step (next-token cross-entropy, AdamW)."""
    device = tokens.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    vocab = model.config.vocab_size
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    times, losses = [], []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(inputs).logits[..., :vocab]
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
            losses.append(loss.item())
    return times, losses


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("bench train: --device cuda was given but no CUDA device is available")
    dtype = DTYPES[args.dtype]
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"bench train: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = MambaConfig(d_model=args.d_model, n_layer=args.n_layer, vocab_size=args.vocab,
                         ssm_cfg={"d_state": args.d_state})
    model = MambaLMHeadModel(config, device=device)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seqlen + 1), device=device)
    print(f"bench train: d_model={args.d_model} n_layer={args.n_layer} vocab={args.vocab} "
          f"L={args.seqlen} batch={args.batch} d_state={args.d_state} device={args.device} "
          f"dtype={args.dtype} threads={torch.get_num_threads()} "
          f"params={sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")

    backends = {"s6kit": args.steps}
    if not args.skip_reference:
        backends["reference"] = args.reference_steps or args.steps
    results = {}
    for name, steps in backends.items():
        replica = set_scan_backend(copy.deepcopy(model), name)
        times, losses = time_training(replica, tokens, steps, args.warmup, dtype)
        results[name] = {"median_ms": statistics.median(times), "min_ms": min(times), "steps": steps,
                         "first_loss": losses[0]}
        print(f"  {name:<10} {results[name]['median_ms']:10.1f} ms/step (median of {steps}, "
              f"min {results[name]['min_ms']:.1f})  loss {losses[0]:.4f}")
    if "reference" in results:
        ratio = results["reference"]["median_ms"] / results["s6kit"]["median_ms"]
        results["ratio"] = ratio
        print(f"  reference / s6kit: {ratio:.1f}x")
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m s6kit.benchmarks.train")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    main()
