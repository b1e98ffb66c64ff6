"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from qnb.notebook import KERNELSPEC

REPO = Path(__file__).resolve().parents[1]


def make_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """Write a small notebook with a tagged parameters cell followed by code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook_factory(tmp_path):
    def factory(name: str, parameters: str, *cells: str) -> Path:
        return make_notebook(tmp_path / name, parameters, *cells)

    return factory
