"""Every chapter runs at the smoke profile through papermill, and the book builds with -W."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import book_env, copy_book, corpus_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_book_builds(smoke_book):
    book = smoke_book
    for executed in (book / "notebooks").glob("*.ipynb"):
        for cell in json.loads(executed.read_text())["cells"]:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", (executed.name, output.get("evalue"))
    status = (book / "book" / "status.md").read_text()
    assert "smoke" in status and "**wall time** (" in status
    assert status.count("| `notebooks/") == len(list((book / "notebooks").glob("*.py")))
    html = book / "_build" / "html"
    assert (html / "index.html").is_file()
    chapter = (html / "notebooks" / "01_models_and_training.html").read_text()
    assert "Table 1" in chapter and "<img" in chapter
    assert (html / "_static" / "mathjax" / "tex-svg.js").is_file()
    assert "cdn.jsdelivr" not in chapter and "_static/mathjax/tex-svg.js" in chapter


@pytest.mark.slow
def test_smoke_book_passes_the_browser_check(smoke_book, tmp_path):
    """Every page in headless Chromium: loads, no JavaScript error or failed request, images decode,
    equations typeset offline, no unresolved glue."""
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    done = subprocess.run([sys.executable, str(ROOT / "book" / "check_browser.py"), str(smoke_book / "_build" / "html"),
                           "--screenshot", str(tmp_path / "chapter.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert (tmp_path / "chapter.png").stat().st_size > 10_000


def test_browser_check_fails_on_raw_tex_a_broken_image_and_a_cdn(tmp_path):
    """The check can fail: a page with raw TeX, a missing image and an unreachable script."""
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    (tmp_path / "page.html").write_text('<html><body><p>Raw \\(x^2\\) here.</p><img src="missing.png">'
                                        '<script src="https://cdn.invalid/x.js"></script></body></html>')
    done = subprocess.run([sys.executable, str(ROOT / "book" / "check_browser.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "raw TeX" in done.stdout and "image did not load" in done.stdout and "cdn.invalid" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("parameters, message", [({"profile": "huge"}, "unknown profile"),
                                                 ({"profile": "smoke", "overrides": {"n_snapshots": 2}}, "n_snapshots"),
                                                 ({"profile": "smoke", "overrides": {"n_embd": -8}}, "n_embd")])
def test_bad_parameters_stop_the_notebook_at_once(parameters, message, tmp_path):
    import jupytext
    import papermill

    nb = jupytext.read(ROOT / "notebooks" / "01_models_and_training.py")
    with pytest.raises(papermill.PapermillExecutionError, match=message) as err:
        papermill.execute_notebook(nb, str(tmp_path / "out.ipynb"), parameters=parameters,
                                   kernel_name="attnpod", cwd=str(tmp_path), progress_bar=False)
    assert err.value.exec_count <= 3  # the parameters cell, papermill's injected cell, the set-up cell


@pytest.mark.slow
def test_a_failing_chapter_ends_the_build_with_one_line_cause(tmp_path):
    """A bad parameter: the build stops at that chapter and says which, why and what to do, briefly."""
    corpus_file()
    book = copy_book(tmp_path)
    done = subprocess.run([sys.executable, str(ROOT / "book" / "execute.py"), "--profile", "smoke", "--root", str(book),
                           "--only", "01", "-p", "seed=-1"], capture_output=True, text=True)
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) <= 5, lines
    assert "FAILED 01_models_and_training: ParameterError" in done.stderr and "seed" in done.stderr
    assert "--only 01" in done.stderr


@pytest.mark.slow
def test_thebe_configuration_appears_once_per_page(smoke_book):
    """Jupyter Book 1 registers sphinx-thebe's inline script twice; book/_ext removes the duplicate."""
    page = (smoke_book / "_build" / "html" / "book" / "intro.html").read_text()
    assert page.count("const THEBE_JS_URL") == 1


def test_chapters_start_longest_first():
    """The last build's times order the chapters after the first; without them, the known long ones lead."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute", ROOT / "book" / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    names = ["a", "b", "c", "d"]
    assert execute.start_order(names, {}, longest=("c",)) == ["c", "a", "b", "d"]
    assert execute.start_order(names, {"a": 5.0, "b": 50.0, "c": 1.0, "d": 20.0}, longest=("c",)) == ["b", "d", "a", "c"]
    assert execute.start_order(names, {"b": 9.0}, longest=()) == ["b", "a", "c", "d"]


@pytest.mark.slow
def test_the_findings_page_follows_a_rerun_chapter(smoke_book):
    """Rerun one chapter with another setting and rebuild: the findings page shows the new run and the
    chapter's new values, never the previous build's (it glues only, so Sphinx would keep it)."""
    import re

    book = smoke_book
    done = subprocess.run([sys.executable, str(ROOT / "book" / "execute.py"), "--profile", "smoke", "--root",
                           str(book), "--only", "04", "-p", 'overrides={"n_snapshots": 12}'], capture_output=True,
                          text=True, env=book_env(book))
    assert done.returncode == 0, done.stderr[-3000:]
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(book), "--warningiserror", "--keep-going"], check=True,
                   capture_output=True)
    html = book / "_build" / "html"
    findings = (html / "book" / "findings.html").read_text()
    chapter = (html / "notebooks" / "04_scale_selective_pod.html").read_text()
    assert "smoke profile, seed 42, n_snapshots = 12" in findings
    theorem = re.search(r"largest gap\s*(?:<[^>]+>\s*)*([0-9.e+-]+)", findings).group(1)
    assert theorem in chapter, (theorem, "is not chapter 04's value")
