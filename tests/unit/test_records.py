"""qnb.record / qnb.read_records, and running notebooks with papermill."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import qnb
from qnb import runner


def test_record_outside_a_notebook_prints_and_returns(capsys):
    assert qnb.record("acc", np.float32(0.5)) == 0.5
    assert "acc = 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["", "1abc", "a b", None, 3])
def test_record_rejects_bad_names(name):
    with pytest.raises(ValueError, match="record name"):
        qnb.record(name, 1)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None])
def test_record_rejects_values_that_are_not_scalars(value):
    with pytest.raises(TypeError, match="'x'.*number, string or bool"):
        qnb.record("x", value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_record_rejects_non_finite_values(value):
    with pytest.raises(ValueError, match="finite"):
        qnb.record("x", value)


def test_read_records_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook"):
        qnb.read_records(tmp_path / "nope.ipynb")


def test_records_round_trip_through_an_executed_notebook(notebook_factory, tmp_path):
    source = notebook_factory(
        "rec.ipynb",
        "bits = 8",
        "import qnb\nqnb.record('bits', bits)\nqnb.record('sqnr_db', 49.9)",
        "qnb.record('note', 'hello')\nqnb.record('bits', bits * 2)",  # the later one wins
    )
    result = runner.execute(source, tmp_path / "out" / "rec.ipynb", parameters={"bits": 4})
    assert result.status == "ok", result.error
    assert qnb.read_records(result.output) == {"bits": 8, "sqnr_db": 49.9, "note": "hello"}


def test_run_all_collects_records_and_survives_a_failure(notebook_factory, tmp_path):
    good = notebook_factory("a_good.ipynb", "x = 1", "import qnb\nqnb.record('x', x)")
    bad = notebook_factory("b_bad.ipynb", "x = 1", "raise RuntimeError('boom')")
    results = runner.run_all([bad, good], tmp_path / "run")
    assert [r.status for r in results] == ["failed", "ok"]
    assert "RuntimeError: boom" in results[0].error
    with open(tmp_path / "run" / "records.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"notebook": "a_good.ipynb", "status": "ok", "name": "x", "value": "1"} in rows
    assert any(r["notebook"] == "b_bad.ipynb" and r["status"] == "failed" for r in rows)
    assert (tmp_path / "run" / "b_bad.ipynb").is_file()  # the failed run is kept to inspect


def test_execute_refuses_a_notebook_without_parameters_cell(tmp_path):
    import nbformat

    path = tmp_path / "noparams.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters', found 0"):
        runner.execute(path, tmp_path / "out.ipynb")
