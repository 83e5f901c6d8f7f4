"""Serve MathJax from the built book itself, so equations typeset with no network (and no duplicate scripts).

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


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated script tags: sphinx-thebe's inline configuration is registered twice under
    Jupyter Book 1, and the second ``const THEBE_JS_URL`` is a JavaScript error on every page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    _bundle()  # fail at the start of a build, not after it
    app.config.mathjax_path = f"mathjax/{BUNDLE}"
    app.connect("build-finished", _copy)
    app.connect("html-page-context", _unique_scripts, priority=900)  # after the themes add theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
