import functools
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
