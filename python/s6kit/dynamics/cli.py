"""Command line: ``s6kit dynamics figures --out DIR`` and ``s6kit dynamics inspect --model ... --out DIR``.

:func:`register` adds the ``dynamics`` command to an argparse subparsers object; each subcommand
stores its handler in ``func`` (called as ``args.func(args)``, returning an exit code).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

MODELS = ("random-s6kit", "transformers")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _figures(args) -> int:
    from .figures import make_figures

    for path in make_figures(args.out):
        print(path)
    return 0


def _random_s6kit(args):
    import s6kit

    lm_cls, config_cls = getattr(s6kit, "MambaLMHeadModel", None), getattr(s6kit, "MambaConfig", None)
    if lm_cls is None or config_cls is None:
        raise SystemExit("s6kit dynamics inspect: --model random-s6kit needs s6kit.MambaLMHeadModel and "
                         "s6kit.MambaConfig, which this installation does not provide")
    ssm_cfg = {"d_state": 16}
    if args.io_spectrum is not None:
        ssm_cfg["io_spectrum"] = args.io_spectrum
    config = config_cls(d_model=64, n_layer=args.layers, vocab_size=256, ssm_cfg=ssm_cfg)
    return lm_cls(config), 256


def _random_transformers(args):
    if args.io_spectrum is not None:
        raise SystemExit("s6kit dynamics inspect: --io-spectrum applies to --model random-s6kit only")
    try:
        from transformers import MambaConfig, MambaForCausalLM
    except ImportError as exc:
        raise SystemExit(f"s6kit dynamics inspect: --model transformers needs the transformers package ({exc})")
    config = MambaConfig(vocab_size=256, hidden_size=64, state_size=16, num_hidden_layers=args.layers,
                         expand=2, conv_kernel=4, time_step_rank=8, use_mambapy=False)
    return MambaForCausalLM(config), 256


def _inspect(args) -> int:
    import torch

    from .inspection import inspect_model
    from .report_plot import plot_report

    torch.manual_seed(args.seed)
    model, vocab = (_random_s6kit if args.model == "random-s6kit" else _random_transformers)(args)
    model.eval()
    inputs = torch.randint(0, vocab, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(args.seed))
    report = inspect_model(model, inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inspect.json").write_text(json.dumps(report.to_dict(), indent=1))
    plot_report(report, out / "inspect.png")
    for layer in report.layers:
        print(f"{layer.name}: {layer.n_positive} positive, {layer.n_negative} negative, "
              f"{layer.n_zero} zero eigenvalues -> {layer.scenario}")
    norms = report.token_norms
    print("mean token norm per stage: " + ", ".join(f"{m:.3g}" for m in norms.mean))
    print(out / "inspect.json")
    print(out / "inspect.png")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``dynamics`` command (subcommands ``figures`` and ``inspect``) to ``subparsers``."""
    parser = subparsers.add_parser("dynamics", help="token-dynamics toolkit (paper, sections 3-4, appendix B)")
    commands = parser.add_subparsers(dest="dynamics_command", required=True)

    figures = commands.add_parser("figures", help="draw figures 1, 2, 3 and 6 of the paper as PNG")
    figures.add_argument("--out", required=True, help="directory for fig1.png ... fig6.png")
    figures.set_defaults(func=_figures)

    inspect = commands.add_parser(
        "inspect", help="eigenvalues of sym(S_C^T S_B) per layer and token norms of a small random model")
    inspect.add_argument("--model", choices=MODELS, default="transformers",
                         help="random-s6kit: s6kit.MambaLMHeadModel; transformers: MambaForCausalLM (tiny sizes)")
    inspect.add_argument("--out", required=True, help="directory for inspect.json and inspect.png")
    inspect.add_argument("--layers", type=_positive_int, default=4, help="number of layers (default 4)")
    inspect.add_argument("--batch", type=_positive_int, default=4, help="sequences in the input batch (default 4)")
    inspect.add_argument("--seq-len", type=_positive_int, default=64, help="tokens per sequence (default 64)")
    inspect.add_argument("--seed", type=int, default=0)
    inspect.add_argument("--io-spectrum", choices=("positive", "negative", "mixed"), default=None,
                         help="random-s6kit only: constrain S_C^T S_B's eigenvalue signs (appendix C.1)")
    inspect.set_defaults(func=_inspect)
    return parser
