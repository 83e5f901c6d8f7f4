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
    assert execute.start_order(names, {}, {"c": 9.0, "d": 30.0}) == ["d", "c", "a", "b"]
    assert execute.start_order(names, {"a": 5.0, "b": 50.0, "c": 1.0, "d": 20.0}, {"c": 99.0}) == ["b", "d", "a", "c"]
    assert execute.start_order(names, {"b": 9.0}) == ["b", "a", "c", "d"]
    chapters = set(execute.chapters(ROOT))  # each profile's typical times name chapters the book has
    assert all(set(times) <= chapters for times in execute.TYPICAL.values())


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


def glued_texts(notebook: Path) -> dict:
    """The text values an executed chapter glued, by name."""
    import ast

    found = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = output.get("data", {})
            text = data.get("text/plain", data.get("application/papermill.record/text/plain"))
            if name and text is not None:
                text = "".join(text) if isinstance(text, list) else text
                try:
                    found[name] = str(ast.literal_eval(text))
                except (ValueError, SyntaxError):
                    found[name] = text
    return found


def findings_verdict_cells(findings: str) -> list[tuple[str, str]]:
    """(notebook, glue name) of every cell of the findings page's tables that sits under a verdict column."""
    import re

    cells, columns = [], None
    for line in findings.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        row = [c.strip() for c in line.strip("|").split("|")]
        if columns is None:
            columns = [i for i, c in enumerate(row) if c in ("verdict", "across training seeds")
                       or c.startswith("answer")]
            continue
        for i in columns:
            if i < len(row):
                cells += re.findall(r"\.\./notebooks/(\w+)\.ipynb::(\w+):s", row[i])
    return cells


@pytest.mark.slow
def test_every_verdict_on_the_findings_page_has_a_word_in_the_legend(smoke_book):
    """The findings page's key (claims.VERDICT_WORDS) explains every verdict it shows: each verdict cell, and
    each part of a cell that lists rules ("PyramidKV schedule: worse; ..."), begins with a word of the key."""
    from attnpod.claims import legend_word

    cells = findings_verdict_cells((ROOT / "book" / "findings.md").read_text())
    assert len(cells) >= 30
    texts = {name: glued_texts(smoke_book / "notebooks" / f"{name}.ipynb") for name in {n for n, _ in cells}}
    unexplained = []
    for notebook, key in cells:
        text = texts[notebook][key]
        parts = [text] if legend_word(text) else text.split("; ")  # "rule: verdict; rule: verdict; ..."
        unexplained += [(key, text) for p in parts
                        if legend_word(p) is None and legend_word(p.partition(": ")[2]) is None]
    assert not unexplained, unexplained


def _timings():
    import importlib.util

    spec = importlib.util.spec_from_file_location("timings", ROOT / "book" / "timings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_timings_table_is_generated_from_the_records():
    """README.md and the Reproduce page carry the table book/timings.py makes from book/timings.json, and
    `check` fails on a table edited by hand; a new record replaces the old one of the same command in place."""
    timings = _timings()
    assert timings.main(["check"]) == 0
    records = timings.read_records()
    assert records and all(r["seconds"] > 0 for r in records)
    readme = (ROOT / "README.md").read_text()
    edited = readme.replace(timings.duration(records[0]["seconds"]), "2 min 30 s", 1)
    assert edited != readme and timings.rendered(edited, records) == readme
    newer = {**records[0], "seconds": 61.0}
    again = timings.with_record(records, newer)
    assert again[0] == newer and len(again) == len(records)
    assert timings.table(again).count("\n") == len(records) + 1 and "1 min 1 s" in timings.table(again)
    assert timings.duration(42.4) == "42 s" and timings.size(1.95e9) == "1.95 GB" and timings.size(7.03e8) == "703 MB"
    with pytest.raises(ValueError, match="seconds"):
        timings.with_record(records, {"what": "x", "date": "d", "machine": "m"})


def test_a_whole_build_writes_its_measurement_for_the_table(tmp_path, monkeypatch):
    """book/execute.py's record of a build is one book/timings.py takes: wall time, the largest process's
    peak memory, the store's size when the build began with an empty store, the machine and the code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute", ROOT / "book" / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    store = tmp_path / "store"
    (store / "fields").mkdir(parents=True)
    (store / "fields" / "a.npy").write_bytes(b"x" * 5000)
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(store))
    record = execute.write_measurement(tmp_path, "smoke", 12.34, fresh=True)
    assert json.loads(Path(record["file"]).read_text())["store_bytes"] == 5000
    assert record["peak_memory_bytes"] > 10e6 and "fresh store" in record["what"]
    assert "store_bytes" not in execute.write_measurement(tmp_path, "smoke", 1.0, fresh=False)
    timings = _timings()
    row = timings.table(timings.with_record([], {k: v for k, v in record.items() if k != "file"}))
    assert "| 12 s |" in row and "not a git checkout" in row
