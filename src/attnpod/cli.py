"""Command line: ``python -m attnpod train|analyse --profile P --model M``."""

from __future__ import annotations

import argparse
import sys

from .config import MODELS, PROFILES


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="size/protocol preset (default: paper with CUDA, else laptop)")
    parser.add_argument("--model", choices=MODELS, required=True, help="which of the paper's four variants")
    parser.add_argument("--causal-gate", action="store_true",
                        help="EGA variants: normalise the gate energy with prefix statistics (no future leak)")
    parser.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, else download)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attnpod",
        description="Train the paper's GPT variants and run the scale-selective POD analysis. "
                    "Results are cached under the artifact folder ($ATTNPOD_ARTIFACTS, default ./artifacts "
                    "in a checkout), keyed by every setting, so reruns reuse them and changes recompute.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model (resumes from its last checkpoint)")
    _common(train)
    analyse = sub.add_parser("analyse", help="collect attention fields and analyse them (trains first if needed)")
    _common(analyse)
    analyse.add_argument("--split", choices=("val", "train", "all"), default="val",
                         help="where snapshot windows are drawn from (published: all)")
    analyse.add_argument("--snapshots", type=int, default=None, help="N, the ensemble size (default: the profile's)")
    from .study import FIGURES

    names = "\n".join(f"  {name:24s} {what}" for name, (what, _) in FIGURES.items())
    fig = sub.add_parser("figure", help="write one of the book's figures (PNG, PDF or SVG) from the cached artifacts",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=f"figures:\n{names}")
    fig.add_argument("name", choices=sorted(FIGURES), metavar="NAME", help="which figure (listed below)")
    fig.add_argument("--out", required=True, help="output file; the suffix picks the format (.png, .pdf, .svg)")
    fig.add_argument("--profile", choices=sorted(PROFILES), default=None,
                     help="size/protocol preset (default: paper with CUDA, else laptop)")
    fig.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, else download)")
    fig.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    fig.add_argument("--dpi", type=int, default=200, help="resolution of raster formats")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; known errors (data, checkpoint, parameter, device) print as one line and exit with 2."""
    args = build_parser().parse_args(argv)
    from .config import AttnpodError

    try:
        return _run(args)
    except AttnpodError as err:
        if args.debug:
            raise
        print(f"attnpod {args.command}: error: {err}  (--debug shows the traceback)", file=sys.stderr)
        return 2


def _figure(args) -> int:
    from pathlib import Path

    from .config import ParameterError
    from .study import Study, figure

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ParameterError(f"--out {out}: the suffix must be .png, .pdf or .svg")
    study = Study.create(args.profile or "auto", device=args.device, data_path=args.data or "")
    fig = figure(study, args.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    print(f"{args.name} [{study.profile.name}] -> {out}")
    return 0


def _run(args) -> int:
    if args.command == "figure":
        return _figure(args)
    from .config import get_profile
    from .data import load_corpus
    from .train import resolve_device, train

    overrides = {"n_snapshots": args.snapshots} if getattr(args, "snapshots", None) is not None else {}
    profile = get_profile(args.profile, **overrides)
    resolve_device(args.device)  # fails before the corpus is read
    corpus = load_corpus(args.data)
    model, history, path = train(profile, args.model, corpus, device=args.device, causal_gate=args.causal_gate)
    print(f"{args.model} [{profile.name}]: step {history.step[-1]}, train {history.train[-1]:.4f}, "
          f"val {history.val[-1]:.4f}; checkpoint {path}")
    if args.command == "analyse":
        from .pipeline import analyse_model

        result, folder = analyse_model(model, corpus, profile, split=args.split, device=args.device,
                                       name=path.parent.name)
        print(f"analysis of {args.model} [{profile.name}] in {folder}")
        eps = ", ".join(f"{e:g}" for e in result.epsilons)
        for l, scales in enumerate(result.dominant_scales):
            print(f"  layer {l + 1}: dominant scales {', '.join(f'{a:.1f}' for a in scales)}; "
                  f"T_spec {result.spectral_concentration[l]:.3f}; H*(ε = {eps}) = {result.effective_rank[l].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
