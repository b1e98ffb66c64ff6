"""Course assignments in nbgrader's format: the notebooks' exercises, and a course to hand out.

The exercise cells of the notebooks are authored for nbgrader (cell metadata schema 3):

- the **answer cell** (tagged `solution`) has `nbgrader: {solution: true, grade: false,
  grade_id: "exNN-K-answer"}` and the worked solution between `### BEGIN SOLUTION` and
  `### END SOLUTION`, which nbgrader's `generate_assignment` replaces with
  `raise NotImplementedError()` in the students' version;
- the **check cell** right after it (tagged `check`) has `nbgrader: {grade: true, locked: true,
  points: P, grade_id: "exNN-K-check"}` and calls a `qnb.exercises` check, whose diagnosis is the
  student's feedback; what it holds between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`
  runs only when nbgrader autogrades.

This module reads that metadata (`exercises`) and lays out an nbgrader course (`build`): one
assignment per notebook in `source/`, and `release/` made by nbgrader's own `generate_assignment`.
Grading is nbgrader's (`nbgrader autograde`, `generate_feedback`, `export`); there is no other.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from qnb import notebook
from qnb.files import REPO, write_atomic

SOLUTION, CHECK = "solution", "check"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
GRADE_ID = re.compile(r"ex(\d\d)-(\d+)-(answer|check)")
SCHEMA_VERSION = 3
EXECUTE_TIMEOUT = 900  # seconds per cell when nbgrader autogrades (some cells train or time)

CONFIG = '''\
# The qnb course for nbgrader, written by `make assignments` (qnb.assignments.build).
# Run nbgrader from this folder with the qnb environment first on PATH (nbgrader calls `alembic`).
import os

c = get_config()  # noqa: F821 - nbgrader's config loader provides it
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "qnb"
# the gradebook: a local sqlite file, gradebook.db in this folder (nbgrader's default)
# seconds a cell may run when autograding: some cells train or time models
c.Execute.timeout = {timeout}
# what a student finds in place of each ### BEGIN SOLUTION ... ### END SOLUTION region
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
'''


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of a notebook: id "01.2", nbgrader ids, cells (0-based), points."""

    id: str
    answer_id: str
    check_id: str
    answer: int
    check: int
    points: float
    hidden: bool  # the check cell holds hidden tests


def default_notebooks() -> list[Path]:
    """The workbook's notebooks, `notebooks/NN_*.ipynb`, in order."""
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_assignment(nb: nbformat.NotebookNode) -> bool:
    """Whether any cell of `nb` carries nbgrader metadata."""
    return any(_nbgrader(cell) for cell in nb.cells)


def _region(source: str, begin: str, end: str) -> bool:
    lines = [line.strip() for line in source.split("\n")]
    return begin in lines and end in lines and lines.index(begin) < lines.index(end)


def exercises(nb: nbformat.NotebookNode, name: str = "notebook") -> list[Exercise]:
    """The graded exercises of `nb`, one per nbgrader grade cell, in order, after checking that
    the notebook is a well-formed assignment. Raises ValueError saying which cell is wrong and
    how: a cell tagged `solution` without nbgrader metadata or a solution region (nbgrader would
    release it as it is), a grade cell without points or an answer cell right before it, a
    grade_id not of the form exNN-K-answer / exNN-K-check, or used twice."""
    found, seen = [], set()
    answer: int | None = None
    for index, cell in enumerate(nb.cells):
        where = f"{name}: cell {index + 1}"
        meta = _nbgrader(cell)
        if cell.cell_type == "code" and SOLUTION in _tags(cell) and not meta.get("solution"):
            raise ValueError(
                f"{where} is tagged 'solution' but has no nbgrader metadata with solution: true"
            )
        if not meta:
            if cell.cell_type == "code":
                answer = None  # the answer cell must come right before its check
            continue
        grade_id = meta.get("grade_id")
        if meta.get("schema_version") != SCHEMA_VERSION:
            got = meta.get("schema_version")
            raise ValueError(f"{where}: nbgrader schema_version must be 3, got {got!r}")
        if not isinstance(grade_id, str) or not GRADE_ID.fullmatch(grade_id):
            raise ValueError(
                f"{where}: grade_id must look like 'ex01-2-answer' or 'ex01-2-check', "
                f"got {grade_id!r}"
            )
        if grade_id in seen:
            raise ValueError(f"{where}: grade_id {grade_id!r} is used twice")
        seen.add(grade_id)
        number, k, kind = GRADE_ID.fullmatch(grade_id).groups()
        if meta.get("solution"):
            if kind != "answer" or meta.get("grade"):
                raise ValueError(
                    f"{where}: a solution cell is an ungraded 'answer' cell, got grade_id "
                    f"{grade_id!r}, grade {meta.get('grade')!r}"
                )
            if not _region(cell.source, BEGIN_SOLUTION, END_SOLUTION):
                raise ValueError(
                    f"{where} ({grade_id}) has no '{BEGIN_SOLUTION}' ... '{END_SOLUTION}' region"
                )
            answer = index
            continue
        if meta.get("grade"):
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, int | float) or points <= 0:
                raise ValueError(
                    f"{where} ({grade_id}): points must be a number > 0, got {points!r}"
                )
            if kind != "check" or not meta.get("locked"):
                raise ValueError(
                    f"{where}: a grade cell is a locked 'check' cell, got grade_id {grade_id!r}, "
                    f"locked {meta.get('locked')!r}"
                )
            want = f"ex{number}-{k}-answer"
            if answer is None or _nbgrader(nb.cells[answer]).get("grade_id") != want:
                raise ValueError(f"{where} ({grade_id}) does not follow its answer cell {want}")
            hidden = _region(cell.source, BEGIN_HIDDEN, END_HIDDEN)
            found.append(
                Exercise(f"{number}.{k}", want, grade_id, answer, index, points, hidden)
            )
        if cell.cell_type == "code":
            answer = None
    return found


def total_points(nb: nbformat.NotebookNode, name: str = "notebook") -> float:
    """The points a full solution of `nb` earns."""
    return sum(e.points for e in exercises(nb, name))


def _nbgrader_command(args: list[str], root: Path) -> subprocess.CompletedProcess:
    """Run nbgrader's CLI in the course folder, with this environment's scripts on PATH (nbgrader
    runs `alembic` to set up the gradebook)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


def build(
    out: str | Path, notebooks: list[str | Path] | None = None
) -> dict[str, list[tuple[str, float, int]] | list[str]]:
    """Lay out an nbgrader course in `out`: `nbgrader_config.py`, `source/<NN_topic>/` (the
    notebook with its solutions) and `release/<NN_topic>/` (the students' version, made by
    `nbgrader generate_assignment`). One assignment per notebook, named after it.

    Every notebook is checked first (`exercises`); nothing is written if one is malformed. A
    notebook without nbgrader cells is not an assignment: it is skipped and named in
    `skipped`. Returns {"built": [(assignment, points, exercises)], "skipped": [names]}.
    """
    sources = [Path(p) for p in notebooks] if notebooks else default_notebooks()
    if not sources:
        raise ValueError("no notebooks to build: none given and notebooks/NN_*.ipynb is empty")
    for source in sources:
        if source.suffix != ".ipynb" or not source.is_file():
            raise ValueError(f"notebook {str(source)!r} is not an .ipynb file that exists")
    if len({s.stem for s in sources}) != len(sources):
        raise ValueError(f"two notebooks share a name: {[str(s) for s in sources]}")
    root = Path(out).resolve()
    if root.is_file():
        raise ValueError(f"out {str(out)!r} is a file, not a folder for the course")
    plan, skipped = [], []
    for source in sources:
        nb = notebook.read(source)
        if not is_assignment(nb):
            skipped.append(source.name)
            continue
        found = exercises(nb, source.name)
        if not found:
            raise ValueError(f"{source.name}: nbgrader cells but no graded check cell")
        plan.append((source, found))
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "nbgrader_config.py", CONFIG.format(timeout=EXECUTE_TIMEOUT))
    built = []
    for source, found in plan:
        folder = root / "source" / source.stem
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copyfile(source, folder / source.name)
        done = _nbgrader_command(["generate_assignment", source.stem, "--force"], root)
        if done.returncode != 0 or not (root / "release" / source.stem / source.name).is_file():
            log = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"nbgrader generate_assignment {source.stem} failed:\n{log}")
        built.append((source.stem, sum(e.points for e in found), len(found)))
    return {"built": built, "skipped": skipped}
