"""Shipped checkpoints: models trained on a GPU once, loaded on any machine without training.

The paper profile (SPEC section 2) takes hours per model on a CPU, so its models
are trained on a GPU and shipped in the repository under ``checkpoints/paper/``:

* ``<variant>[_causal]-seed<S>.safetensors``: the weights in float16 (no pickle;
  the tied output matrix is stored once), at most :data:`MAX_BYTES` each;
* ``manifest.json``: one entry per file with its SHA-256, the variant, gate and
  seed, the training record (steps, final train and validation loss, the loss
  curves, wall time, tokens/s), the model config, the training settings the
  artifact store keys it by, the device, the torch version and the date;
* ``results/<kind>-<model>-seed<S>.npz``: the experiments that take hours on a
  CPU at this size (head pruning, KV-cache budgets), computed on the GPU from the
  shipped weights themselves, listed under ``"results"`` in the manifest with
  their SHA-256 and settings (:func:`ship_result`, :func:`shipped_result`).

:func:`load_shipped` verifies the file against the manifest before it reads a
byte of it; a mismatch is an error that names the file. A study at a profile
that trains only on a GPU (:func:`trains_only_on_gpu`) uses these files on a
machine without one, and stops with a clear message where one is missing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import torch

from .config import AttnpodError, artifact_lock, artifact_name, model_name, project_root, publish, sha256_file
from .models import GPT, GPTConfig
from .train import CheckpointError, History, training_settings

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
MAX_BYTES = 10_000_000  # a file of at most 10 MB: the repository stays light
GPU_ONLY_PROFILES = ("paper",)


class MissingCheckpoint(AttnpodError):
    """A model the book needs was neither shipped nor may it be trained here."""


def shipped_root(profile_name: str, root: Path | None = None, folder: Path | None = None) -> Path:
    """``folder`` if given, else ``checkpoints/<profile>/`` of the checkout (or of ``root``)."""
    if folder:
        return Path(folder)
    base = root if root is not None else project_root()
    if base is None:
        raise MissingCheckpoint("shipped checkpoints live in a checkout of attnpod (checkpoints/<profile>/); "
                                "none encloses the working directory")
    return Path(base) / "checkpoints" / profile_name


def file_name(variant: str, causal_gate: bool, seed: int) -> str:
    return f"{model_name(variant, causal_gate)}-seed{seed}.safetensors"


def trains_only_on_gpu(profile_name: str, device) -> bool:
    """True where a profile's models must come from shipped files: the paper profile on a machine without CUDA."""
    return profile_name in GPU_ONLY_PROFILES and torch.device(device).type != "cuda"


def read_manifest(folder: Path) -> dict:
    """``{"format": 1, "entries": [...], "results": [...]}``; an empty manifest if the folder has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "entries": [], "results": []}
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path}: manifest format {manifest.get('format')!r}, this attnpod reads "
                              f"{MANIFEST_FORMAT}")
    manifest.setdefault("results", [])
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1)
    publish(folder / MANIFEST, lambda tmp: tmp.write_text(text + "\n"))


def _verified(folder: Path, entry: dict) -> Path:
    """The path of a manifest entry's file, after checking it against the entry's SHA-256."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise MissingCheckpoint(f"{path} is listed in the manifest but missing: restore it (git checkout -- {path})")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest's {entry['sha256'][:12]}…; "
                              f"the file is corrupted or was replaced: restore it (git checkout -- {path})")
    return path


def _tied_names(state: dict) -> set[str]:
    """Names whose tensor shares storage with an earlier name (stored once)."""
    seen, tied = set(), set()
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            tied.add(name)
        seen.add(key)
    return tied


def ship(model: GPT, history: History, settings: dict, seed: int, folder: Path, device: str = "") -> dict:
    """Write ``model``'s weights (float16) and its manifest entry into ``folder``; returns the entry.

    ``settings`` are the training settings (:func:`attnpod.train.training_settings`);
    an entry for the same file is replaced.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    name = file_name(cfg.variant, cfg.causal_gate, seed)
    state = model.state_dict()
    tied = _tied_names(state)
    weights = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items() if k not in tied}
    path = folder / name
    with artifact_lock(folder / MANIFEST):
        publish(path, lambda tmp: save_file(weights, str(tmp), metadata={"format": "attnpod-shipped-1"}))
        size = path.stat().st_size
        if size > MAX_BYTES:
            path.unlink()
            raise CheckpointError(f"{name} would be {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
        seconds = history.seconds
        entry = {
            "file": name, "sha256": sha256_file(path), "bytes": size, "variant": cfg.variant,
            "causal_gate": cfg.causal_gate, "seed": seed, "steps": history.step[-1] if history.step else 0,
            "train_loss": history.train[-1] if history.train else None,
            "val_loss": history.val[-1] if history.val else None,
            "curve": {"step": history.step, "train": history.train, "val": history.val,
                      "per_step": [round(x, 4) for x in history.curve]},
            "seconds": seconds, "tokens": history.tokens,
            "tokens_per_s": history.tokens / seconds if seconds > 0 else None,
            "config": cfg.as_dict(), "settings": settings, "device": device or "unknown",
            "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        manifest = read_manifest(folder)
        manifest["entries"] = [e for e in manifest["entries"] if e["file"] != name] + [entry]
        manifest["entries"].sort(key=lambda e: (e["seed"], e["variant"], e["causal_gate"]))
        _write_manifest(folder, manifest)
    return entry


# Settings measured from attention fields (the analysis-guided rules' scores): a GPU and a CPU agree on
# them only to rounding, so a shipped result is matched on every other setting and brings its own.
MEASURED_SETTINGS = ("scores", "top_scales")


def _comparable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in MEASURED_SETTINGS}


def ship_result(kind: str, model: str, seed: int, source: Path, settings: dict, folder: Path,
                device: str = "") -> dict:
    """Copy an experiment's result file (``kind`` "pruning" or "kv_cache", of ``model`` at ``seed``)
    into ``folder/results/`` and list it in the manifest; returns the entry (one per kind, model, seed)."""
    folder = Path(folder)
    name = f"results/{kind}-{model}-seed{seed}.npz"
    data = Path(source).read_bytes()
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{name} would be {len(data) / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
    (folder / "results").mkdir(parents=True, exist_ok=True)
    with artifact_lock(folder / MANIFEST):
        publish(folder / name, lambda tmp: tmp.write_bytes(data))
        entry = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "kind": kind,
                 "model": model, "seed": seed, "settings": settings, "device": device or "unknown",
                 "torch": torch.__version__,
                 "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        manifest = read_manifest(folder)
        manifest["results"] = [e for e in manifest["results"] if e["file"] != name] + [entry]
        manifest["results"].sort(key=lambda e: (e["seed"], e["kind"], e["model"]))
        _write_manifest(folder, manifest)
    return entry


def shipped_result(profile_name: str, kind: str, model: str, settings: dict, root: Path | None = None,
                   folder: Path | None = None) -> Path:
    """The verified file of a shipped experiment result run with these settings (the measured ones
    aside: the file brings its own), or :class:`MissingCheckpoint` saying how to compute it on a GPU.
    ``folder`` (else ``checkpoints/<profile>/`` of ``root`` or of the checkout) holds the manifest."""
    folder = shipped_root(profile_name, root, folder)
    for entry in read_manifest(folder)["results"]:
        if (entry["kind"], entry["model"]) == (kind, model) and _comparable(entry["settings"]) == _comparable(settings):
            return _verified(folder, entry)
    raise MissingCheckpoint(
        f"no shipped {profile_name}-profile {kind} result for {model}, seed {settings.get('seed')}, with these "
        f"settings, in {folder}: it takes hours on a CPU at this size. On a GPU: python -m attnpod experiments "
        f"--profile {profile_name} --seed {settings.get('seed')} --device cuda (after the models are shipped)")


def find(folder: Path, settings: dict, seed: int) -> dict | None:
    """The manifest entry trained with exactly these settings and seed, if shipped."""
    for entry in read_manifest(folder)["entries"]:
        if entry["seed"] == seed and entry["settings"] == settings:
            return entry
    return None


def history_of(entry: dict) -> History:
    """The training record of a shipped model, as the book's :class:`~attnpod.train.History`."""
    curve = entry["curve"]
    return History(step=list(curve["step"]), train=list(curve["train"]), val=list(curve["val"]),
                   curve=list(curve["per_step"]), seconds=float(entry["seconds"]), tokens=int(entry["tokens"]))


def load_shipped(folder: Path, entry: dict, device="cpu") -> GPT:
    """The shipped model of ``entry`` in float32, after checking its file against the manifest's SHA-256."""
    from safetensors.torch import load_file

    path = _verified(folder, entry)
    model = GPT(GPTConfig(**entry["config"]))
    weights = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) != _tied_names(model.state_dict()):
        raise CheckpointError(f"{path}: weights do not fit {entry['variant']} (missing {missing}, "
                              f"unexpected {unexpected})")
    return model.to(device).eval()


def shipped_model(profile, variant: str, causal_gate: bool, vocab_size: int, device="cpu",
                  root: Path | None = None, folder: Path | None = None) -> tuple[GPT, History, dict]:
    """The shipped model for this profile, variant, gate and seed, or :class:`MissingCheckpoint` saying what to do."""
    from .train import model_config

    settings = training_settings(profile, model_config(profile, variant, vocab_size, causal_gate))
    folder = shipped_root(profile.name, root, folder)
    entry = find(folder, settings, profile.seed)
    if entry is None:
        gate = " --causal-gate" if causal_gate else ""
        raise MissingCheckpoint(
            f"no shipped {profile.name}-profile checkpoint for {variant}{' (causal gate)' if causal_gate else ''}, "
            f"seed {profile.seed}, in {folder}: the {profile.name} profile is not trained on a CPU (hours per model). "
            f"On a GPU: python -m attnpod train --profile {profile.name} --model {variant}{gate} --seed "
            f"{profile.seed} --device cuda, then python -m attnpod ship with the same options")
    return load_shipped(folder, entry, device), history_of(entry), entry


def trained_or_shipped(profile, variant: str, corpus, device=None, causal_gate: bool = False, progress: bool = True,
                       root: Path | None = None, shipped: bool = False,
                       folder: Path | None = None) -> tuple[GPT, History, str]:
    """The model a build uses, with its history and artifact name (``<variant>-<settings hash>``).

    Trained here (or reused from the artifact store), except at a profile that trains
    only on a GPU (:func:`trains_only_on_gpu`) on a machine without one, or where
    ``shipped`` asks for it: then the shipped model, and never a training run.
    """
    from .train import resolve_device, train

    device = resolve_device(device)
    if shipped or trains_only_on_gpu(profile.name, device):
        model, history, entry = shipped_model(profile, variant, causal_gate, corpus.vocab_size, device, root, folder)
        return model, history, artifact_name(model_name(variant, causal_gate), entry["settings"])
    model, history, path = train(profile, variant, corpus, device, causal_gate, progress)
    return model, history, path.parent.name
