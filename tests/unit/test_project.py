"""The project's own files: pins, conda environment, CI entry, notebook hygiene, and how qnb's
modules depend on each other."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

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


PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_is_a_front_door_to_the_other_pages():
    """The README stays short and links every page; no relative link of any page is broken."""
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 8000, f"README.md has {len(readme)} characters"
    for page in ("docs/sweeps.md", "docs/instructors.md", "docs/platforms.md", "CONTRIBUTING.md"):
        assert f"]({page})" in readme, page
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#]+)[^)]*\)", page.read_text()):
            if not link.startswith(("http://", "https://")):
                assert (page.parent / link).exists(), f"{page.name} links to {link}"


def test_the_pages_name_only_targets_that_make_help_lists():
    listed = set(re.findall(r"^  ([a-z][a-z-]*) ", _make("help").stdout, re.M))
    assert {"run", "test", "lab", "setup", "test-units", "test-browser", "lock"} <= listed
    for page in PAGES:
        text = page.read_text()
        commands = re.findall(r"`make ([^`]*)`", text) + re.findall(r"^make (.*)$", text, re.M)
        for command in commands:  # the words before a comment or `&&` that look like targets
            words = re.split(r"#|&&", command)[0].split()
            targets = {w for w in words if re.fullmatch(r"[a-z][a-z-]*", w)}
            assert targets <= listed, f"{page.name}: make {command}"


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


def _make(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    command = ["make", "--no-print-directory", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_makefile_needs_nothing_newer_than_macos_make_and_bash():
    """macOS ships GNU make 3.81 and /bin/bash 3.2: no later make features, pipes made strict."""
    lines = (REPO / "Makefile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    later = [".SHELLFLAGS", ".ONESHELL", "undefine ", "$(file ", "::=", " != ", "$(let "]
    assert not [feature for feature in later if feature in text]
    assert not re.search(r"^\S[^=\n]*:\s*(export|private)\s", text, re.M), "target-specific export"
    recipe_lines = re.findall(r"^\t(.*)$", text.replace("\\\n", " "), re.M)
    piped = [line for line in recipe_lines if re.search(r"[^|]\|[^|]", line.split("#")[0])]
    assert piped and all("$(STRICT)" in line for line in piped), piped


def test_make_setup_refuses_a_python_other_than_3_11(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.12.3" && exit 0\nexit 1\n')
    fake.chmod(0o755)
    done = _make("setup", f"PYTHON={fake}", f"VENV={tmp_path / 'venv'}")
    assert done.returncode != 0
    assert "qnb needs Python 3.11 (3.11.0 or a later 3.11.x)" in done.stderr, done.stderr
    assert "make PYTHON=/path/to/python3.11 setup" in done.stderr, done.stderr
    assert f"PYTHON={fake} is Python 3.12.3" in done.stderr
    assert not (tmp_path / "venv" / "bin").exists()
    missing = _make("setup", f"PYTHON={tmp_path / 'nothing'}", f"VENV={tmp_path / 'venv'}")
    assert missing.returncode != 0 and "is not a runnable Python" in missing.stderr


def test_make_lock_keeps_markers_and_writes_environment_yml(tmp_path):
    """`make lock` from an environment holding this platform's pins reproduces both files."""
    from packaging.requirements import Requirement

    (tmp_path / "tools").mkdir()
    copied = ("Makefile", "tools/lock.py", "requirements.lock", "environment.yml", "pyproject.toml")
    for name in copied:
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    here = [Requirement(line) for line in _lock_lines()]
    freeze = [str(r).split(";")[0] for r in here if r.marker is None or r.marker.evaluate()]
    upgraded = next(r for r in here if r.marker is None)  # an upgrade must reach both files
    old, new = f"{upgraded.name}{upgraded.specifier}", f"{upgraded.name}==99.0"
    freeze[freeze.index(old)] = new
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "freeze.txt").write_text("\n".join(freeze) + "\n")
    (venv / "bin" / "pip").write_text(f'#!/bin/sh\ncat "{venv / "freeze.txt"}"\n')
    (venv / "bin" / "pip").chmod(0o755)
    (venv / "bin" / "python").symlink_to(sys.executable)  # runs tools/lock.py
    (venv / ".ready").touch()
    done = _make("lock", f"VENV={venv}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("requirements.lock", "environment.yml"):
        expected = (REPO / name).read_text().replace(f"- {old}\n", f"- {new}\n")
        expected = re.sub(rf"^{re.escape(old)}$", new, expected, flags=re.M)
        assert (tmp_path / name).read_text() == expected, name


# --- dependencies between qnb's modules ------------------------------------------------------
# Every module may use the base layer (checks, eager, files, env, progress, calibration) and
# other modules' public names; none reaches into another module's `_private` names (that would
# tie their insides together), and the notebook tooling never imports torch (it runs notebooks,
# it does not quantize anything, and importing torch costs seconds in every sweep process).

PACKAGE = REPO / "qnb"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
TOOLING = ("runner", "sweep", "report", "records", "notebook", "assignments")


def _qnb_module(name: str | None) -> str | None:
    """`ptq` for `qnb.ptq`, None for anything outside qnb."""
    if name and name.startswith("qnb."):
        return name.split(".")[1]
    return None


def private_uses(source: str, this: str) -> list[str]:
    """Places where module `this` uses another qnb module's `_private` name."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> qnb module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "qnb":
            for a in node.names:
                aliases[a.asname or a.name] = a.name
                if a.name.startswith("_"):
                    found.append(f"line {node.lineno}: from qnb import {a.name}")
        elif isinstance(node, ast.ImportFrom) and _qnb_module(node.module) not in (None, this):
            for a in node.names:
                if a.name.startswith("_") or (a.asname or "").startswith("_"):
                    found.append(
                        f"line {node.lineno}: from {node.module} import {a.name}"
                        + (f" as {a.asname}" if a.asname else "")
                    )
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _qnb_module(a.name) and a.asname:
                    aliases[a.asname] = _qnb_module(a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id, this) != this
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found, key=lambda place: int(place.split()[1].rstrip(":")))


@pytest.mark.parametrize("module", MODULES)
def test_no_module_uses_another_modules_private_names(module):
    source = (PACKAGE / f"{module}.py").read_text()
    assert private_uses(source, module) == []


def test_the_private_name_finder_finds_what_it_should():
    source = (
        "from qnb import ptq, models as m\n"
        "from qnb.affine import _check_bits\n"
        "from qnb.checks import check_int as _check_int\n"
        "import qnb.sweep as sw\n"
        "x = ptq._finish(1)\n"
        "y = m._shifted\n"
        "z = sw._Workers()\n"
        "ok = ptq.quantize_static, self._private, ptq.__name__\n"
    )
    assert private_uses(source, "qat") == [
        "line 2: from qnb.affine import _check_bits",
        "line 3: from qnb.checks import check_int as _check_int",
        "line 5: ptq._finish",
        "line 6: m._shifted",
        "line 7: sw._Workers",
    ]
    assert private_uses("from qnb import ptq\nptq._x\n", "ptq") == []  # its own: fine


def test_notebook_tooling_does_not_import_torch():
    imports = "; ".join(f"import qnb.{m}" for m in TOOLING)
    heavy = "('torch', 'torchvision', 'torchao')"
    code = f"import sys; {imports}; print(sorted(m for m in sys.modules if m in {heavy}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", f"the tooling imports: {done.stdout.strip()[:300]}"


def test_the_cli_for_sweeps_does_not_import_torch():
    code = "import sys, qnb.__main__; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
