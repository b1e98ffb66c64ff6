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
    # `make test OFFLINE=1` (pytest -m "not network") leaves these out, and says so at the end
    config.addinivalue_line(
        "markers", "network: reaches the package registry (pip download, the lock resolved)"
    )


_LEFT_OUT: list[str] = []


def pytest_deselected(items):
    _LEFT_OUT.extend(item.nodeid for item in items if item.get_closest_marker("network"))


def pytest_terminal_summary(terminalreporter):
    if _LEFT_OUT:
        terminalreporter.write_line(
            f"left out {len(_LEFT_OUT)} test(s) that reach the package registry (marker "
            "'network'; this run is offline): " + ", ".join(sorted(_LEFT_OUT)[:4])
            + (" ..." if len(_LEFT_OUT) > 4 else "")
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
