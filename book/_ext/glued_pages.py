"""Pages that glue values from other documents are rebuilt on every build.

Sphinx re-renders a page only when its own source changes. A page such as the
findings summary holds nothing but references into the executed notebooks
(``{glue:text}`../notebooks/NN.ipynb::name``` or a ``:doc:`` option), so after a
rerun of the chapters it would keep the previous run's numbers. Every such page
is reported as outdated, so it always shows what the chapters show.
"""

import re
from pathlib import Path

GLUE_FROM_ELSEWHERE = re.compile(r"\.ipynb::|^:doc:", re.M)


def glued_pages(env) -> list[str]:
    """Documents whose source glues from another document."""
    found = []
    for docname in env.found_docs:
        path = Path(env.doc2path(docname))
        if path.suffix == ".md" and path.is_file() and GLUE_FROM_ELSEWHERE.search(path.read_text(encoding="utf-8")):
            found.append(docname)
    return found


def _outdated(app, env, added, changed, removed):
    return [doc for doc in glued_pages(env) if doc not in added | changed]


def setup(app):
    app.connect("env-get-outdated", _outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
