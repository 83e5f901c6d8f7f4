"""Training protocol of SPEC section 2, with checkpoints that resume and load strictly.

AdamW (β = 0.9, 0.95; weight decay 0.1 on every parameter, as published),
linear warm-up then cosine to 0, gradient clip 1.0, bf16 autocast on CUDA,
evaluation every ``eval_interval`` steps on ``eval_batches`` random batches per split.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .errors import AttnpodError, CheckpointError, ParameterError, TrainingDiverged
from .config import Profile, model_name, parse_model_name
from .store import artifact_dir, artifact_lock, is_verified, write_verified
from .data import SHA256 as DATA_SHA256, Corpus, random_batch
from .models import GPT, EnergyGate, GPTConfig

CHECKPOINT_FORMAT = 2  # 2: loaded with weights_only=True, training settings stored and checked
GRAD_CLIP = 1.0


def resolve_device(device: str | None = None) -> torch.device:
    """``auto`` (CUDA if available, else CPU), or a device checked to exist here, before any work."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParameterError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from err
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, but no GPU is visible"
            raise ParameterError(f"device {device!r}: CUDA is not available here (torch {torch.__version__} is {build}); "
                                 f"use --device cpu, or auto to pick CUDA only when it exists")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ParameterError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif chosen.type == "mps":
        if not torch.backends.mps.is_available():
            raise ParameterError(f"device {device!r}: Apple MPS is not available here; use --device cpu")
    elif chosen.type != "cpu":
        raise ParameterError(f"device {device!r} is not supported: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return chosen


def model_config(profile: Profile, variant: str, vocab_size: int = 65, causal_gate: bool = False) -> GPTConfig:
    """The model config of a variant at the profile's sizes."""
    return GPTConfig(**profile.size(), vocab_size=vocab_size, variant=variant, causal_gate=causal_gate)


def training_settings(profile: Profile, cfg: GPTConfig) -> dict:
    """Every setting that influences a trained model: its key in the artifact store."""
    protocol = {k: v for k, v in profile.as_dict().items() if k not in ("name", "n_snapshots")}
    settings = {"model": cfg.as_dict(), "protocol": protocol, "data_sha256": DATA_SHA256, "grad_clip": GRAD_CLIP,
                "format": CHECKPOINT_FORMAT}
    if cfg.causal_gate:
        settings["causal_gate_form"] = EnergyGate.CAUSAL_FORM
    return json.loads(json.dumps(settings))  # plain JSON types, comparable with what a checkpoint stores


def checkpoint_path(profile: Profile, cfg: GPTConfig) -> Path:
    """Where the store keeps this model's checkpoint, under a key of every training setting."""
    name = model_name(cfg.variant, cfg.causal_gate)
    return artifact_dir("checkpoints", name, training_settings(profile, cfg)) / "checkpoint.pt"


def lr_at(step: int, profile: Profile) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to 0 at ``steps``."""
    if step < profile.warmup:
        return profile.lr * step / max(1, profile.warmup)
    t = (step - profile.warmup) / max(1, profile.steps - profile.warmup)
    return profile.lr * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class History:
    """Loss curves: per-step training loss and the periodic evaluations."""

    step: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0


@torch.no_grad()
def evaluate(model: GPT, corpus: Corpus, profile: Profile, device, seed: int, progress: bool = False) -> dict[str, float]:
    """Mean loss on ``eval_batches`` random batches of each split (the same batches for a given seed)."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        gen = torch.Generator().manual_seed(seed)
        losses = []
        for _ in tqdm(range(profile.eval_batches), desc=f"eval {split}", leave=False, disable=not progress):
            x, y = random_batch(corpus.split(split), profile.batch_size, profile.block_size, gen)
            with _autocast(device):
                losses.append(model(x.to(device), y.to(device))[1].item())
        out[split] = sum(losses) / len(losses)
    model.train()
    return out


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def save_checkpoint(path: Path, model: GPT, optimizer, profile: Profile, step: int,
                    history: History, generator: torch.Generator) -> None:
    """Write atomically (temporary file, then rename) with a SHA-256 sidecar; never a non-finite model."""
    bad = [name for name, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(f"{model.config.variant}: parameters {bad[:3]} are not finite at step {step}; "
                               f"not saved. Lower the learning rate (lr={profile.lr:g}).")
    state = {
        "format": CHECKPOINT_FORMAT, "version": __version__, "config": model.config.as_dict(),
        "settings": training_settings(profile, model.config),
        "profile": profile.as_dict(), "step": step, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "history": history.__dict__,
        "rng": {"torch": torch.get_rng_state(), "batches": generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    write_verified(path, lambda tmp: torch.save(state, tmp))


def read_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint dict, verifying its hash and format; never returns a partial one.

    Loaded with ``weights_only=True``: tensors and plain containers only, so a
    planted pickle cannot run code. A missing sidecar is an error, not a pass.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    verified = is_verified(path)
    if verified is None:
        raise CheckpointError(f"{path} has no {path.name}.sha256 beside it, so it cannot be verified; delete it to retrain")
    if verified is False:
        raise CheckpointError(f"{path} is corrupted (its SHA-256 differs from {path.name}.sha256); delete it to retrain")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err}); delete it to retrain") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an attnpod checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def load_model(path: Path, expected: GPTConfig | None = None, device="cpu",
               profile: Profile | None = None) -> tuple[GPT, dict]:
    """The model stored at ``path``, loaded strictly: a mismatch raises, never random weights.

    ``expected`` checks the model config; ``profile`` also checks every training
    setting the checkpoint was made with (protocol, data, gate form).
    """
    state = read_checkpoint(path)
    try:
        cfg = GPTConfig(**state["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: stored config is invalid ({err})") from err
    if expected is not None and cfg != expected:
        diff = {k: (v, getattr(cfg, k)) for k, v in expected.as_dict().items() if getattr(cfg, k) != v}
        raise CheckpointError(f"{path}: config differs from the one asked for (expected, stored): {diff}")
    if profile is not None:
        wanted, stored = training_settings(profile, cfg), state.get("settings", {})
        if stored != wanted:
            diff = {k: (wanted.get(k), stored.get(k)) for k in set(wanted) | set(stored) if wanted.get(k) != stored.get(k)}
            raise CheckpointError(f"{path} was trained with other settings than profile {profile.name!r} asks for "
                                  f"(asked, stored): {diff}; delete it to retrain")
    model = GPT(cfg)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model ({err})") from err
    return model.to(device), state


def _own_random_streams(device: torch.device):
    """Context: the random streams seeded inside stay inside (the caller's global RNG is restored after)."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def initial_model(cfg: GPTConfig, seed: int) -> GPT:
    """The untrained model a training run of ``seed`` starts from (the caller's random streams untouched)."""
    with _own_random_streams(torch.device("cpu")):
        torch.manual_seed(seed)
        return GPT(cfg)


def train(profile: Profile, variant: str, corpus: Corpus, device=None, causal_gate: bool = False,
          progress: bool = True) -> tuple[GPT, History, Path]:
    """Train one model (or resume / reuse its checkpoint); returns model, history, checkpoint path.

    Its random streams are its own: seeded from the profile's seed (initialisation, then
    dropout; batches from their own generator) and never left behind in the caller's.
    """
    device = resolve_device(device)
    cfg = model_config(profile, variant, corpus.vocab_size, causal_gate)
    path = checkpoint_path(profile, cfg)
    with artifact_lock(path), _own_random_streams(device):  # a second process waits, then resumes or reuses
        return _train(profile, variant, corpus, device, cfg, path, progress)


def _train(profile: Profile, variant: str, corpus: Corpus, device: torch.device, cfg: GPTConfig, path: Path,
           progress: bool) -> tuple[GPT, History, Path]:
    torch.manual_seed(profile.seed)  # inside train's own streams (see train): the initialisation of initial_model
    generator = torch.Generator().manual_seed(profile.seed)
    model, state = load_model(path, cfg, device, profile) if path.exists() else (GPT(cfg).to(device), None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=profile.lr, betas=(0.9, 0.95), weight_decay=0.1)
    history, start = History(), 0
    if state is not None:  # resume: optimiser, history and every random stream where they stopped
        optimizer.load_state_dict(state["optimizer"])
        history, start = History(**state["history"]), state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        generator.set_state(state["rng"]["batches"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if start >= profile.steps:
        return model.eval(), history, path

    model.train()
    train_tokens = corpus.split("train")
    bar = tqdm(range(start, profile.steps), desc=f"train {variant}", disable=not progress,
               initial=start, total=profile.steps)
    t0 = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, profile)
        x, y = random_batch(train_tokens, profile.batch_size, profile.block_size, generator)
        with _autocast(device):
            _, loss = model(x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"training {variant} diverged: the loss is {value} at step {step + 1}; nothing "
                                   f"after step {history.step[-1] if history.step else 0} was saved. "
                                   f"Lower the learning rate (lr={profile.lr:g}).")
        optimizer.step()
        history.curve.append(value)
        history.tokens += x.numel()
        bar.set_postfix(loss=f"{history.curve[-1]:.3f}")
        done = step + 1
        if done % profile.eval_interval == 0 or done == profile.steps:
            losses = evaluate(model, corpus, profile, device, seed=profile.seed + 1, progress=progress)
            history.step.append(done)
            history.train.append(losses["train"])
            history.val.append(losses["val"])
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            bar.write(f"{variant} step {done}: train {losses['train']:.4f}  val {losses['val']:.4f}")
            save_checkpoint(path, model, optimizer, profile, done, history, generator)
    return model.eval(), history, path


def is_trained(profile: Profile, variant: str, vocab_size: int = 65, causal_gate: bool = False) -> bool:
    """True if the artifact store holds this model trained to the last step."""
    path = checkpoint_path(profile, model_config(profile, variant, vocab_size, causal_gate))
    if not path.exists():
        return False
    try:
        return read_checkpoint(path)["step"] >= profile.steps
    except CheckpointError:
        return False


def training_jobs(models: int, cores: int, cuda: bool = False) -> int:
    """How many trainings run at once: every one on CUDA (one small model leaves the GPU mostly idle),
    at most one per core on a CPU. More than one per core costs: five single-threaded laptop
    trainings sharing 2 cores did 10.9 steps/s together, two did 14.6 (measured)."""
    return max(1, models if cuda else min(models, cores))


def _train_in_process(profile: Profile, name: str, data_path: str | None, device: str, threads: int,
                      log: str) -> None:
    """One training in a spawned process: ``threads`` threads, its output in ``log``, an error as its last line."""
    import sys
    import traceback

    from threadpoolctl import threadpool_limits

    from .data import load_corpus

    torch.set_num_threads(threads)
    with open(log, "w", buffering=1) as out, threadpool_limits(1):
        sys.stdout = sys.stderr = out
        try:
            variant, causal = parse_model_name(name)
            train(profile, variant, load_corpus(data_path), device, causal)
        except BaseException as err:
            traceback.print_exc(file=out)
            print(f"{type(err).__name__}: {' '.join(str(err).split())}", file=out)
            raise SystemExit(1) from None


def train_in_processes(profile: Profile, models: list[str], data_path: str | None = None, device="auto",
                       jobs: int | None = None, progress: bool = True) -> dict[str, float]:
    """Train several models at once, each in its own spawned process; seconds per model.

    ``models`` are variants, ``_causal`` for the causal gate; ``profile`` travels to each
    process as it is (any settings). ``jobs`` processes run at a time (default
    :func:`training_jobs`), each with an equal share of the cores as its thread pool: on
    2 cores, two single-threaded trainings do 1.2x the work of one two-threaded
    (measured, laptop profile). Logs go to ``<artifacts>/logs/``; a failed run raises
    with its last line and the path of its log, and stops the others.
    """
    import multiprocessing
    import os

    from .store import store_root

    device = resolve_device(device)
    cores = os.cpu_count() or 1
    jobs = jobs or training_jobs(len(models), cores, device.type == "cuda")
    threads = max(1, cores // min(jobs, len(models)))
    logs = store_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no inherited threads or state
    pending, running, seconds = list(models), {}, {}
    bar = tqdm(total=len(models), desc=f"training {len(models)} models, {jobs} at a time", disable=not progress)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                log = logs / f"train-{profile.name}-{name}-seed{profile.seed}.log"
                proc = context.Process(target=_train_in_process, args=(profile, name, data_path, str(device),
                                                                       threads, str(log)), daemon=True)
                proc.start()
                running[name] = (proc, log, time.perf_counter())
            time.sleep(0.5)
            for name, (proc, log, start) in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del running[name]
                if proc.exitcode != 0:
                    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                    raise AttnpodError(f"training {name} failed: {(lines or ['(empty log)'])[-1]} (log: {log})")
                seconds[name] = time.perf_counter() - start
                bar.update()
                bar.write(f"{name}: trained in {seconds[name]:.0f} s")
    finally:
        for proc, *_ in running.values():
            proc.terminate()
            proc.join()
        bar.close()
    return seconds
