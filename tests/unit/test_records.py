"""qnb.record / qnb.read_records, and running notebooks with papermill (`python -m qnb run`)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import qnb
from qnb import notebook, runner
from qnb.__main__ import main


def test_record_outside_a_notebook_prints(capsys):
    assert qnb.record("acc", np.float32(0.5)) is None  # nothing echoed as a cell's result
    assert "acc = 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["", "1abc", "a b", None, 3])
def test_record_rejects_bad_names(name):
    with pytest.raises(ValueError, match="record name"):
        qnb.record(name, 1)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, object()])
def test_record_rejects_values_that_are_not_scalars(value):
    with pytest.raises(TypeError, match="'x'.*number, string, bool or None"):
        qnb.record("x", value)


def test_none_records_a_figure_this_run_did_not_measure(capsys):
    qnb.record("speedup_pt2e_b8", None)
    assert capsys.readouterr().out == "record: speedup_pt2e_b8 = None (not measured)\n"


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


def test_run_collects_records_of_every_notebook_and_survives_a_failure(notebook_factory, tmp_path):
    good = notebook_factory("a_good.ipynb", "x = 1", "import qnb\nqnb.record('x', x)")
    bad = notebook_factory("b_bad.ipynb", "x = 1", "raise RuntimeError('boom')")
    out = tmp_path / "run"
    # exit status 1: a run failed
    assert main(["run", "--jobs", "2", "--out", str(out), str(bad), str(good)]) == 1
    with open(out / "results.csv") as f:
        rows = {row["notebook"]: row for row in csv.DictReader(f)}
    assert rows["a_good.ipynb"]["status"] == "ok" and rows["a_good.ipynb"]["x"] == "1"
    assert rows["b_bad.ipynb"]["status"] == "failed"
    assert rows["b_bad.ipynb"]["error"] == "RuntimeError: boom"
    assert rows["b_bad.ipynb"]["cell"] == "2"
    assert (out / "b_bad.ipynb").is_file()  # the failed run is kept to inspect
    assert "a_good.ipynb" in (out / "report.html").read_text()


def test_execute_refuses_a_notebook_without_parameters_cell(tmp_path):
    import nbformat

    path = tmp_path / "noparams.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(ValueError, match="exactly one cell tagged 'parameters', found 0"):
        runner.execute(path, tmp_path / "out.ipynb")


def test_run_times_the_timing_notebooks_alone_after_the_others(notebook_factory, tmp_path):
    """`run`: notebooks that call qnb.bench start only when every other run has ended, one at a
    time; the others run side by side."""
    log = tmp_path / "log.txt"
    stamp = (f"import time\nopen({str(log)!r}, 'a').write(f'{{name}} start {{time.time()}}\\n')\n"
             f"time.sleep(1.5)\nopen({str(log)!r}, 'a').write(f'{{name}} end {{time.time()}}\\n')")
    plain = [notebook_factory(f"{n}.ipynb", f"name = {n!r}", stamp) for n in ("p1", "p2")]
    timed = [notebook_factory(f"{n}.ipynb", f"name = {n!r}", stamp + "\nbench = None  # bench.x")
             for n in ("t1", "t2")]
    assert notebook.times_things(timed[0]) and not notebook.times_things(plain[0])
    out = tmp_path / "run"
    assert main(["run", "--jobs", "2", "--out", str(out), *map(str, timed + plain)]) == 0
    events = {}
    for line in log.read_text().splitlines():
        name, what, when = line.split()
        events[name, what] = float(when)
    last_plain_end = max(events[p, "end"] for p in ("p1", "p2"))
    assert min(events[t, "start"] for t in ("t1", "t2")) >= last_plain_end
    t1, t2 = sorted(("t1", "t2"), key=lambda t: events[t, "start"])
    assert events[t2, "start"] >= events[t1, "end"]  # one at a time
    p1, p2 = (("p1", "p2") if events["p1", "start"] <= events["p2", "start"] else ("p2", "p1"))
    p_overlap = events[p2, "start"] < events[p1, "end"]
    assert p_overlap  # side by side
