import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_artifacts(tmp_path, monkeypatch):
    """Each test writes artifacts to its own folder."""
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "artifacts"))
    torch.manual_seed(0)


@functools.cache
def _corpus() -> Path | str:
    from attnpod.data import DataError, corpus_path

    try:
        return corpus_path()  # $ATTNPOD_DATA (CI points it at the shared copy), else downloaded as the book does
    except DataError as err:
        return str(err)


def corpus_file() -> Path:
    """The corpus every data test and the smoke book read. Without one (no $ATTNPOD_DATA, no network) the
    test fails and says so: `make test` never passes by skipping the book."""
    found = _corpus()
    if isinstance(found, str):
        pytest.fail(f"no corpus for the data tests and the smoke book: {found}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def corpus():
    from attnpod.data import load_corpus

    return load_corpus(corpus_file())


# ----------------------------------------------------------------------------- the smoke book, built once a session

ROOT = Path(__file__).resolve().parents[1]


def copy_book(tmp_path) -> Path:
    """The book's sources in a fresh folder (no executed notebooks, no status page), with the smoke seeds."""
    book = tmp_path / "book_root"
    book.mkdir()
    for name in ("_config.yml", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "book", book / "book", ignore=shutil.ignore_patterns("status.md", "_build", "__pycache__"))
    # the smoke profile's shipped training seeds, which chapters 01, 08, 11 read (the laptop's are not needed)
    shutil.copytree(ROOT / "checkpoints" / "smoke", book / "checkpoints" / "smoke", ignore=shutil.ignore_patterns("*.lock"))
    # the real model's cache grid, which chapter 14 reads at every profile (its manifest lists the rest unshipped),
    (book / "checkpoints" / "laptop" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "checkpoints" / "laptop" / "manifest.json", book / "checkpoints" / "laptop" / "manifest.json")
    # ... and Gemma's analyses, which the Gemma chapter reads at every profile
    for pattern in ("real_kv_cache-*.npz", "real_kv_long-*.npz", "real_replicates-*.npz", "real_model-gemma-*.npz"):
        for result in (ROOT / "checkpoints" / "laptop" / "results").glob(pattern):
            shutil.copy(result, book / "checkpoints" / "laptop" / "results" / result.name)
    (book / "notebooks").mkdir()
    for nb in (ROOT / "notebooks").glob("*.py"):
        shutil.copy(nb, book / "notebooks" / nb.name)
    return book


def book_env(book: Path) -> dict:
    """The environment of a test's book build: its own artifact store, never the developer's."""
    import os

    return {**os.environ, "ATTNPOD_ARTIFACTS": str(book / "artifacts")}


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> Path:
    """Every chapter executed at the smoke profile and the book built with -W; the book root."""
    corpus_file()  # skip cleanly without data
    book = copy_book(tmp_path_factory.mktemp("smoke"))
    subprocess.run([sys.executable, str(ROOT / "book" / "execute.py"), "--profile", "smoke", "--root", str(book)],
                   check=True, env=book_env(book))
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(book), "--warningiserror", "--keep-going"], check=True)
    return book
