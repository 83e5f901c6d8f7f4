"""The reader's side: interactive reruns in JupyterLab, standalone figures."""
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import corpus_file

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_lab_opens_a_py_chapter_as_a_notebook_after_a_build(tmp_path):
    """What `make lab` starts, after `make book` has written the executed copies: the chapter's .py source is
    served as a notebook on the project's kernel, though its executed .ipynb beside it is newer."""
    import os
    import shutil

    import jupytext

    sys.path.insert(0, str(ROOT / "book"))
    from execute import unpaired

    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    source = root / "notebooks" / "03_scalograms.py"
    shutil.copy(ROOT / "notebooks" / source.name, source)
    executed = source.with_suffix(".ipynb")  # as book/execute.py writes it, later than the source
    jupytext.write(unpaired(jupytext.read(source)), executed, fmt="ipynb")
    os.utime(executed, (time.time() + 60, time.time() + 60))
    jupyter = Path(sys.executable).with_name("jupyter")
    port, token = _free_port(), "attnpod-test"
    proc = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        for name in (source.name, executed.name):
            url = f"http://127.0.0.1:{port}/api/contents/notebooks/{name}?type=notebook&content=1&token={token}"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=10) as r:
                        model = json.load(r)
                    break
                except urllib.error.HTTPError as err:  # the server answered: Jupytext refused the file
                    pytest.fail(f"JupyterLab refused {name}: {err.read().decode()[-600:]}")
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        pytest.fail("JupyterLab did not serve the chapter: " + proc.stderr.read1().decode()[-2000:])
                    time.sleep(1)
            nb = model["content"]
            assert model["type"] == "notebook"
            assert nb["metadata"]["kernelspec"]["name"] == "attnpod"
            assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_command_line_starts_without_torch_or_matplotlib():
    """Naming the commands and figures imports neither (a command that does not draw never pays for them);
    every named figure has its recipe."""
    code = ("import sys; from attnpod.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    from attnpod.book import FIGURES, _recipes

    assert set(_recipes()) == set(FIGURES)


def test_chapters_draw_every_figure_through_the_registry():
    """No figure recipe lives in a chapter: each calls attnpod.book.figure, as the command line does."""
    import re

    root = Path(__file__).resolve().parents[1] / "notebooks"
    drawn = set()
    for chapter in sorted(root.glob("[0-9][0-9]_*.py")):
        source = chapter.read_text()
        assert not re.search(r"\bplot_[a-z_]+\(|from attnpod.figures import", source), chapter.name
        drawn |= set(re.findall(r'figure\(study, "([a-z_0-9]+)"', source))
    from attnpod.book import FIGURES

    assert drawn == set(FIGURES)  # every registered figure is a chapter's, and every chapter's is registered


def test_the_command_lines_figure_is_the_books(tmp_path, monkeypatch):
    """The same pixels from python -m attnpod figure and from attnpod.book.figure (as a chapter draws it)."""
    import os

    import matplotlib.image

    from attnpod.book import figure
    from attnpod.study import Study

    monkeypatch.setenv("ATTNPOD_DATA", str(corpus_file()))
    out = tmp_path / "cli.png"
    done = subprocess.run([sys.executable, "-m", "attnpod", "figure", "morlet", "--profile", "smoke", "--out",
                           str(out), "--dpi", "80"], env={**os.environ, "ATTNPOD_ARTIFACTS": str(tmp_path / "a")},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    figure(Study.create("smoke", progress=False), "morlet").savefig(tmp_path / "book.png", dpi=80,
                                                                    bbox_inches="tight")
    cli, book = matplotlib.image.imread(out), matplotlib.image.imread(tmp_path / "book.png")
    assert cli.shape == book.shape and (cli == book).all()


@pytest.mark.slow
def test_every_figure_of_the_book_is_written(smoke_book, tmp_path, monkeypatch):
    """Every named figure draws, from the smoke book's own store: what its chapter computed is what the figure
    reads (chapters 09 and 10 on the shipped weights), so nothing is computed twice."""
    import re

    from attnpod.book import FIGURES, figure
    from attnpod.study import Study

    monkeypatch.setenv("ATTNPOD_DATA", str(corpus_file()))
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(smoke_book / "artifacts"))
    study = Study.create("smoke", progress=False)
    on_shipped = study.with_shipped_models()  # as chapters 09 and 10 read them
    for name, what in FIGURES.items():
        chapter = re.search(r"\((?:chapter )?(\d\d)\)$", what)
        out = tmp_path / f"{name}.svg"
        figure(on_shipped if chapter and chapter.group(1) in ("09", "10") else study, name).savefig(out)
        assert out.stat().st_size > 1000, name


@pytest.mark.slow
def test_figure_command_writes_png_pdf_and_svg(tmp_path):
    env = {"ATTNPOD_ARTIFACTS": str(tmp_path / "art"), "ATTNPOD_DATA": str(corpus_file())}
    import os

    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")):
        out = tmp_path / f"fig{suffix}"
        done = subprocess.run([sys.executable, "-m", "attnpod", "figure", "morlet", "--profile", "smoke",
                               "--out", str(out)], env={**os.environ, **env}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert out.read_bytes().startswith(magic)
    bad = subprocess.run([sys.executable, "-m", "attnpod", "figure", "morlet", "--profile", "smoke", "--out",
                          str(tmp_path / "fig.gif")], env={**os.environ, **env}, capture_output=True, text=True)
    assert bad.returncode == 2 and "suffix" in bad.stderr


# ----------------------------------------------------------------------------- legible figures

# Machado, Oliveira & Fernandes (2009), severity 1: what a protanope, deuteranope and tritanope see, in linear RGB
COLOUR_VISION = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def _seen_lab(colour: str, vision):
    """CIELAB (D65) of ``colour`` as seen under ``vision`` (a 3×3 matrix on linear RGB)."""
    import numpy as np
    from matplotlib.colors import to_rgb

    c = np.asarray(to_rgb(colour))
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ np.clip(
        np.asarray(vision) @ linear, 0, 1) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def palette_distances(colours: dict) -> dict:
    """The smallest CIELAB distance between two of ``colours``, and agree's from disagree's, per vision."""
    import itertools

    import numpy as np

    out = {}
    for name, vision in {"typical": np.eye(3), **COLOUR_VISION}.items():
        seen = {k: _seen_lab(c, vision) for k, c in colours.items()}
        pairs = [float(np.linalg.norm(seen[a] - seen[b])) for a, b in itertools.combinations(seen, 2)]
        out[name] = (min(pairs), float(np.linalg.norm(seen["agree"] - seen["disagree"])))
    return out


def test_the_verdict_palette_is_told_apart_without_red_green_vision():
    """Under each simulated dichromacy every two verdict colours differ by ΔE ≥ 15 and agree and disagree by
    ΔE ≥ 60; the red and green the grid once used fall to ΔE 21 for a deuteranope."""
    from attnpod.figures import OTHER_VERDICT, VERDICT_COLOURS

    for vision, (closest, apart) in palette_distances({**VERDICT_COLOURS, "other": OTHER_VERDICT}).items():
        assert closest >= 15 and apart >= 60, (vision, closest, apart)
    old = palette_distances({"agree": "#4daf4a", "disagree": "#e41a1c"})
    assert old["deuteranopia"][1] < 60  # the check can fail: the old pair does


def test_coherency_maps_leave_the_future_keys_unpainted():
    """Above the diagonal (keys after the query) a causal map has no coherence to show: those cells are
    masked, drawn in the 'bad' colour, whatever value the wavelet's spread left there."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from attnpod.figures import causal_only, plot_coherency

    gamma = np.ones((6, 6))
    shown = causal_only(gamma)
    assert shown.mask.sum() == 15 and not shown.mask[np.tril_indices(6)].any()
    fig = plot_coherency({("base", 0): gamma}, 4.0)
    image = fig.axes[0].get_images()[0]
    drawn = image.get_array()
    assert np.ma.is_masked(drawn) and drawn.mask[0, 5] and not drawn.mask[5, 0]


def test_scalogram_axes_are_in_tokens():
    """The scale axis reads in tokens (2, 4, …, 64) though the image is drawn in log₂ a; lags in tokens."""
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace

    import numpy as np

    from attnpod.figures import plot_scalogram_grid
    from attnpod.wavelet import paper_scales

    scales = paper_scales()
    T = 16
    result = SimpleNamespace(scales=scales, scalogram=np.random.default_rng(0).random((2, len(scales), T)) + 0.1,
                             dominant_index=np.zeros((2, 3), dtype=int))
    fig = plot_scalogram_grid({"base": result})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "2" and labels[-1] == "64" and "tokens" in ax.get_ylabel()
    assert "tokens" in fig.axes[1].get_xlabel() or "tokens" in ax.get_xlabel()
