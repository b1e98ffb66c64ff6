"""How qnb's modules depend on each other: one way, through public names.

Every module may use the base layer (checks, eager, files, env, progress, calibration) and other
modules' public names; none reaches into another module's `_private` names (that would tie
their insides together), and the notebook tooling never imports torch (it runs notebooks, it
does not quantize anything, and importing torch costs seconds in every sweep process).
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

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
