"""The notebooks' exercises in nbgrader's format, and `python -m qnb assignments build`: cheap
static checks over every notebook, with nbgrader's own preprocessors run in-process (no kernel).

What nbgrader's CLI does with them (generate_assignment, autograde, feedback, export) is in
test_nbgrader.py, on notebook 01.
"""

from __future__ import annotations

import builtins
import copy

import nbformat
import pytest
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

from qnb import assignments, exercises
from qnb.__main__ import main
from qnb.notebook import KERNELSPEC

NOTEBOOKS = assignments.default_notebooks()
ASSIGNMENTS = [p for p in NOTEBOOKS if assignments.is_assignment(nbformat.read(p, as_version=4))]


def _released(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What nbgrader's generate_assignment does to the sources of the cells."""
    nb = copy.deepcopy(nb)
    for preprocessor in (ClearSolutions(), ClearHiddenTests()):
        nb, _ = preprocessor.preprocess(nb, {})
    return nb


def _region_lines(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.split("\n"):
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def _secret_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Lines of the solution and hidden-test regions that are not also written somewhere else
    in the notebook (a solution may repeat a line of the lesson), comments and `pass` aside."""
    secret, regions = set(), (
        (assignments.BEGIN_SOLUTION, assignments.END_SOLUTION),
        (assignments.BEGIN_HIDDEN, assignments.END_HIDDEN),
    )
    for cell in nb.cells:
        for begin, end in regions:
            secret.update(_region_lines(cell.source, begin, end))
    public = set()
    for cell in nb.cells:
        hidden = {s for begin, end in regions for s in _region_lines(cell.source, begin, end)}
        public.update(s.strip() for s in cell.source.split("\n") if s.strip() not in hidden)
    return sorted(s for s in secret - public if not s.startswith("#") and s != "pass")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_exercise_is_an_nbgrader_answer_cell_and_a_graded_check_with_points(path):
    nb = nbformat.read(path, as_version=4)
    assert path in ASSIGNMENTS, f"{path.name} lost its nbgrader cells: it would not be released"
    found = assignments.exercises(nb, path.name)
    assert found
    tagged = [i for i, c in enumerate(nb.cells) if "check" in c.metadata.get("tags", [])]
    assert [e.check for e in found] == tagged, "every check cell is graded, and only those"
    for e in found:
        assert e.check == e.answer + 1, f"{e.id}: the check comes right after the answer cell"
        assert e.answer_id == f"ex{e.id.replace('.', '-')}-answer" and e.points > 0
        assert f"**Exercise {e.id}.**" in "\n".join(c.source for c in nb.cells[: e.answer])
        assert nb.cells[e.answer].metadata["nbgrader"]["solution"] is True
        assert nb.cells[e.check].metadata["nbgrader"]["locked"] is True
    assert len({e.id for e in found}) == len(found)


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.name[:2])
def test_points_reflect_effort_one_exercise_per_notebook_writes_the_core(path):
    """Points from 1 (a number read off a table) to 3 (writing the core of the technique)."""
    found = assignments.exercises(nbformat.read(path, as_version=4), path.name)
    assert all(e.points in (1, 2, 3) for e in found)
    assert max(e.points for e in found) == 3, f"{path.name}: no core-technique exercise"


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.name[:2])
def test_no_solution_or_hidden_test_text_is_left_in_the_students_version(path):
    nb = nbformat.read(path, as_version=4)
    secret = _secret_lines(nb)
    assert secret, "every notebook has solutions to hide"
    released = _released(nb)
    text = "\n".join(c.source for c in released.cells)
    assert assignments.BEGIN_SOLUTION not in text and assignments.BEGIN_HIDDEN not in text
    lines = {line.strip() for line in text.split("\n")}
    assert not [s for s in secret if s in lines]


class _Placeholder:
    """Whatever a check cell reads from the notebook before it (`sqnr["uniform"]`, `model.fc`,
    `f(x)`): the unanswered stub must be diagnosed before any of it is looked at."""

    def __getitem__(self, key: object) -> _Placeholder:
        return self

    def __getattr__(self, name: str) -> _Placeholder:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _Placeholder:
        return self


class _Names(dict):
    """Locals for running a stub and its check with none of the notebook before them: the
    checks, torch, builtins and `engine` resolve, every other name is a placeholder."""

    def __missing__(self, name: str):
        import torch

        from qnb import env

        # a check validates its engine argument before it looks at the answer
        known = {**vars(builtins), "torch": torch, **vars(exercises)}
        known["engine"] = env.default_engine()
        return known[name] if name in known else _Placeholder()


@pytest.mark.parametrize("path", ASSIGNMENTS, ids=lambda p: p.name[:2])
def test_every_students_stub_raises_and_its_check_says_not_answered_yet(path):
    """The student's version, run exercise by exercise: nbgrader's stub raises
    NotImplementedError, and the check after it (hidden tests and all) fails as "not answered
    yet", naming the exercise, not with a confusing traceback (the student's feedback)."""
    nb = nbformat.read(path, as_version=4)
    released = _released(nb)
    for e in assignments.exercises(nb, path.name):
        names = _Names()
        with pytest.raises(NotImplementedError) if _raises_at_once(released, e) else _nothing():
            exec(released.cells[e.answer].source, names, names)
        with pytest.raises(exercises.ExerciseError, match="not answered yet") as failed:
            exec(nb.cells[e.check].source, names, names)
        assert str(failed.value).startswith(f"Exercise {e.id}: ")


def _raises_at_once(nb: nbformat.NotebookNode, e: assignments.Exercise) -> bool:
    """A stub at the top level of the cell raises at once; inside a def it raises when called."""
    lines = nb.cells[e.answer].source.split("\n")
    return any(line.startswith("raise NotImplementedError") for line in lines)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_committed_outputs_show_every_check_passing_with_the_worked_solutions():
    """The committed notebooks carry a run with the worked solutions (nbval re-runs them)."""
    for path in ASSIGNMENTS:
        nb = nbformat.read(path, as_version=4)
        for e in assignments.exercises(nb, path.name):
            outputs = nb.cells[e.check].outputs
            assert any(f"✔ Exercise {e.id} passed" in o.get("text", "") for o in outputs), (
                f"{path.name}: the committed output of the check of {e.id} is not a pass"
            )


# --- malformed assignments are refused, naming the cell ---------------------------------------


def _notebook(*cells: tuple[str, str, dict | None]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for kind, source, meta in cells:
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = new(source)
        if meta is not None:
            cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, **meta}
            cell.metadata["tags"] = ["solution" if meta.get("solution") else "check"]
        nb.cells.append(cell)
    return nb


ANSWER = {"solution": True, "grade": False, "locked": False, "grade_id": "ex99-1-answer"}
CHECK = {"solution": False, "grade": True, "locked": True, "grade_id": "ex99-1-check", "points": 2}
GOOD = [
    ("md", "**Exercise 99.1.** Compute 42.", None),
    ("code", "a = None\n### BEGIN SOLUTION\na = 42\n### END SOLUTION", ANSWER),
    ("code", "assert a == 42\n### BEGIN HIDDEN TESTS\nassert a + 1 == 43\n### END HIDDEN TESTS",
     CHECK),
]  # fmt: skip


def test_a_well_formed_exercise_is_read_with_its_points_and_hidden_tests():
    (e,) = assignments.exercises(_notebook(*GOOD))
    assert (e.id, e.answer, e.check, e.points, e.hidden) == ("99.1", 1, 2, 2, True)
    assert assignments.total_points(_notebook(*GOOD)) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ((1, "source", "a = 42"), r"cell 2 \(ex99-1-answer\) has no '### BEGIN SOLUTION'"),
        ((2, "points", None), r"cell 3 \(ex99-1-check\): points must be a number > 0, got None"),
        ((2, "points", 0), "points must be a number > 0, got 0"),
        ((2, "grade_id", "ex99-1-answer"), "grade_id 'ex99-1-answer' is used twice"),
        ((2, "grade_id", "check 1"), "grade_id must look like 'ex01-2-answer'.*got 'check 1'"),
        ((2, "locked", False), "a grade cell is a locked 'check' cell"),
        ((1, "grade_id", "ex99-2-answer"), r"cell 3 \(ex99-1-check\) does not follow its answer"),
        ((1, "nbgrader", None), "cell 2 is tagged 'solution' but has no nbgrader metadata"),
        ((2, "schema_version", 1), "schema_version must be 3, got 1"),
    ],
)
def test_a_malformed_exercise_is_refused_naming_the_cell(change, message):
    nb = _notebook(*GOOD)
    index, key, value = change
    if key == "source":
        nb.cells[index].source = value
    elif key == "nbgrader":
        del nb.cells[index].metadata["nbgrader"]
    elif value is None:
        del nb.cells[index].metadata["nbgrader"][key]
    else:
        nb.cells[index].metadata["nbgrader"][key] = value
    with pytest.raises(ValueError, match=message):
        assignments.exercises(nb, "n.ipynb")


def test_the_command_line_refuses_bad_input_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "course"
    assert main(["assignments", "build", "--out", str(out), str(tmp_path / "nope.ipynb")]) == 2
    assert "nope.ipynb' is not an .ipynb file that exists" in capsys.readouterr().err
    bad = _notebook(*GOOD)
    bad.cells[2].metadata["nbgrader"]["points"] = -1
    nbformat.write(bad, tmp_path / "99_bad.ipynb")
    assert main(["assignments", "build", "--out", str(out), str(tmp_path / "99_bad.ipynb")]) == 2
    assert "99_bad.ipynb: cell 3 (ex99-1-check): points must be a number > 0, got -1" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_grading_is_nbgraders_the_old_grade_command_says_so(capsys):
    assert main(["assignments", "grade", "x.ipynb"]) == 2
    err = capsys.readouterr().err
    assert "nbgrader autograde" in err and "docs/instructors.md" in err


def test_a_notebook_without_nbgrader_cells_is_skipped_not_released(tmp_path, capsys):
    plain = _notebook(("md", "# no exercises", None), ("code", "x = 1", None))
    nbformat.write(plain, tmp_path / "98_plain.ipynb")
    result = assignments.build(tmp_path / "course", [tmp_path / "98_plain.ipynb"])
    assert result == {"built": [], "skipped": ["98_plain.ipynb"]}
    assert not (tmp_path / "course" / "release").exists()
