"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from qnb.notebook import KERNELSPEC

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # The unit tests' halves: `make test-fast` runs what is not slow, `make test-slow` the rest;
    # `make test-units` and `make test` run both.
    config.addinivalue_line(
        "markers", "slow: takes a minute or more on 2 cores (torch.compile, training)"
    )


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


@pytest.fixture
def torch_state():
    """Whatever a test does, the next one starts with the same threads and quantized engine
    (both process-wide; quantize_static and the int8 loaders set the engine on purpose)."""
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    yield
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
