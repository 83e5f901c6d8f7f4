"""The artifact store: one folder, each artifact under a key that hashes every setting that influenced it,
so a changed setting never reuses a stale result and an unchanged one is reused; files written whole
(published atomically), verified by SHA-256 sidecars, locked against concurrent writers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import uuid
import warnings
from pathlib import Path

import numpy as np

from .errors import CorruptFile, StoreError

def project_root(start: Path | None = None) -> Path | None:
    """The enclosing attnpod checkout (the folder whose pyproject.toml names attnpod), if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and 'name = "attnpod"' in project.read_text(errors="ignore"):
            return folder
    return None


DIRTY = " + uncommitted changes"  # what a revision adds where the tracked files differ from the commit


def git_revision(folder: Path | None) -> str | None:
    """The commit of the git checkout holding ``folder`` (a short hash), with :data:`DIRTY` where its tracked
    files differ from it; None where ``folder`` is no git checkout (or git is missing)."""
    import subprocess

    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD") if folder is not None else None
    if not commit:
        return None
    return commit + (DIRTY if git("status", "--porcelain", "--untracked-files=no") else "")


def artifacts_root() -> Path:
    """The folder that holds every artifact, as one absolute path for every entry point.

    ``$ATTNPOD_ARTIFACTS`` if set (a relative path is taken from the checkout's
    root, so the CLI at the root and notebooks in ``notebooks/`` share one store);
    else ``artifacts/`` of the enclosing checkout; else a per-user cache.
    A path that exists but is not a folder is a :class:`StoreError`.
    """
    env = os.environ.get("ATTNPOD_ARTIFACTS", "").strip()
    project = project_root()
    if env:
        root = Path(env).expanduser()
        root = (root if root.is_absolute() else (project or Path.cwd()) / root).resolve()
    elif project is not None:
        root = project / "artifacts"
    else:
        import pooch

        root = Path(pooch.os_cache("attnpod")) / "artifacts"
    if root.exists() and not root.is_dir():
        raise StoreError(f"the artifact store {root} is a file, not a folder: point ATTNPOD_ARTIFACTS at a folder")
    return root


# The store's own marker, written when the store is created: `clean` removes only a folder that
# carries it, and in it only the subfolders of KINDS (every artifact lives in one of them).
STORE_MARKER = ".attnpod-store"
KINDS = ("checkpoints", "fields", "analysis", "pruning", "kv_cache", "logs", "pretrained", "bench")


def _read_only(err: OSError) -> bool:
    return err.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def store_root(create: bool = True) -> Path:
    """:func:`artifacts_root`, created with its :data:`STORE_MARKER` when ``create`` (a read-only
    store that exists is used as it is; one that must be created here and cannot is a :class:`StoreError`).

    A store is made only in a folder that is new, empty, or laid out as a store already (its entries
    all :data:`KINDS`: a store made before stores were marked); a folder holding anything else, the
    home folder, the file system's root and the checkout (or a folder holding it) are refused.
    """
    root = artifacts_root()
    if not create:
        return root
    why = unfit_for_a_store(root)
    if why:
        raise StoreError(f"will not make {root} an artifact store: {why}; set ATTNPOD_ARTIFACTS to a new or empty "
                         f"folder")
    marker = root / STORE_MARKER
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            text = json.dumps({"attnpod_store": 1, "created": utc_now()}) + "\n"
            publish(marker, lambda tmp: tmp.write_text(text))
    except OSError as err:
        if not (root.is_dir() and _read_only(err)):
            raise StoreError(f"cannot create the artifact store at {root} ({err.strerror}): set ATTNPOD_ARTIFACTS "
                             f"to a writable folder") from None
    return root


def unfit_for_a_store(root: Path) -> str | None:
    """Why ``root`` may not be (or become) an artifact store, or None: it is the file system's root, the
    home folder, the checkout or a folder above it; or, not yet a store, it holds entries attnpod did
    not make."""
    root = Path(root).resolve()
    checkout = project_root()
    if root == Path(root.anchor):
        return "it is the root of the file system"
    if root == Path.home().resolve():
        return "it is the home folder"
    if checkout is not None and (root == checkout or root in checkout.parents):
        return "it holds the attnpod checkout"
    if root.is_dir() and not is_store(root):
        foreign = sorted(p.name for p in root.iterdir() if p.name not in KINDS)
        if foreign:
            return (f"it already holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} attnpod did not "
                    f"make ({', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''})")
    return None


def utc_now() -> str:
    """The time now, UTC, to the second (ISO 8601): when a store, a shipped file or a result was made."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def is_store(folder: Path) -> bool:
    """True if ``folder`` carries the store marker written by :func:`store_root`."""
    marker = Path(folder) / STORE_MARKER
    try:
        return marker.is_file() and not marker.is_symlink() and json.loads(marker.read_text()).get("attnpod_store") == 1
    except (OSError, ValueError, AttributeError):
        return False


LOG_NAME = re.compile(r"train-[\w.-]+\.log")  # the training logs the store keeps (attnpod.train)


def own_entry(path: Path, kind: str) -> bool:
    """Whether ``path``, in the store's ``kind`` folder, is an entry the store made: a training log by its
    name in ``logs``; elsewhere a folder (not a link) whose name is the hash of the settings it holds
    (:func:`artifact_dir`)."""
    path = Path(path)
    if path.is_symlink():
        return False
    if kind == "logs":
        return path.is_file() and LOG_NAME.fullmatch(path.name) is not None
    try:
        settings = json.loads((path / "settings.json").read_text())
    except (OSError, ValueError):
        return False
    name = path.name.rpartition("-")[0]
    return path.is_dir() and bool(name) and artifact_name(name, settings) == path.name


def store_contents(folder: Path) -> tuple[list[Path], list[Path]]:
    """What :func:`clean_store` removes from the store at ``folder`` (the entries the store made, in its
    :data:`KINDS` folders, then the marker) and what it keeps (everything else there: never a file
    attnpod did not make, nor a link)."""
    folder = Path(folder)
    if not folder.exists():
        return [], []
    if not folder.is_dir():
        raise StoreError(f"{folder} is not a folder; nothing removed")
    if not is_store(folder):
        raise StoreError(f"{folder} is not an attnpod artifact store (it has no {STORE_MARKER} marker); nothing "
                         f"removed. Point ATTNPOD_ARTIFACTS at the store to clean (a store made before stores "
                         f"were marked gets its marker the next time attnpod uses it)")
    remove, keep = [], []
    for kind in KINDS:
        sub = folder / kind
        if sub.is_symlink():
            keep.append(sub)
        elif sub.is_dir():
            for entry in sorted(sub.iterdir()):
                (remove if own_entry(entry, kind) else keep).append(entry)
    return remove + [folder / STORE_MARKER], keep


def clean_store(folder: Path, report=print) -> list[Path]:
    """Remove the store at ``folder``: only the entries it made (:func:`store_contents`, each ``report``-ed
    first), then its kinds' folders and the folder itself where nothing else is left in them; what
    attnpod did not make is ``report``-ed as kept. Returns what was removed."""
    import shutil

    folder = Path(folder)
    removed, kept = store_contents(folder)
    for path in removed:
        report(f"removing {path}")
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    for path in kept:
        report(f"keeping {path}: attnpod did not make it")
    for kind in KINDS:
        sub = folder / kind
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
    if removed and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return removed


def settings_key(settings: dict) -> str:
    """A short stable hash of a JSON-serialisable settings dict."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def artifact_name(name: str, settings: dict) -> str:
    """``<name>-<hash(settings)>``: an artifact's folder name, and a trained model's key in the caches."""
    return f"{name}-{settings_key(settings)}"


def artifact_dir(kind: str, name: str, settings: dict) -> Path:
    """``<root>/<kind>/<name>-<hash(settings)>/``, created, with the settings beside (``kind`` one of
    :data:`KINDS`). In a read-only store, a folder that exists is returned as it is."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; the store holds {KINDS}")
    folder = store_root() / kind / artifact_name(name, settings)
    settings_file = folder / "settings.json"
    if not settings_file.exists():
        text = json.dumps(settings, sort_keys=True, indent=1, default=str)
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
            publish(settings_file, lambda tmp: tmp.write_text(text))
    return folder


class writing:
    """Context manager: an :class:`OSError` while writing under ``where`` becomes a one-line
    :class:`StoreError` that names it (read-only, full, or not a folder) and says ``fix``."""

    def __init__(self, where: Path, what: str = "write to", fix: str = "set ATTNPOD_ARTIFACTS to a writable folder"):
        self.where, self.what, self.fix = Path(where), what, fix

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError):
            reason = err.strerror or type(err).__name__
            hint = (f": it is not writable here; {self.fix}" if _read_only(err)
                    else ": no space left on the device" if err.errno == errno.ENOSPC
                    else ": a file stands where a folder should be" if err.errno in (errno.EEXIST, errno.ENOTDIR)
                    else "")
            raise StoreError(f"cannot {self.what} {self.where} ({reason}){hint}") from None
        return False


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Crash- and concurrency-safe artifacts. Every artifact ``X`` has a sidecar ``X.sha256``
# and a lock file ``X.lock``. Writers and verifying readers hold the lock, so no reader
# sees a half-published pair. A writer publishes in three renames: ``X.sha256.pending``
# (the new digest) appears first, then ``X``, then the pending digest becomes
# ``X.sha256``. A crash between them is repaired on the next access: if ``X`` matches
# the pending digest the publication is completed, else it is rolled back.

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.pending")


def temporary_path(path: Path) -> Path:
    """A temporary name beside ``path`` unique to this process and call."""
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def publish(path: Path, write) -> None:
    """``write(tmp)`` then rename into place: readers see the old file or the new one, never a part."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class artifact_lock:
    """An inter-process lock for one artifact (re-entrant within a process); use as a context manager.

    In a store this process may not write to (a read-only checkout, a shared store),
    no lock file can be made and none is needed: nobody can write there either, so
    reading goes ahead unlocked, and a write fails with a :class:`StoreError`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = None

    def __enter__(self):
        from filelock import FileLock

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), is_singleton=True)
            lock.acquire()
            self._lock = lock
        except OSError as err:
            if not (_read_only(err) and self.path.parent.is_dir()):
                raise StoreError(f"cannot lock {self.path} ({err.strerror or type(err).__name__})") from None
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def sweep_orphans(folder: Path) -> list[Path]:
    """Remove temporary files and folders (:func:`temporary_path`) in ``folder`` whose process is gone: what a
    killed run leaves behind (a half-written ensemble can be many GB). Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob("*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # <name>.<pid>.<hex>.tmp
        if len(parts) == 4 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            try:
                if tmp.is_dir() and not tmp.is_symlink():  # a killed de-quantisation's half-written model
                    import shutil

                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _recover(path: Path) -> None:
    """Finish or roll back a publication a crash interrupted, and remove stray temporary files
    (nothing to do, and nothing done, in a store this process may not write to)."""
    if not os.access(path.parent, os.W_OK):
        return
    pending = _pending(path)
    if pending.is_file():
        digest = pending.read_text().strip()
        if path.is_file() and sha256_file(path) == digest:
            pending.replace(_sidecar(path))
        else:
            pending.unlink()
    for stray in path.parent.glob(f"{path.name}.*.tmp"):
        stray.unlink(missing_ok=True)


def write_verified(path: Path, write) -> None:
    """Write ``path`` with a SHA-256 sidecar, crash- and concurrency-safe: ``write(tmp_path)`` makes the file.

    A crash leaves the previous pair or the new pair (after :func:`is_verified`
    repairs it), never a mismatch; two processes never share a temporary file.
    """
    path = Path(path)
    with artifact_lock(path), writing(path):
        _recover(path)
        sweep_orphans(path.parent)  # what killed runs left here
        tmp = temporary_path(path)
        try:
            write(tmp)
            digest = sha256_file(tmp)
            publish(_pending(path), lambda p: p.write_text(digest + "\n"))
            tmp.replace(path)
            _pending(path).replace(_sidecar(path))
        finally:
            tmp.unlink(missing_ok=True)


def is_verified(path: Path) -> bool | None:
    """True if ``path`` matches its sidecar hash, False if not, None if either is missing."""
    path = Path(path)
    with artifact_lock(path):
        _recover(path)
        sidecar = _sidecar(path)
        if not (path.is_file() and sidecar.is_file()):
            return None
        return sha256_file(path) == sidecar.read_text().strip()


def unverified(path: Path) -> str | None:
    """Why the file at ``path`` cannot be trusted by its sidecar ("it has no SHA-256 record", "its SHA-256 does
    not match its record"), or None when it matches."""
    return {None: "it has no SHA-256 record", False: "its SHA-256 does not match its record"}.get(is_verified(path))


def reusable(path: Path, sound=None) -> bool:
    """True if ``path`` is a verified artifact and ``sound(path)`` holds; a corrupt one is reported and False.

    ``sound`` may also raise :class:`CorruptFile` (a file that cannot be read as what it
    should be, such as a planted pickle): that is reported and False as well. Call it
    holding :func:`artifact_lock` when the artifact is then recomputed, so that two
    processes never compute the same artifact at once.
    """
    state = is_verified(path)
    if state is False:
        warnings.warn(f"{path} is corrupted (hash mismatch); recomputing it", RuntimeWarning, stacklevel=2)
    elif state and sound is not None:
        try:
            fine = sound(path)
        except CorruptFile as err:
            warnings.warn(f"{err}; recomputing it", RuntimeWarning, stacklevel=2)
            return False
        if not fine:
            warnings.warn(f"{path} holds NaN or infinite values, a corrupt cache; recomputing it", RuntimeWarning,
                          stacklevel=2)
            state = False
    return bool(state)


def reused(path: Path, load):
    """The artifact at ``path`` as ``load`` reads it, or None where it must be (re)computed: missing, or
    damaged (hash mismatch, or ``load`` raising :class:`CorruptFile`: reported). Reads the file once."""
    loaded = []
    return loaded[0] if reusable(path, lambda p: loaded.append(load(p)) or True) else None


# ----------------------------------------------------------------------------- result files

def save_npz(path: Path, meta, arrays: dict) -> None:
    """Write ``arrays`` and the JSON ``meta`` as one ``.npz`` with a verified sidecar (:func:`write_verified`)."""
    text = json.dumps(meta)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(text), **arrays)

    write_verified(path, write)


def load_npz(path: Path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a file written by :func:`save_npz`; anything else (truncated, garbled, pickled,
    without its meta) is a :class:`CorruptFile` that names the file. Never unpickles."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeError) as err:
        raise CorruptFile(f"{path} cannot be read as an attnpod result ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:160]})") from None
    if not isinstance(meta, dict):
        raise CorruptFile(f"{path}: its meta is not a JSON object")
    return meta, arrays


def check_arrays(path: Path, arrays: dict, shapes: dict, sizes: dict | None = None,
                 may_be_nan: tuple = ()) -> dict:
    """Check ``arrays`` against ``shapes``: name -> axes, each an int or a letter that must take one
    value throughout (``sizes`` fixes some in advance). Every array must be there, numeric, finite
    (NaN allowed in ``may_be_nan``), with no names beyond these; a mismatch is a :class:`CorruptFile`."""
    sizes = dict(sizes or {})
    if set(arrays) != set(shapes):
        raise CorruptFile(f"{path}: holds arrays {sorted(arrays)}, expected {sorted(shapes)}")
    for name, axes in shapes.items():
        value = arrays[name]
        if value.dtype.kind not in "fiu" or value.ndim != len(axes):
            raise CorruptFile(f"{path}: {name} is {value.dtype} of shape {value.shape}, expected numbers of "
                              f"{len(axes)} axes")
        for axis, (size, want) in enumerate(zip(value.shape, axes)):
            want = sizes.setdefault(want, size) if isinstance(want, str) else want
            if size != want:
                raise CorruptFile(f"{path}: {name} has shape {value.shape}; axis {axis} should be {want}")
        if value.dtype.kind == "f":
            bad = np.isinf(value) if name in may_be_nan else ~np.isfinite(value)
            if bad.any():
                raise CorruptFile(f"{path}: {name} holds NaN or infinite values")
    return sizes
