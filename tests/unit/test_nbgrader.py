"""The course, end to end with nbgrader's CLI, offline, in a temporary course folder: build it
with `python -m qnb assignments build` (nbgrader's generate_assignment), submit notebook 01 three
times (untouched, the instructor's solution notebook, one wrong answer), `nbgrader autograde`,
`generate_feedback` and `export`. About a minute on 2 cores: notebook 01 is quick.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from qnb import assignments
from qnb.__main__ import main

pytestmark = pytest.mark.slow

FIRST = next(p for p in assignments.default_notebooks() if p.name.startswith("01_"))
NAME = FIRST.stem
STUDENTS = ("untouched", "solution", "wrong")
# Exercise 01.2 answered by multiplying by the scale: the check's first diagnosis
WRONG_ANSWER = (
    "def my_quantize(x, scale, zero_point):\n"
    "    return np.clip(np.rint(x.astype(np.float64) * scale) + zero_point, 0, 255)\n"
)
DIAGNOSIS = "did you multiply by the scale instead of dividing?"


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env = dict(os.environ, PATH=path)  # nbgrader runs `alembic`
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    assert main(["assignments", "build", "--out", str(course), str(FIRST)]) == 0
    release = course / "release" / NAME / FIRST.name
    for student in STUDENTS:
        (course / "submitted" / student / NAME).mkdir(parents=True)
    submitted = {s: course / "submitted" / s / NAME / FIRST.name for s in STUDENTS}
    shutil.copyfile(release, submitted["untouched"])
    shutil.copyfile(course / "source" / NAME / FIRST.name, submitted["solution"])
    wrong = nbformat.read(course / "source" / NAME / FIRST.name, as_version=4)
    answer = next(e for e in _exercises() if e.id == "01.2").answer
    wrong.cells[answer].source = WRONG_ANSWER
    nbformat.write(wrong, submitted["wrong"])
    _nbgrader(course, "autograde", NAME, "--force")
    _nbgrader(course, "generate_feedback", NAME, "--force")
    _nbgrader(course, "export", "--to", str(course / "grades.csv"))
    return course


def _scores(course: Path) -> dict[str, dict[str, float]]:
    """{student: {grade_id: score}} from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in STUDENTS:
            submission = gb.find_submission_notebook(NAME, NAME, student)
            found[student] = {g.cell.name: g.score for g in submission.grades}
    return found


def _max_points() -> float:
    return assignments.total_points(nbformat.read(FIRST, as_version=4))


def _exercises() -> list[assignments.Exercise]:
    """The exercises of notebook 01 (the cells keep their places in every version)."""
    return assignments.exercises(nbformat.read(FIRST, as_version=4))


def test_the_released_notebook_has_stubs_and_no_solution_text(course):
    source = nbformat.read(FIRST, as_version=4)
    released = nbformat.read(course / "release" / NAME / FIRST.name, as_version=4)
    text = "\n".join(c.source for c in released.cells)
    for e in assignments.exercises(source):
        solution = source.cells[e.answer].source
        region = solution.split(assignments.BEGIN_SOLUTION)[1].split(assignments.END_SOLUTION)[0]
        for line in filter(None, (s.strip() for s in region.split("\n"))):
            assert line not in text, f"solution line of {e.id} released: {line!r}"
        assert "raise NotImplementedError()" in released.cells[e.answer].source
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert not any(c.get("outputs") for c in released.cells if c.cell_type == "code")


def test_an_untouched_student_notebook_scores_zero_and_is_told_not_answered_yet(course):
    scores = _scores(course)["untouched"]
    assert scores and all(v == 0 for v in scores.values()), scores
    graded = nbformat.read(course / "autograded" / "untouched" / NAME / FIRST.name, as_version=4)
    for e in _exercises():
        errors = [o for o in graded.cells[e.check].outputs if o.output_type == "error"]
        assert errors and errors[0].evalue.startswith(f"Exercise {e.id}: not answered yet")


def test_the_solution_notebook_submitted_as_a_students_scores_full_points(course):
    scores = _scores(course)["solution"]
    assert sum(scores.values()) == _max_points() == 5
    with open(course / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows["solution"]["score"]) == float(rows["solution"]["max_score"]) == 5
    assert float(rows["untouched"]["score"]) == 0


def test_one_wrong_answer_scores_zero_for_its_cell_and_its_feedback_holds_the_diagnosis(course):
    scores = _scores(course)["wrong"]
    assert scores["ex01-2-check"] == 0
    assert sum(scores.values()) == _max_points() - 3  # the other exercises still count
    feedback = (course / "feedback" / "wrong" / NAME / f"{NAME}.html").read_text()
    assert DIAGNOSIS.replace("?", "") in feedback
    graded = nbformat.read(course / "autograded" / "wrong" / NAME / FIRST.name, as_version=4)
    check = next(e for e in _exercises() if e.id == "01.2").check
    assert any(DIAGNOSIS in o.get("evalue", "") for o in graded.cells[check].outputs)
