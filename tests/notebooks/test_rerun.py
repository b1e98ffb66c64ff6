"""Every notebook survives each code cell run twice in a row.

A reader in JupyterLab re-runs a cell after changing something, or by accident; a cell that
mutates state it reads (a model prepared in place, a file moved, a list appended to) then
fails or silently changes what later cells show. Each notebook is executed with every code
cell (but the parameters cell) doubled: here, or (COVERED) in one of the runs of test_nbNN_*.py.
"""

from __future__ import annotations

import copy
import re

import nbformat
import pytest

from qnb import runner
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Notebooks whose cells-twice run is one of the runs of test_nbNN_*.py (`run(..., twice=True)`): the
# same check on other parameters, without a run of its own (the test command's time budget).
COVERED = {
    "01_affine_quantization.ipynb",
    "02_per_channel_weights.ipynb",
    "03_activation_calibration.ipynb",
    "04_integer_arithmetic.ipynb",
    "05_static_ptq.ipynb",
    "06_dynamic_and_weight_only.ipynb",
    "07_advanced_ptq.ipynb",
    "08_quantization_aware_training.ipynb",
    "09_mixed_precision.ipynb",
    "10_cpu_deployment.ipynb",
    "11_other_runtimes.ipynb",
    "12_llm_weight_quantization.ipynb",
    "13_number_formats.ipynb",
    "14_llm_outliers_and_gguf.ipynb",
}
SMALLER = {  # the notebooks not in COVERED, with smaller settings where they are heavy
    "15_experiment_sweeps.ipynb": {"grid": {"compare_bits": [4, 8], "seed": [0]}},
}


KERNEL_START_FAILURES = ("Kernel didn't respond", "Kernel died before replying")


def execute(source, output, parameters=None) -> runner.RunResult:
    """`runner.execute`, once more if the kernel did not start: with one pytest-xdist worker per
    core, two kernels can start at the same moment and race for the same free TCP ports
    (jupyter_client picks them per process); a notebook's own failure is never retried."""
    result = runner.execute(source, output, parameters=parameters, timeout=900)
    if result.status != "ok" and any(m in (result.error or "") for m in KERNEL_START_FAILURES):
        result = runner.execute(source, output, parameters=parameters, timeout=900)
    return result


def doubled(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `notebook` in which every code cell but the parameters cell runs twice."""
    twin = copy.deepcopy(notebook)
    cells = []
    for cell in twin.cells:
        cells.append(cell)
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            again = copy.deepcopy(cell)
            again.id = f"{cell.id}-again"[:64]
            cells.append(again)
    twin.cells = cells
    return twin


def test_covered_notebooks_run_twice_in_test_parameters():
    twice = set()
    for path in (REPO / "tests" / "notebooks").glob("test_nb*.py"):
        source = path.read_text()
        constant = re.search(r'^NOTEBOOK = "([^"]+)"', source, re.MULTILINE)
        for name in re.findall(r'run\(\s*tmp_path,\s*("[^"]+"|NOTEBOOK),[^)]*?twice=True', source):
            twice.add(constant.group(1) if name == "NOTEBOOK" and constant else name.strip('"'))
    assert twice == COVERED


OWN = [p for p in NOTEBOOKS if p.name not in COVERED]


@pytest.mark.parametrize("path", OWN, ids=[p.stem for p in OWN])
def test_every_cell_runs_twice(path, tmp_path):
    source = tmp_path / path.name
    nbformat.write(doubled(nbformat.read(path, as_version=4)), source)
    result = execute(source, tmp_path / "ran" / path.name, SMALLER.get(path.name))
    assert result.status == "ok", result.error
