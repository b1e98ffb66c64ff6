"""The project's own files: pins, conda environment, CI entry and notebook hygiene."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from qnb import notebook
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _lock_lines() -> list[str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def _pins() -> dict[str, str]:
    pairs = (line.split(";")[0].strip().split("==") for line in _lock_lines())
    return {name.lower().replace("_", "-"): version for name, version in pairs}


def test_lock_pins_torch_pair():
    pins = _pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_pyproject_dependencies_are_pinned():
    """Every runtime dependency of qnb is in the lock, at a version its range allows."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is a dependency but not pinned in requirements.lock"
        assert req.specifier.contains(pins[name]), f"lock pins {name}=={pins[name]}, not {req}"
    assert "scipy" in {Requirement(t).name for t in project["dependencies"]}


def test_environment_yml_lists_every_pinned_package():
    """environment.yml's pip section is the lock, line for line, markers included."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == _lock_lines()
    listed = dict(p.split(";")[0].strip().split("==") for p in pip_section)
    listed = {k.lower().replace("_", "-"): v for k, v in listed.items()}
    assert listed == _pins()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = notebook.read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert len(notebook.parameters_cells(nb)) == 1
    assert "papermill" not in nb.metadata
    text = path.read_text()
    assert not re.search(r'"/(root|home|tmp|work|Users|opt|var)/', text), "absolute path"
    assert not re.search(r"[A-Za-z]:\\\\", text), "Windows path"
    for cell in nb.cells:
        assert not {"papermill", "execution", "ExecuteTime"} & set(cell.metadata), cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_carries_a_clean_run(path):
    """Committed outputs come from one top-to-bottom run: execution counts 1, 2, 3, ..."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells if c["source"]]
    assert counts == list(range(1, len(counts) + 1))
    assert not any(o["output_type"] == "error" for c in cells for o in c["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_documented(path):
    """Every knob in the parameters cell has a comment saying what it does."""
    source = notebook.parameters_cells(notebook.read(path))[0].source
    for line in source.splitlines():
        if re.match(r"^[A-Za-z_]\w*\s*=", line):
            assert "#" in line, f"undocumented parameter: {line}"


def test_make_run_lists_every_notebook():
    import subprocess

    dry = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in dry
