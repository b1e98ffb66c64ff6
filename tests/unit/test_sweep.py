"""qnb.sweep, qnb.report and the `python -m qnb sweep|report` command line.

The notebooks here are tiny, so a run costs about a kernel start; sweeps use `jobs=2`. Every
run appends its parameters to `ran.txt` next to the notebook, which tells which runs ran.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from qnb import report, sweep
from qnb.__main__ import main
from tests.conftest import make_notebook

PARAMS = "bits = 8\nseed = 0\nfail = -1"
CELLS = (
    "import qnb\nwith open('ran.txt', 'a') as f:\n    f.write(f'{bits},{seed}\\n')",
    "if 10 * bits + seed == fail:\n    raise RuntimeError(f'boom at {bits},{seed}')",
    "qnb.record('sqnr_db', 6.02 * bits + seed)\nqnb.record('label', f'b{bits}')",
)
GRID = ["-p", "bits=2,4", "-p", "seed=0,1"]


def _rows(out: Path) -> list[dict]:
    with open(out / sweep.RESULTS) as f:
        return list(csv.DictReader(f))


def _ran(folder: Path) -> list[str]:
    path = folder / "ran.txt"
    return path.read_text().splitlines() if path.is_file() else []


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def fast(tmp_path_factory) -> Path:
    """A fast notebook with parameters bits, seed and fail."""
    folder = tmp_path_factory.mktemp("nb")
    return make_notebook(folder / "01_fast.ipynb", PARAMS, *CELLS)


@pytest.fixture(scope="module")
def swept(fast, tmp_path_factory) -> tuple[Path, int]:
    """The 2×2 sweep of `fast` through the command line: (run folder, exit status)."""
    out = tmp_path_factory.mktemp("runs") / "grid"
    code = main(["sweep", str(fast), *GRID, "--out", str(out), "--jobs", "2"])
    return out, code


# --- a sweep, its table and its report ----------------------------------------------------


def test_a_2x2_sweep_gives_4_notebooks_and_a_4_row_table(swept):
    out, code = swept
    assert code == 0
    names = sorted(p.name for p in out.glob("*.ipynb") if not p.name.startswith("."))
    assert names == [
        "01_fast__bits=2__seed=0.ipynb",
        "01_fast__bits=2__seed=1.ipynb",
        "01_fast__bits=4__seed=0.ipynb",
        "01_fast__bits=4__seed=1.ipynb",
    ]
    rows = _rows(out)
    assert [(r["bits"], r["seed"], r["status"]) for r in rows] == [
        ("2", "0", "ok"),
        ("2", "1", "ok"),
        ("4", "0", "ok"),
        ("4", "1", "ok"),
    ]
    assert list(rows[0])[:4] == ["run", "notebook", "bits", "seed"]
    assert [float(r["sqnr_db"]) for r in rows] == pytest.approx([12.04, 13.04, 24.08, 25.08])
    assert rows[0]["label"] == "b2" and rows[0]["notebook"] == "01_fast.ipynb"
    assert not list(out.glob(".*"))  # no partial notebooks or temporary files left


def test_the_executed_notebooks_hold_their_parameters_and_records(swept):
    out, _ = swept
    nb = nbformat.read(out / "01_fast__bits=4__seed=1.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "bits = 4" in injected[0].source and "seed = 1" in injected[0].source
    status = json.loads((out / "01_fast__bits=4__seed=1.status.json").read_text())
    assert status["params"] == {"bits": 4, "seed": 1} and status["status"] == "ok"
    assert status["seconds"] > 0


def test_report_has_the_table_and_a_plot_per_record_and_parameter(swept):
    out, _ = swept
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "01_fast__bits=2__seed=0" in page and "sqnr_db" in page
    assert page.count("data:image/png;base64,") == 2  # sqnr_db vs bits, sqnr_db vs seed
    table = sweep.results(out)
    assert table.params == ["bits", "seed"] and table.records == ["sqnr_db", "label"]


def test_plot_draws_categorical_parameters_and_many_lines_as_points():
    rows = [{"mode": m, "seed": s, "acc": s + i} for i, m in enumerate("abc") for s in range(10)]
    fig = report.plot(rows, "mode", "acc", ["seed"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_legend() is None  # 10 seeds > MAX_LINES: points, no legend


# --- failures, resume, shards -------------------------------------------------------------


def test_a_failing_combination_is_recorded_and_the_others_go_on(fast, tmp_path, capsys):
    out = tmp_path / "failing"
    args = ["sweep", str(fast), *GRID, "-p", "fail=21", "--out", str(out), "--jobs", "2"]
    before = len(_ran(fast.parent))
    assert main(args) == 1
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "ok"]
    failed = rows[1]
    assert failed["run"] == "01_fast__bits=2__seed=1__fail=21"
    assert failed["error"] == "RuntimeError: boom at 2,1"
    assert failed["cell"] == "3"  # the cell that raised, counted in the source notebook
    assert (out / f"{failed['run']}.ipynb").is_file()  # kept to inspect
    assert "FAILED" in capsys.readouterr().out
    assert len(_ran(fast.parent)) == before + 4


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(swept, fast, tmp_path):
    out = tmp_path / "grid"
    shutil.copytree(swept[0], out)
    # interrupted while writing a run's notebook: a half-written partial, a stale status
    (out / "01_fast__bits=2__seed=1.status.json").unlink()
    (out / ".01_fast__bits=2__seed=1.part.ipynb").write_text('{"cells": [')
    failed = out / "01_fast__bits=4__seed=0.status.json"  # and a run that failed
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "status": "failed"}))
    finished = [out / "01_fast__bits=2__seed=0.ipynb", out / "01_fast__bits=4__seed=1.ipynb"]
    stamps = [p.stat().st_mtime_ns for p in finished]
    before = len(_ran(fast.parent))

    assert main(["sweep", str(fast), *GRID, "--out", str(out), "--jobs", "2"]) == 0
    assert sorted(_ran(fast.parent)[before:]) == ["2,1", "4,0"]
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert _without_seconds(_rows(out)) == _without_seconds(_rows(swept[0]))
    assert not list(out.glob(".*"))

    before = len(_ran(fast.parent))  # once more: everything is finished, nothing runs
    assert main(["sweep", str(fast), *GRID, "--out", str(out)]) == 0
    assert len(_ran(fast.parent)) == before


def test_a_changed_notebook_is_run_again(swept, tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    source = make_notebook(folder / "01_fast.ipynb", PARAMS, *CELLS)
    out = tmp_path / "grid"
    shutil.copytree(swept[0], out)
    runs = sweep.plan([source], sweep.build_grid(GRID[1::2]))
    assert all(sweep.is_finished(r, out) for r in runs)
    changed = make_notebook(folder / "01_fast.ipynb", PARAMS, *CELLS, "x = 1")
    runs = sweep.plan([changed], sweep.build_grid(GRID[1::2]))
    assert not any(sweep.is_finished(r, out) for r in runs)


def test_shards_collected_give_the_table_of_the_whole_sweep(swept, fast, tmp_path):
    out = tmp_path / "sharded"
    for i in (1, 2):
        args = ["sweep", str(fast), *GRID, "--out", str(out), "--shard", f"{i}/2", "--jobs", "2"]
        assert main(args) == 0
    (out / sweep.RESULTS).unlink()
    assert main(["sweep", "collect", str(out)]) == 0
    assert _without_seconds(_rows(out)) == _without_seconds(_rows(swept[0]))


def test_a_run_that_takes_too_long_is_stopped_as_failed(tmp_path):
    import psutil

    source = make_notebook(
        tmp_path / "slow.ipynb",
        "wait = 0",
        "import os, time\nopen('pid.txt', 'w').write(str(os.getpid()))",
        "time.sleep(wait)",
    )
    [status] = sweep.sweep([source], {"wait": [120]}, tmp_path / "out", timeout=5, progress=False)
    assert status["status"] == "failed"
    assert status["error"] == "timed out after 5 s"
    assert status["seconds"] < 25
    if (tmp_path / "pid.txt").is_file():  # the kernel started in time: it must be gone now
        assert status["cell"] == 3 and status["cell_source"] == "time.sleep(wait)"
        pid = int((tmp_path / "pid.txt").read_text())
        if psutil.pid_exists(pid):
            proc = psutil.Process(pid)
            psutil.wait_procs([proc], timeout=10)
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


# --- bad input: refused before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.ipynb", "-p", "bits=4"], "notebook '.*missing.ipynb' does not exist"),
        (["{noparams}", "-p", "bits=4"], "exactly one cell tagged 'parameters'.*found 0"),
        (
            ["{fast}", "-p", "bitz=4"],
            "parameter 'bitz' is not defined in the parameters cell of 01_fast.ipynb; "
            "it defines: bits, seed, fail",
        ),
        (["{fast}", "-p", "bits="], "empty value list"),
        (["{fast}", "-p", "bits=4,,8"], "empty value between commas"),
        (["{fast}", "-p", "bits"], "-p must look like NAME=V1,V2"),
        (["{fast}", "-p", "bits=4", "-p", "bits=8"], "'bits' is given twice"),
        (["{fast}", "-p", "bits=4,4"], "lists a value twice"),
        (["{fast}", "-p", "bits=(4,8)"], "contains a tuple.*write it as a list: \\[4, 8\\]"),
        (["{fast}", "--grid", "{empty_grid}"], "grid.yaml: parameter 'bits' has an empty value"),
        (["{fast}", "--grid", "missing.yaml"], "--grid file 'missing.yaml' does not exist"),
        (["{fast}", "--shard", "3/2"], "--shard must look like I/N with 1 <= I <= N, got '3/2'"),
        (["{fast}", "--shard", "0/2"], "got '0/2'"),
        (["{fast}", "--shard", "1-2"], "got '1-2'"),
        (["{fast}", "--shard", "a/b"], "got 'a/b'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(args, message, fast, tmp_path, capsys):
    noparams = tmp_path / "noparams.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), noparams)
    empty_grid = tmp_path / "grid.yaml"
    empty_grid.write_text("bits: []\n")
    paths = {"fast": fast, "noparams": noparams, "empty_grid": empty_grid}
    args = [a.format(**paths) for a in args]
    out = tmp_path / "out"
    before = len(_ran(fast.parent))
    assert main(["sweep", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err
    assert not out.exists() and len(_ran(fast.parent)) == before


def test_collect_and_report_refuse_a_folder_without_runs(tmp_path, capsys):
    assert main(["sweep", "collect", str(tmp_path)]) == 2
    assert "no runs in" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the pieces ---------------------------------------------------------------------------


def test_values_are_python_literals_else_strings():
    assert sweep.parse_param("x=4, 0.5,True,None,minmax,'8'") == (
        "x",
        [4, 0.5, True, None, "minmax", "8"],
    )
    assert sweep.parse_param("x=[1,2],{'a': 1},'a,b'") == ("x", [[1, 2], {"a": 1}, "a,b"])


def test_grid_file_and_options_combine(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("bits: [4, 8]\nmode: minmax\n")
    assert sweep.build_grid(["bits=2"], grid) == {"bits": [2], "mode": ["minmax"]}


def test_plan_orders_parameters_as_the_notebook_does(fast):
    a = sweep.plan([fast], sweep.build_grid(["seed=0,1", "bits=2,4"]))
    b = sweep.plan([fast], sweep.build_grid(["bits=2,4", "seed=0,1"]))
    assert [r.name for r in a] == [r.name for r in b]
    assert [r.params for r in a][:2] == [{"bits": 2, "seed": 0}, {"bits": 2, "seed": 1}]


def test_run_names_are_safe_and_distinct():
    assert sweep.run_name("01_x", {"bits": 4, "mode": "minmax"}) == "01_x__bits=4__mode=minmax"
    odd = sweep.run_name("01_x", {"path": "a/b c"})
    assert odd.startswith("01_x__path=a_b_c__") and "/" not in odd
    assert odd != sweep.run_name("01_x", {"path": "a_b c"})
    assert len(sweep.run_name("01_x", {"v": "x" * 400})) < 200


def test_shards_cover_every_run_once():
    runs = list(range(10))
    slices = [sweep.shard(runs, i, 3) for i in (1, 2, 3)]
    assert sorted(sum(slices, [])) == runs and slices[0] == [0, 3, 6, 9]
    assert sweep.parse_shard("2/3") == (2, 3) and sweep.parse_shard(None) == (1, 1)


def test_run_environment_shares_the_cores_among_parallel_runs(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    assert sweep.run_environment(2)["OMP_NUM_THREADS"] == "4"
    assert sweep.run_environment(16)["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in sweep.run_environment(1)  # one run: torch's own default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert sweep.run_environment(2)["OMP_NUM_THREADS"] == "3"  # the caller's choice is kept
