"""Serve MathJax from the built book itself, so equations typeset with no network.

MathJax 3 (the self-contained SVG bundle, no web fonts to fetch) comes from the
``django-static-mathjax`` wheel on PyPI (installed by the ``book`` extra); it is
copied into ``_static/mathjax/`` of every HTML build and ``mathjax_path`` points there.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

BUNDLE = "tex-svg.js"


def _bundle() -> Path:
    try:
        path = Path(str(files("mathjax") / "static" / "mathjax" / "es5" / BUNDLE))
    except ModuleNotFoundError as err:
        raise RuntimeError("MathJax is missing: install the book extra (pip install -e '.[book]', "
                           "which brings django-static-mathjax)") from err
    if not path.is_file():
        raise RuntimeError(f"MathJax bundle not found at {path}")
    return path


def _copy(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_bundle(), target / BUNDLE)


def setup(app):
    _bundle()  # fail at the start of a build, not after it
    app.config.mathjax_path = f"mathjax/{BUNDLE}"
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
