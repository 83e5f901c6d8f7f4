"""The package reads like the method: one module per stage, each importing only the stages before it."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "attnpod"
# The stages in the order of the data flow; a module imports only modules before it (at its top or in a function).
ORDER = ["errors", "config", "store", "data", "models", "train", "shipped", "fields", "lag", "wavelet", "pod",
         "analysis", "pipeline", "adapters", "pretrained", "estimators", "readings", "claims", "planted", "bench",
         "experiments", "experiments.budgets", "experiments.cache_rules", "experiments.pruning", "experiments.kvcache",
         "experiments.llmcache", "experiments.longcache", "experiments.replicates", "study", "figures", "book", "cli"]
# Where a stage is imported inside a function, and why: the command line's parser and the book's figure names
# import no torch or matplotlib; readings and claims stay torch-free for them (the analysis is imported where a
# reading is taken).
LAZY = {"cli", "book", "readings", "claims"}


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in ("", "__main__"):
            out[name] = path
    return out


def arrows() -> dict[tuple[str, str], bool]:
    """(importer, imported) -> whether the import is at the module's top."""
    mods, out = modules(), {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[:len(package) - node.level + 1]
            elif (node.module or "").startswith("attnpod"):
                base = []
            else:
                continue
            target = ".".join(base + ([node.module.removeprefix("attnpod").lstrip(".")] if node.module and
                                      node.module.removeprefix("attnpod") else []))
            for hit in {target, *(f"{target}.{a.name}" if target else a.name for a in node.names)}:
                if hit in mods and hit != name:
                    out[(name, hit)] = out.get((name, hit), False) or id(node) in top
    return out


def test_every_module_has_a_place_in_the_data_flow():
    assert sorted(modules()) == sorted(ORDER)


def test_no_stage_imports_a_later_one():
    upward = [(a, b) for a, b in arrows() if ORDER.index(b) > ORDER.index(a)]
    assert upward == []


def test_imports_inside_functions_are_only_where_a_light_import_is_needed():
    hidden = sorted({a for (a, b), at_top in arrows().items() if not at_top} - LAZY)
    assert hidden == []
