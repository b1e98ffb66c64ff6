"""What every committed notebook must show, read from its saved outputs: no fact claim failed,
skipped claims are counted, and every notebook on the image models reports on all 10,000
Fashion-MNIST test images."""

from __future__ import annotations

import json

import pytest

from qnb import read_records
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IMAGE_MODELS = ("plain_cnn", "depthwise_cnn", "lstm")


def _source(path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_committed_claims_held(path):
    source = _source(path)
    if "claims.summary()" not in source:
        pytest.fail(f"{path.name} draws conclusions but never calls claims.summary()")
    records = read_records(path)
    assert records["claims_failed"] == 0, (path.name, records["claims_failed"])
    assert records["claims_checked"] > 0 and "claims_skipped" in records, path.name
    assert "claims.reset()" in source, f"{path.name}: claims are not reset at the start of a run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_image_notebooks_report_on_the_whole_test_split(path):
    source = _source(path)
    if not any(f'"{name}"' in source for name in IMAGE_MODELS):
        pytest.skip(f"{path.name} uses no image model")
    assert read_records(path)["test_images"] == 10000, path.name
