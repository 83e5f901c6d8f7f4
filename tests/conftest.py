import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_artifacts(tmp_path, monkeypatch):
    """Each test writes artifacts to its own folder."""
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path / "artifacts"))
    torch.manual_seed(0)


def corpus_file() -> Path:
    """The corpus named by ATTNPOD_DATA (CI points it at the shared copy)."""
    path = os.environ.get("ATTNPOD_DATA")
    if not path:
        pytest.skip("ATTNPOD_DATA is not set: point it at TinyShakespeare's input.txt to run data tests")
    return Path(path)


@pytest.fixture(scope="session")
def corpus():
    from attnpod.data import load_corpus

    return load_corpus(corpus_file())
