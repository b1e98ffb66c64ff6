"""Helpers for the notebook runs of tests/notebooks/test_nbNN_*.py: papermill with other
parameters (and every cell twice), the records they leave, and when timings may be checked."""

from __future__ import annotations

import os

import nbformat

from tests.conftest import REPO
from tests.notebooks.test_rerun import doubled, execute

NOTEBOOKS = REPO / "notebooks"


def run(tmp_path, name: str, *, twice: bool = False, **parameters) -> dict:
    """The records of `name` run with `parameters`; with `twice`, every code cell but the
    parameters cell runs twice in a row (test_rerun's check, done here instead of in a run of
    its own: the notebook is then in test_rerun.COVERED)."""
    source = NOTEBOOKS / name
    if twice:
        source = tmp_path / "twice" / name
        source.parent.mkdir()
        nbformat.write(doubled(nbformat.read(NOTEBOOKS / name, as_version=4)), source)
    result = execute(source, tmp_path / name, parameters)
    assert result.status == "ok", result.error
    records = result.records
    if "claims_checked" in records:  # every run of a notebook that checks its claims
        assert records["claims_failed"] == 0, (name, parameters, records["claims_failed"])
        assert "claims_skipped" in records, name
    return records


def quiet() -> bool:
    """True if this notebook ran alone (not beside another pytest-xdist worker's) and the cores
    were not oversubscribed: timing claims are only checked then."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        return False
    return os.getloadavg()[0] <= (os.cpu_count() or 1)


def speedups_with_iqr(records: dict, names: list[str]) -> None:
    for name in names:
        value, p25, p75 = (records[name + s] for s in ("", "_p25", "_p75"))
        assert 0 < p25 <= value <= p75, (name, value, p25, p75)
