import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import corpus_file


@pytest.mark.slow
def test_cli_trains_and_analyses_a_smoke_model(tmp_path, monkeypatch):
    """`python -m attnpod analyse` makes the fields and analysis artifacts; a rerun reuses them;
    a corrupted artifact is detected and recomputed with a warning."""
    env = {**os.environ, "ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())}
    cmd = [sys.executable, "-m", "attnpod", "analyse", "--profile", "smoke", "--model", "conv_l4"]

    def run():
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = run()
    assert "dominant scales" in first.stdout
    (npz,) = (tmp_path / "art" / "analysis").glob("*/analysis.npz")
    (fields,) = (tmp_path / "art" / "fields").glob("*/fields.npy")
    assert np.load(fields).shape == (16, 6, 64, 64)
    stamp = npz.stat().st_mtime_ns
    second = run()
    assert npz.stat().st_mtime_ns == stamp and second.stdout.splitlines()[-6:] == first.stdout.splitlines()[-6:]
    with open(npz, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    third = run()
    assert "corrupted" in third.stderr and npz.stat().st_mtime_ns != stamp
