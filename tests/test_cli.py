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
    shipped = subprocess.run([sys.executable, "-m", "attnpod", "ship", "--profile", "smoke", "--model", "conv_l4",
                              "--to", str(tmp_path / "ship")], env=env, capture_output=True, text=True)
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    from attnpod.shipped import read_manifest

    (entry,) = read_manifest(tmp_path / "ship")["entries"]
    assert entry["file"] == "conv_l4-seed42.safetensors" and entry["steps"] == 30 and entry["device"] == "cpu"


def test_paper_profile_without_a_gpu_stops_at_once_instead_of_training(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _cli("train", "--profile", "paper", "--model", "ega1", "--seed", "12345",
                env={"ATTNPOD_ARTIFACTS": str(tmp_path), "ATTNPOD_DATA": str(corpus_file())})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "no shipped paper-profile checkpoint for ega1, seed 12345" in lines[0] and "--device cuda" in lines[0]
    assert not list(tmp_path.rglob("checkpoint.pt"))


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "attnpod", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, message", [
    (["--snapshots", "0"], "n_snapshots"),
    (["--device", "tpu"], "device 'tpu'"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--data", "/"], "is a directory"),
])
def test_known_errors_are_one_line_without_traceback(args, message, tmp_path):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    done = _cli("analyse", "--profile", "smoke", "--model", "base", *args,
                env={"ATTNPOD_ARTIFACTS": str(tmp_path), "ATTNPOD_DATA": str(corpus_file())})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.rglob("checkpoint.pt"))  # stopped before any work
    debug = _cli("--debug", "analyse", "--profile", "smoke", "--model", "base", *args,
                 env={"ATTNPOD_ARTIFACTS": str(tmp_path), "ATTNPOD_DATA": str(corpus_file())})
    assert "Traceback" in debug.stderr


def test_relative_artifact_root_is_one_place_for_cli_and_notebooks(tmp_path, monkeypatch):
    """A relative $ATTNPOD_ARTIFACTS is taken from the checkout's root, wherever the process runs."""
    from attnpod.store import artifacts_root

    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "attnpod"\n')
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", "store")
    monkeypatch.chdir(root)
    at_root = artifacts_root()
    monkeypatch.chdir(root / "notebooks")
    assert artifacts_root() == at_root == (root / "store").resolve()


def test_main_gives_back_the_callers_sigterm_handler():
    import signal

    from attnpod.cli import main

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["clean", "--dry-run"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_real_model_settings_are_refused_before_any_work(capsys):
    from attnpod.cli import main

    assert main(["real-model", "--model", "gemma3", "--windows", "1"]) == 2
    err = capsys.readouterr().err
    assert "--windows must be at least 2" in err and err.count("\n") == 1


def test_version_license_and_citation_say_the_same_version():
    """``--version``, the package, pyproject and CITATION.cff name one version; the licence pyproject names is
    the LICENSE file's."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import attnpod

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "attnpod", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"attnpod {attnpod.__version__}"
    project = (root / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(attnpod.__version__)}"$', project, re.M)
    assert f'version: "{attnpod.__version__}"' in (root / "CITATION.cff").read_text()
    assert 'license = "MIT"' in project and (root / "LICENSE").read_text().startswith("MIT License")


def test_a_figure_that_would_train_says_so_before_it_starts(tmp_path, monkeypatch, capsys):
    """At a profile whose models are not in the store, ``figure`` warns in one line before the training, and
    never for a figure that needs no model; every command's help page says what it does."""
    from attnpod import book
    from attnpod.cli import build_parser, main
    from tests.conftest import corpus_file

    assert book.WITHOUT_MODELS <= set(book.FIGURES)

    class Drawn(Exception):
        pass

    def drawn(study, name, **kwargs):
        raise Drawn(name)

    monkeypatch.setattr(book, "figure", drawn)
    monkeypatch.setenv("ATTNPOD_DATA", str(corpus_file()))
    for name, warns in (("scalograms", True), ("morlet", False)):
        with pytest.raises(Drawn):
            main(["figure", name, "--profile", "laptop", "--out", str(tmp_path / "f.png")])
        err = capsys.readouterr().err
        assert ("not trained in the store yet" in err) is warns, err
    for name, command in build_parser()._subparsers._group_actions[0].choices.items():
        assert command.description, name
