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

import hashlib
import json
import math
from pathlib import Path, PurePosixPath

import torch

from .config import MODELS, model_name
from .errors import MissingCheckpoint
from .store import (artifact_lock, artifact_name, git_revision, project_root, publish, sha256_file, temporary_path,
                    utc_now, writing)
from .data import random_batch
from .models import GPT, GPTConfig
from .train import CheckpointError, History, training_settings

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: every entry carries its check loss; file names are fixed by what an entry holds
WEIGHTS_FORMAT = "attnpod-shipped-2"  # the safetensors header names the model it holds
MAX_BYTES = 10_000_000  # a file of at most 10 MB: the repository stays light
GPU_ONLY_PROFILES = ("paper",)
# the real model's analyses (attnpod.pretrained) and its cache experiment (attnpod.experiments.llmcache) last
RESULT_KINDS = ("pruning", "kv_cache", "real_model", "real_kv_cache", "real_kv_long", "real_replicates")
# The weights' own fingerprint: their mean loss on CHECK_WINDOWS fixed validation windows (float32 on a
# CPU), written when shipped and recomputed on every load. Another model, or these weights under another
# variant, misses it by far more than CHECK_TOLERANCE; the same weights on another CPU agree to ~1e-6.
CHECK_WINDOWS, CHECK_SEED, CHECK_TOLERANCE = 32, 20260606, 1e-3
# The training record's final validation loss and the check loss are two samples of the same split
# (and the record may be bf16 on a GPU): they must agree within this many nats, or the record is
# not this model's. At the smoke size the two differ by a few hundredths (see the tests).
RECORD_TOLERANCE = 0.2


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
    """The only name a shipped model's weights may have: what the entry holds, in words."""
    return f"{model_name(variant, causal_gate)}-seed{seed}.safetensors"


def result_name(kind: str, model: str, seed: int) -> str:
    """The only name a shipped experiment result may have, under ``results/``."""
    return f"results/{kind}-{model}-seed{seed}.npz"


def trains_only_on_gpu(profile_name: str, device) -> bool:
    """True where a profile's models must come from shipped files: the paper profile on a machine without CUDA."""
    return profile_name in GPU_ONLY_PROFILES and torch.device(device).type != "cuda"


# ----------------------------------------------------------------------------- the manifest, checked

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value)


_TEXT, _DICT = (lambda v: isinstance(v, str)), (lambda v: isinstance(v, dict))
_COMMON = {"file": _TEXT, "sha256": lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
           "bytes": _integer, "seed": lambda v: _integer(v) and 0 <= v < 2**32, "settings": _DICT, "device": _TEXT,
           "torch": _TEXT, "date": _TEXT}
_ENTRY = _COMMON | {
    "variant": lambda v: v in MODELS, "causal_gate": lambda v: isinstance(v, bool), "steps": _integer,
    "train_loss": _number, "val_loss": _number, "seconds": _number, "tokens": _integer,
    "tokens_per_s": lambda v: v is None or _number(v), "config": _DICT,
    "curve": lambda v: (isinstance(v, dict) and set(v) == {"step", "train", "val", "per_step"}
                        and all(_numbers(x) for x in v.values()) and len(v["step"]) == len(v["train"]) == len(v["val"])),
    "check": lambda v: (isinstance(v, dict) and set(v) == {"windows", "seed", "val_loss"} and _integer(v["windows"])
                        and _integer(v["seed"]) and _number(v["val_loss"]))}
_RESULT = _COMMON | {"kind": lambda v: v in RESULT_KINDS, "model": _TEXT}
# What an entry may hold beyond its schema: the code it was made with (entries shipped before it was recorded
# lack it, and still load).
_OPTIONAL = {"code": _TEXT}


def code_revision() -> str:
    """The code a shipped file is made with: ``$ATTNPOD_CODE_REVISION`` where set (a machine that was handed a
    copy of the working tree without its git history), else the package's checkout's commit, "+ uncommitted
    changes" where its tracked files differ (:func:`attnpod.store.git_revision`); "unknown" outside a git
    checkout."""
    import os

    given = os.environ.get("ATTNPOD_CODE_REVISION", "").strip()
    return given or git_revision(project_root(Path(__file__).resolve().parent)) or "unknown"


def _problem(entry, schema: dict) -> str | None:
    """What is wrong with one manifest entry, or None: its keys, their types, and whether its file
    name says what it holds."""
    if not isinstance(entry, dict):
        return "is not an object"
    missing, extra = sorted(set(schema) - set(entry)), sorted(set(entry) - set(schema) - set(_OPTIONAL))
    if missing or extra:
        return f"has keys missing {missing} / unexpected {extra}"
    for key, fits in (schema | {k: f for k, f in _OPTIONAL.items() if k in entry}).items():
        if not fits(entry[key]):
            return f"{key} = {str(entry[key])[:60]!r} is not valid"
    if schema is _RESULT:
        expected = result_name(entry["kind"], entry["model"], entry["seed"])
    else:
        expected = file_name(entry["variant"], entry["causal_gate"], entry["seed"])
        config = entry["config"]
        if (config.get("variant"), config.get("causal_gate")) != (entry["variant"], entry["causal_gate"]):
            return f"its config is {config.get('variant')!r} (causal gate {config.get('causal_gate')}), not the entry's"
        if entry["settings"].get("model") != config:
            return "its config differs from the config in its training settings"
        protocol = entry["settings"].get("protocol")
        if not isinstance(protocol, dict) or protocol.get("seed") != entry["seed"]:
            return f"its training settings are not seed {entry['seed']}'s"
        curve = entry["curve"]
        if not curve["step"] or (curve["step"][-1], curve["val"][-1], curve["train"][-1]) != (
                entry["steps"], entry["val_loss"], entry["train_loss"]):
            return "its steps and final losses differ from its loss curves"
    if entry["file"] != expected:
        return f"names file {entry['file'][:80]!r}; an entry for what it claims to hold names {expected!r}"
    return None


def read_manifest(folder: Path) -> dict:
    """``{"format": 2, "entries": [...], "results": [...]}``, every entry checked (keys, types, and a file name
    that says what it holds); an empty manifest if the folder has none. A damaged manifest is a one-line
    :class:`CheckpointError` that names it."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "entries": [], "results": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read as JSON ({' '.join(str(err).split())[:120]}): restore it "
                              f"(git checkout -- {path})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{path}: manifest format {str(found)[:40]!r}, this attnpod reads {MANIFEST_FORMAT}")
    manifest.setdefault("results", [])
    for key, schema in (("entries", _ENTRY), ("results", _RESULT)):
        if not isinstance(manifest.get(key), list):
            raise CheckpointError(f"{path}: {key!r} must be a list")
        for i, entry in enumerate(manifest[key]):
            problem = _problem(entry, schema)
            if problem:
                raise CheckpointError(f"{path}: {key[:-1] if key == 'results' else 'entry'} {i} {problem}")
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1)
    publish(folder / MANIFEST, lambda tmp: tmp.write_text(text + "\n"))


def _inside(folder: Path, name: str) -> Path:
    """``folder/name`` for a relative path that stays inside ``folder`` (no ``..``, not absolute, no link out)."""
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise CheckpointError(f"{Path(folder) / MANIFEST}: file {name[:80]!r} is not a relative path inside the folder")
    path = Path(folder) / rel
    if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(Path(folder).resolve()):
        raise CheckpointError(f"{path} links out of {folder}: a shipped file must lie in the manifest's folder")
    return path


def rebuild_command(folder: Path, entry: dict) -> str:
    """The command that makes a manifest entry's file again (profile: the folder's name)."""
    profile, seed = Path(folder).name, entry["seed"]
    device = " --device cuda" if profile in GPU_ONLY_PROFILES else ""
    if "kind" in entry:
        return f"python -m attnpod experiments --profile {profile} --seed {seed}{device}"
    model = f"--profile {profile} --seed {seed} --model {model_name(entry['variant'], entry['causal_gate'])}"
    return f"python -m attnpod train {model}{device} && python -m attnpod ship {model}"


def _verified(folder: Path, entry: dict) -> Path:
    """The path of a manifest entry's file, after checking it against the entry's SHA-256."""
    path = _inside(folder, entry["file"])
    remedy = f"restore it (git checkout -- {path}) or rebuild it: {rebuild_command(folder, entry)}"
    if not path.is_file():
        raise MissingCheckpoint(f"{path} is listed in the manifest but missing: {remedy}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{path}: its SHA-256 does not match the manifest's; the file is corrupted or was "
                              f"replaced: {remedy}")
    return path


def _shipping(folder: Path):
    """Context: a failure to write into the shipped folder is one line that names it."""
    return writing(folder, "ship into", "choose a writable folder with --to")


def _readable(path: Path) -> None:
    """A shipped file is readable like the rest of a checkout (not the 0600 safetensors writes)."""
    path.chmod(0o644)


# ----------------------------------------------------------------------------- weights

def _tied_names(state: dict) -> set[str]:
    """Names whose tensor shares storage with an earlier name (stored once)."""
    seen, tied = set(), set()
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            tied.add(name)
        seen.add(key)
    return tied


@torch.no_grad()
def check_loss(model: GPT, corpus) -> float:
    """The model's mean loss on :data:`CHECK_WINDOWS` fixed validation windows, in float32 on a CPU."""
    model = model.to("cpu").float().eval()
    gen = torch.Generator().manual_seed(CHECK_SEED)
    x, y = random_batch(corpus.split("val"), CHECK_WINDOWS, model.config.block_size, gen)
    return float(model(x, y)[1])


def _read_weights(path: Path, cfg: GPTConfig, seed: int, protocol: dict | None = None) -> GPT:
    """The model of ``cfg`` with the weights in ``path``, which must be exactly that model's: the header
    names it, its training seed (``seed``) and, where it records them, its profile's settings
    (``protocol``); every tensor name, shape and kind fits; every value is finite."""
    from safetensors import safe_open

    model = GPT(cfg)
    state = model.state_dict()
    wanted = {k: v for k, v in state.items() if k not in _tied_names(state)}
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            names = set(fh.keys())
            tensors = {k: fh.get_tensor(k) for k in names & set(wanted)}
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{path} cannot be read as safetensors ({type(err).__name__}: "
                              f"{' '.join(str(err).split())[:120]})") from None
    if header.get("format") != WEIGHTS_FORMAT or header.get("model") != json.dumps(cfg.as_dict(), sort_keys=True):
        raise CheckpointError(f"{path} does not hold {model_name(cfg.variant, cfg.causal_gate)} at these sizes "
                              f"(its header names another model or format)")
    if header.get("seed") != str(seed):
        raise CheckpointError(f"{path} holds the weights of seed {str(header.get('seed'))[:12]}, not of seed {seed}: "
                              f"restore it (git checkout -- {path})")
    if "protocol" in header and (protocol is None or header["protocol"] != json.dumps(protocol, sort_keys=True)):
        raise CheckpointError(f"{path} was trained with other profile settings than its manifest entry says: "
                              f"restore it (git checkout -- {path})")
    if names != set(wanted):
        raise CheckpointError(f"{path}: tensors missing {sorted(set(wanted) - names)[:3]}, unexpected "
                              f"{sorted(names - set(wanted))[:3]}")
    for name, tensor in tensors.items():
        want = wanted[name]
        kind_fits = tensor.is_floating_point() if want.is_floating_point() else tensor.dtype == want.dtype
        if tuple(tensor.shape) != tuple(want.shape) or not kind_fits:
            raise CheckpointError(f"{path}: {name} is {tensor.dtype} {tuple(tensor.shape)}, the model needs "
                                  f"{want.dtype} {tuple(want.shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values")
    model.load_state_dict({k: v.to(wanted[k].dtype) for k, v in tensors.items()}, strict=False)
    return model


def ship(model: GPT, history: History, settings: dict, seed: int, folder: Path, corpus, device: str = "") -> dict:
    """Write ``model``'s weights (float16) and its manifest entry into ``folder``; returns the entry.

    ``settings`` are the training settings (:func:`attnpod.train.training_settings`);
    the entry carries the float16 weights' :func:`check_loss` on ``corpus``, and a
    record whose final validation loss misses it by more than :data:`RECORD_TOLERANCE`
    is refused. An entry for the same file is replaced.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    with _shipping(folder):
        folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    name = file_name(cfg.variant, cfg.causal_gate, seed)
    if settings.get("protocol", {}).get("seed") != seed:
        raise CheckpointError(f"{name}: its training settings are seed {settings.get('protocol', {}).get('seed')}'s")
    if not history.step:
        raise CheckpointError(f"{name}: the model has no training record to ship")
    state = model.state_dict()
    tied = _tied_names(state)
    weights = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items() if k not in tied}
    path = folder / name
    header = {"format": WEIGHTS_FORMAT, "model": json.dumps(cfg.as_dict(), sort_keys=True), "seed": str(seed),
              "protocol": json.dumps(settings["protocol"], sort_keys=True)}
    with artifact_lock(folder / MANIFEST), _shipping(folder):
        tmp = temporary_path(path)  # checked before it takes the name; a killed run's is swept later
        try:
            save_file(weights, str(tmp), metadata=header)
            size = tmp.stat().st_size
            if size > MAX_BYTES:
                raise CheckpointError(f"{name} would be {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
            check = check_loss(_read_weights(tmp, cfg, seed, settings["protocol"]), corpus)
            if abs(check - history.val[-1]) > RECORD_TOLERANCE:
                raise CheckpointError(f"{name}: the record's final validation loss {history.val[-1]:.4f} is not this "
                                      f"model's (its check windows give {check:.4f}); not shipped")
            _readable(tmp)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        seconds = history.seconds
        entry = {
            "file": name, "sha256": sha256_file(path), "bytes": size, "variant": cfg.variant,
            "causal_gate": cfg.causal_gate, "seed": seed, "steps": history.step[-1],
            "train_loss": history.train[-1], "val_loss": history.val[-1],
            "curve": {"step": history.step, "train": history.train, "val": history.val,
                      "per_step": [round(x, 4) for x in history.curve]},
            "seconds": seconds, "tokens": history.tokens,
            "tokens_per_s": history.tokens / seconds if seconds > 0 else None,
            "config": cfg.as_dict(), "settings": settings, "device": device or "unknown",
            "torch": torch.__version__, "date": utc_now(), "code": code_revision(),
            "check": {"windows": CHECK_WINDOWS, "seed": CHECK_SEED, "val_loss": check},
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


def result_misfit(result, settings: dict, windows: int) -> str | None:
    """What in an experiment ``result`` disagrees with the ``settings`` it should come from, or None:
    the stored settings (measured ones aside), the budgets, the random draws, and the number of
    evaluation ``windows``."""
    stored = {k: result.meta.get(k) for k in _comparable(settings)}
    if stored != _comparable(settings):
        return "its stored settings differ"
    if result.budgets.tolist() != list(settings["budgets"]) or len(result.random_losses) != settings["n_random"]:
        return f"it has budgets {result.budgets.tolist()} and {len(result.random_losses)} random draws"
    if result.baseline.shape[0] != windows:
        return f"it has {result.baseline.shape[0]} evaluation windows, the settings ask for {windows}"
    return None


def check_replaceable(kind: str, model: str, seed: int, settings: dict, folder: Path, replace: bool = False) -> None:
    """A one-line :class:`CheckpointError` if shipping this result would replace one shipped with other
    settings (the measured ones aside) and ``replace`` was not asked for: a trial run never overwrites
    what the book reads."""
    name = result_name(kind, model, seed)
    for entry in read_manifest(Path(folder))["results"]:
        if entry["file"] == name and _comparable(entry["settings"]) != _comparable(settings) and not replace:
            differ = sorted(k for k in {*_comparable(entry["settings"]), *_comparable(settings)}
                            if entry["settings"].get(k) != settings.get(k))
            raise CheckpointError(f"{Path(folder) / name} was shipped with other settings ({', '.join(differ[:4])} "
                                  f"differ): it is what the book reads; pass --replace to replace it")


def ship_result(kind: str, model: str, seed: int, source: Path, settings: dict, folder: Path,
                device: str = "", replace: bool = False) -> dict:
    """Copy an experiment's result file (``kind`` "pruning" or "kv_cache", of ``model`` at ``seed``)
    into ``folder/results/`` and list it in the manifest; returns the entry (one per kind, model, seed).
    An entry shipped with other settings is replaced only with ``replace`` (:func:`check_replaceable`)."""
    if kind not in RESULT_KINDS:
        raise CheckpointError(f"unknown result kind {kind!r}; one of {RESULT_KINDS}")
    folder = Path(folder)
    name = result_name(kind, model, seed)
    check_replaceable(kind, model, seed, settings, folder, replace)
    data = Path(source).read_bytes()
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{name} would be {len(data) / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
    with _shipping(folder):
        (folder / "results").mkdir(parents=True, exist_ok=True)
    with artifact_lock(folder / MANIFEST), _shipping(folder):
        def write(tmp):
            tmp.write_bytes(data)
            _readable(tmp)

        publish(folder / name, write)
        entry = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "kind": kind,
                 "model": model, "seed": seed, "settings": settings, "device": device or "unknown",
                 "torch": torch.__version__, "date": utc_now(), "code": code_revision()}
        manifest = read_manifest(folder)
        manifest["results"] = [e for e in manifest["results"] if e["file"] != name] + [entry]
        manifest["results"].sort(key=lambda e: (e["seed"], e["kind"], e["model"]))
        _write_manifest(folder, manifest)
    return entry


def shipped_result(profile_name: str, kind: str, model: str, settings: dict, root: Path | None = None,
                   folder: Path | None = None, option: str = "") -> Path:
    """The verified file of a shipped experiment result run with these settings (the measured ones
    aside: the file brings its own), or :class:`MissingCheckpoint` saying how to compute it (``option``: a real
    model's ``--model`` option, :attr:`attnpod.pretrained.PretrainedModel.option`). ``folder`` (else
    ``checkpoints/<profile>/`` of ``root`` or of the checkout) holds the manifest."""
    folder = shipped_root(profile_name, root, folder)
    for entry in read_manifest(folder)["results"]:
        if ((entry["kind"], entry["model"], entry["seed"]) == (kind, model, settings.get("seed"))
                and _comparable(entry["settings"]) == _comparable(settings)):
            return _verified(folder, entry)
    how = (f"python -m attnpod real-model{option} --windows {settings.get('n_windows')} --ship" if kind == "real_model" else
           "about 53 minutes on 2 CPU cores: python -m attnpod experiments --real-model --ship"
           if kind == "real_kv_cache" else
           f"{'about 120' if option else 'about 95'} minutes on 2 CPU cores: python -m attnpod experiments --real-model "
           f"--long{option} --ship" if kind == "real_kv_long" else
           "about 35 minutes on 2 CPU cores: python -m attnpod experiments --real-model --replicates --ship"
           if kind == "real_replicates" else
           f"it takes hours on a CPU at this size. On a GPU: python -m attnpod experiments --profile "
           f"{profile_name} --seed {settings.get('seed')} --device cuda (after the models are shipped)")
    raise MissingCheckpoint(f"no shipped {profile_name}-profile {kind} result for {model}, seed "
                            f"{settings.get('seed')}, with these settings, in {folder}: {how}")


def find(folder: Path, settings: dict, seed: int) -> dict | None:
    """The manifest entry trained with exactly these settings and seed, if shipped."""
    for entry in read_manifest(folder)["entries"]:
        if entry["seed"] == seed and entry["settings"] == settings:
            return entry
    return None


def shipped_entry(profile, variant: str, causal_gate: bool, vocab_size: int, folder: Path) -> dict | None:
    """The manifest entry in ``folder`` of this profile's model (variant, gate) at its seed, if shipped."""
    from .train import model_config

    return find(folder, training_settings(profile, model_config(profile, variant, vocab_size, causal_gate)),
                profile.seed)


def history_of(entry: dict) -> History:
    """The training record of a shipped model, as the book's :class:`~attnpod.train.History`."""
    curve = entry["curve"]
    return History(step=list(curve["step"]), train=list(curve["train"]), val=list(curve["val"]),
                   curve=list(curve["per_step"]), seconds=float(entry["seconds"]), tokens=int(entry["tokens"]))


def load_shipped(folder: Path, entry: dict, corpus, device="cpu") -> GPT:
    """The shipped model of ``entry`` in float32, after checking its file against the manifest's SHA-256,
    its tensors against the entry's model, and its loss on the check windows against the entry's."""
    path = _verified(folder, entry)
    try:
        cfg = GPTConfig(**entry["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the manifest's config is invalid ({err})") from None
    model = _read_weights(path, cfg, entry["seed"], entry["settings"].get("protocol"))
    if getattr(corpus, "vocab_size", cfg.vocab_size) != cfg.vocab_size:
        raise CheckpointError(f"{path}: a vocabulary of {cfg.vocab_size}, the corpus has {corpus.vocab_size}")
    loss = check_loss(model, corpus)
    if abs(loss - entry["check"]["val_loss"]) > CHECK_TOLERANCE:
        raise CheckpointError(f"{path}: these weights give {loss:.4f} on the check windows, the manifest says "
                              f"{entry['check']['val_loss']:.4f}: the manifest does not describe this file")
    if abs(entry["check"]["val_loss"] - entry["val_loss"]) > RECORD_TOLERANCE:
        raise CheckpointError(f"{path}: the manifest's final validation loss {entry['val_loss']:.4f} is not these "
                              f"weights' (check windows: {loss:.4f}, tolerance {RECORD_TOLERANCE})")
    return model.to(device).eval()


def shipped_model(profile, variant: str, causal_gate: bool, corpus, device="cpu",
                  root: Path | None = None, folder: Path | None = None) -> tuple[GPT, History, dict]:
    """The shipped model for this profile, variant, gate and seed, or :class:`MissingCheckpoint` saying what to do."""
    from .train import model_config

    cfg = model_config(profile, variant, corpus.vocab_size, causal_gate)
    folder = shipped_root(profile.name, root, folder)
    entry = shipped_entry(profile, variant, causal_gate, corpus.vocab_size, folder)
    if entry is None:
        gate = " --causal-gate" if causal_gate else ""
        why = (f"the {profile.name} profile is not trained on a CPU (hours per model). On a GPU: "
               if profile.name in GPU_ONLY_PROFILES else "train it (minutes at this size): ")
        raise MissingCheckpoint(
            f"no shipped {profile.name}-profile checkpoint for {variant}{' (causal gate)' if causal_gate else ''}, "
            f"seed {profile.seed}, in {folder}: {why}python -m attnpod train --profile {profile.name} --model "
            f"{variant}{gate} --seed {profile.seed}{' --device cuda' if profile.name in GPU_ONLY_PROFILES else ''}, "
            f"then python -m attnpod ship with the same options")
    if entry["config"] != cfg.as_dict() or entry["steps"] != profile.steps:
        raise CheckpointError(f"{folder / MANIFEST}: the entry for {entry['file']} holds another model than its "
                              f"settings say (config or steps differ from profile {profile.name!r})")
    return load_shipped(folder, entry, corpus, device), history_of(entry), entry


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
        model, history, entry = shipped_model(profile, variant, causal_gate, corpus, device, root, folder)
        return model, history, artifact_name(model_name(variant, causal_gate), entry["settings"])
    model, history, path = train(profile, variant, corpus, device, causal_gate, progress)
    return model, history, path.parent.name
