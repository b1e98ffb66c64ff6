"""Every notebook survives each code cell run twice in a row (DESIGN.md: a cell re-run twice).

A reader in JupyterLab re-runs a cell after changing something, or by accident; a cell that
mutates state it reads (a model prepared in place, a file moved, a list appended to) then
fails or silently changes what later cells show. Each notebook is executed with every code
cell (but the parameters cell) doubled; the heavy ones with smaller settings.
"""

from __future__ import annotations

import copy

import nbformat
import pytest

from qnb import runner
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMALLER = {
    "02_per_channel_weights.ipynb": {"seeds": [0], "bit_widths": [8, 3], "rule_bits": [2]},
    "03_activation_calibration.ipynb": {
        "seeds": [0],
        "act_bit_widths": [4],
        "calib_images": 64,
        "calib_sizes": [8, 32],
        "calib_seeds": [0],
    },
    "07_advanced_ptq.ipynb": {
        "seeds": [0],
        "ladder_bits": [4],
        "adaround_bits": [4],
        "cle_bits": [4],
        "calib_images": 64,
        "adaround_iterations": 20,
        "qat_train_limit": 128,
    },
    "08_quantization_aware_training.ipynb": {
        "seeds": [0],
        "ladder": [[4, 4]],
        "train_limit": 256,
        "calib_images": 64,
    },
    "09_mixed_precision.ipynb": {"seeds": [0], "calib_images": 64, "pareto_budgets": [2.5]},
    "13_experiment_sweeps.ipynb": {"grid": {"compare_bits": [4, 8], "seed": [0]}},
    "11_other_runtimes.ipynb": {
        "seeds": [0],
        "calib_images": 64,
        "calib_methods": ["minmax"],
        "vision_models": ["mobilenet_v2"],
        "batches": [1],
        "compiled_batches": [],
        "calib_batches": 1,
        "threads": 1,
        "warmup": 1,
        "repeats": 2,
    },
    "10_cpu_deployment.ipynb": {
        "engines": ["x86"],
        "thread_counts": [1],
        "cnn_batches": [4],
        "vision_models": ["mobilenet_v2"],
        "vision_batches": [2],
        "calib_batches": 1,
        "warmup": 1,
        "repeats": 2,
        "pt2e_model": "mobilenet_v2",
        "pt2e_batch": 2,
    },
}


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cell_runs_twice(path, tmp_path):
    source = tmp_path / path.name
    nbformat.write(doubled(nbformat.read(path, as_version=4)), source)
    result = runner.execute(
        source, tmp_path / "ran" / path.name, parameters=SMALLER.get(path.name), timeout=900
    )
    assert result.status == "ok", result.error
