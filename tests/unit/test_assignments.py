"""qnb.assignments and `python -m qnb assignments build|grade`.

The builds use the real notebooks (no execution). Grading executes notebook 01 twice (its
instructor and its untouched student version, ~10 s each) and a few tiny synthetic notebooks;
the slower notebooks are covered by the in-process stub/check test and by nbval, which runs
their committed solutions through their checks.
"""

from __future__ import annotations

import ast
import builtins
import json

import nbformat
import pytest

import qnb
from qnb import assignments, exercises
from qnb.__main__ import main
from qnb.notebook import KERNELSPEC

NOTEBOOKS = assignments.default_notebooks()
FIRST = next(p for p in NOTEBOOKS if p.name.startswith("01_"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    assignments.build(out)
    return out


def _strings(node) -> list[str]:
    """Every string (keys and values) anywhere in a JSON document."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (k, *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _solution_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Lines only the solutions have: not blank or punctuation, not a `def` header or an import
    (a stub keeps those its signatures need), and not also written elsewhere in the notebook."""
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    elsewhere = "\n".join(c.source for c in nb.cells if c not in solutions)
    lines = {line.strip() for c in solutions for line in c.source.splitlines()}
    return sorted(
        line
        for line in lines
        if len(line.replace(" ", "")) >= 6
        and not line.startswith(("def ", "async def ", "#", "import ", "from "))
        and line not in elsewhere
    )


def _cells(nb: nbformat.NotebookNode, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


# --- the build, on the real notebooks --------------------------------------------------------


def test_every_notebook_gets_a_student_and_an_instructor_version(built):
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    for kind in ("student", "instructor"):
        assert sorted(p.name for p in (built / kind).glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


def test_student_versions_keep_everything_but_solutions_and_outputs(built):
    for source in NOTEBOOKS:
        original = nbformat.read(source, as_version=4)
        student = nbformat.read(built / "student" / source.name, as_version=4)
        instructor = nbformat.read(built / "instructor" / source.name, as_version=4)
        nbformat.validate(student)
        assert len(student.cells) == len(original.cells) == len(instructor.cells)
        for mine, theirs, key in zip(student.cells, original.cells, instructor.cells, strict=True):
            assert key.source == theirs.source  # the instructor version keeps the solutions
            if "solution" not in theirs.metadata.get("tags", []):
                assert mine.source == theirs.source, f"{source.name}: a cell changed"
            if mine.cell_type == "code":
                assert mine.outputs == [] and mine.execution_count is None


def test_no_solution_text_appears_anywhere_in_the_student_build(built):
    text = "\n".join(
        s
        for path in sorted((built / "student").rglob("*"))
        if path.is_file()
        for s in _strings(json.loads(path.read_text()))
    )
    checked = 0
    for source in NOTEBOOKS:
        for line in _solution_lines(nbformat.read(source, as_version=4)):
            assert line not in text, f"{source.name}: solution text in the student build: {line}"
            checked += 1
    assert checked >= len(NOTEBOOKS)


def test_every_solution_is_followed_by_its_check_and_its_stub_keeps_its_names(built):
    for source in NOTEBOOKS:
        original = nbformat.read(source, as_version=4)
        student = nbformat.read(built / "student" / source.name, as_version=4)
        found = assignments.exercises(original, source.name)
        assert [e.solution for e in found] == _cells(original, "solution")
        assert [e.check for e in found] == _cells(original, "check")
        for exercise in found:
            assert exercise.check == exercise.solution + 1
            stub, check = student.cells[exercise.solution], student.cells[exercise.check]
            ast.parse(stub.source)
            assert assignments.defined_names(stub.source) == assignments.defined_names(
                original.cells[exercise.solution].source
            )
            assert (
                f"Exercise {exercise.id}: " in stub.source and "NotImplementedError" in stub.source
            )
            for cell in (stub, check):
                assert "raises-exception" in cell.metadata["tags"]
                assert cell.metadata["exercise"] == exercise.id


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
    checks and builtins resolve, every other name is a placeholder."""

    def __missing__(self, name: str):
        return vars(exercises).get(name, getattr(builtins, name, _Placeholder()))


def test_every_stub_fails_and_then_its_check_says_not_answered_yet(built):
    ran = 0
    for source in NOTEBOOKS:
        student = nbformat.read(built / "student" / source.name, as_version=4)
        for exercise in assignments.exercises(student, source.name):
            names = _Names()
            try:
                exec(student.cells[exercise.solution].source, {}, names)
            except NotImplementedError as exc:
                assert str(exc).startswith(f"Exercise {exercise.id}: ")
            with pytest.raises(exercises.ExerciseError, match="not answered yet") as failed:
                exec(student.cells[exercise.check].source, {}, names)
            assert str(failed.value).startswith(f"Exercise {exercise.id}: ")
            ran += 1
    assert ran >= 2 * len(NOTEBOOKS)


# --- grading notebook 01 for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def graded_01(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("grades")
    paths = [built / kind / FIRST.name for kind in ("instructor", "student")]
    table = assignments.grade(paths, timeout=600, out=out, jobs=2)
    return table, out, [str(p) for p in paths]


def test_the_instructor_notebook_gets_full_marks(graded_01):
    table, _, (instructor, _) = graded_01
    rows = table[table.notebook == instructor]
    assert len(rows) == 3 and rows.passed.all(), rows.message.tolist()
    assert (rows.points == rows.max_points).all()


def test_an_untouched_student_notebook_gets_zero_and_runs_to_the_end(graded_01):
    table, out, (_, student) = graded_01
    rows = table[table.notebook == student]
    assert len(rows) == 3 and not rows.passed.any() and (rows.points == 0).all()
    assert rows.message.str.startswith("not answered yet").all(), rows.message.tolist()
    executed = nbformat.read(out / "graded" / f"student__{FIRST.name}", as_version=4)
    stubs = [executed.cells[i] for i in _cells(executed, "solution")]
    assert all(
        any(o.get("ename") == "NotImplementedError" for o in c.outputs)
        for c in stubs
        if "= None" in c.source
    )
    assert qnb.read_records(out / "graded" / f"student__{FIRST.name}")  # the last cell ran


def test_grades_are_written_as_csv_and_json(graded_01, tmp_path):
    table, _, (instructor, student) = graded_01
    csv_path, json_path = assignments.write_grades(table, tmp_path)
    assert csv_path.read_text().splitlines()[0] == ",".join(assignments.COLUMNS)
    document = json.loads(json_path.read_text())
    assert len(document["exercises"]) == 6
    totals = {t["notebook"]: (t["points"], t["max_points"]) for t in document["totals"]}
    assert totals == {instructor: (3, 3), student: (0, 3)}
    assert "total" in assignments.format_table(table)


# --- small synthetic notebooks ----------------------------------------------------------------


def _exercise_notebook(path, setup: str, *exercises_: tuple[str, str, str, dict]):
    """A notebook: parameters, `setup`, then per exercise (id, solution, check, metadata) a
    task, a solution and a check cell, and a last cell that records `done`."""
    new_code, new_md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    params = new_code("seed = 0")
    params.metadata["tags"] = ["parameters"]
    cells = [params, new_code(setup)]
    for exercise_id, solution, check, metadata in exercises_:
        cells.append(new_md(f"**Exercise {exercise_id}.** Compute the answer. Then relax."))
        cells.append(new_code(solution, metadata={"tags": ["solution"], **metadata}))
        cells.append(new_code(check, metadata={"tags": ["check"]}))
    cells.append(new_code("import qnb\nqnb.record('done', 1)"))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC)})
    nbformat.write(nb, path)
    return path


def _check(exercise_id: str, name: str, want: int) -> str:
    return (
        f"assert {name} == {want}, f'Exercise {exercise_id}: {name} is {{{name}}}, want {want}'\n"
        f"print('✔ Exercise {exercise_id} passed: {name} = {want}')"
    )


EXERCISES = (
    ("99.1", "a = 6 * 7", _check("99.1", "a", 42), {"points": 2}),
    ("99.2", "b = 1", _check("99.2", "b", 2), {}),
    ("99.3", "c = = 3", _check("99.3", "c", 3), {}),
)


def test_stubs_keep_names_and_signatures_and_fail_with_the_hint():
    solution = (
        "import math\n"
        "lo, (hi, mid) = 0, (1, 2)\n"
        "total = 0\n"
        "for k in range(3):\n"
        "    total += k\n"
        "def area(r: float, scale=math.pi) -> float:\n"
        '    """Area."""\n'
        "    return scale * r**2\n"
        "squares = [i * i for i in range(3)]\n"
    )
    stub = assignments.stub(solution, "99.1", "Compute the thing.")
    assert "def area(r: float, scale=math.pi) -> float:" in stub
    assert "return scale" not in stub and "range(3)" not in stub and "Area" not in stub
    assert assignments.defined_names(stub) == ["lo", "hi", "mid", "total", "k", "area", "squares"]
    names = {}
    with pytest.raises(NotImplementedError, match=r"^Exercise 99\.1: Compute the thing\."):
        exec(stub, {}, names)
    assert names["lo"] is None and names["squares"] is None
    with pytest.raises(NotImplementedError, match="Compute the thing"):
        names["area"](1.0)
    only_a_function = assignments.stub("def f(x):\n    return 2 * x\n", "99.2", "Double it.")
    scope = {}
    exec(only_a_function, scope)  # nothing to raise at cell level: f raises when called
    with pytest.raises(NotImplementedError, match="^Exercise 99.2: Double it"):
        scope["f"](1)


def test_the_hint_comes_from_cell_metadata_else_from_the_task(tmp_path):
    path = _exercise_notebook(
        tmp_path / "n.ipynb", "pass", ("99.1", "a = 1", "check(a)", {"hint": "Think of 42."})
    )
    student = assignments.student_version(nbformat.read(path, as_version=4))
    assert "Exercise 99.1: Think of 42." in student.cells[3].source
    path = _exercise_notebook(tmp_path / "m.ipynb", "pass", ("99.1", "a = 1", "check(a)", {}))
    plain = assignments.student_version(nbformat.read(path, as_version=4))
    assert "Exercise 99.1: Compute the answer." in plain.cells[3].source
    assert "relax" not in plain.cells[3].source  # the first sentence only
    task = "Compute **$2^{b}$** with `2**bits`, in $[-8 \\dots 7]$. More."
    exercise = assignments.Exercise("99.1", check=2, solution=1, points=1, task=task)
    assert assignments.hint(exercise, nbformat.v4.new_code_cell()) == (
        "Compute 2^b with `2**bits`, in [-8 … 7]."
    )


def test_a_solution_without_a_check_is_refused(tmp_path, capsys):
    path = _exercise_notebook(tmp_path / "n.ipynb", "pass", ("99.1", "a = 1", "check(a)", {}))
    nb = nbformat.read(path, as_version=4)
    nb.cells[4].metadata["tags"] = []
    nbformat.write(nb, path)
    assert main(["assignments", "build", "--out", str(tmp_path / "out"), str(path)]) == 2
    assert "solution cell 4 is not followed by a cell tagged 'check'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def graded_synthetic(tmp_path_factory):
    """One grading run: a good notebook (also the reference), a tampered copy of it, one with an
    error before its exercises, one whose kernel dies, and a file that is not a notebook."""
    tmp = tmp_path_factory.mktemp("synthetic")
    (tmp / "ref").mkdir()
    (tmp / "alice").mkdir()
    good = _exercise_notebook(tmp / "ref" / "ex.ipynb", "x = 1", *EXERCISES)
    tampered = nbformat.read(good, as_version=4)
    tampered.cells[3].source = "a = 0"  # wrong answer ...
    tampered.cells[4].source = "print('✔ Exercise 99.1 passed')"  # ... and a check that lies
    del tampered.cells[6:8]  # Exercise 99.2's solution and check deleted
    nbformat.write(tampered, tmp / "alice" / "ex.ipynb")
    oops = _exercise_notebook(tmp / "oops.ipynb", "1 / 0", *EXERCISES[:2])
    crash = _exercise_notebook(tmp / "crash.ipynb", "import os\nos._exit(1)", *EXERCISES[:2])
    broken = tmp / "broken.ipynb"
    broken.write_text("{ not a notebook")
    paths = [good, tmp / "alice" / "ex.ipynb", oops, crash, broken]
    table = assignments.grade(paths, timeout=300, reference=tmp / "ref", out=tmp / "out", jobs=2)
    return table, tmp, [str(p) for p in paths]


def _by_exercise(table, path) -> dict[str, tuple[bool, float, str]]:
    rows = table[table.notebook == path]
    return {r.exercise: (r.passed, r.points, r.message) for r in rows.itertuples()}


def test_grading_reports_points_and_the_checks_messages(graded_synthetic):
    table, _, (good, *_) = graded_synthetic
    assert _by_exercise(table, good) == {
        "99.1": (True, 2, "a = 42"),
        "99.2": (False, 0, "b is 1, want 2"),
        "99.3": (False, 0, "NameError: name 'c' is not defined"),  # its solution did not parse
    }


def test_edited_or_deleted_checks_are_graded_with_the_reference(graded_synthetic):
    table, _, (_, tampered, *_) = graded_synthetic
    graded = _by_exercise(table, tampered)
    assert graded["99.1"] == (False, 0, "a is 0, want 42")
    assert graded["99.2"] == (False, 0, "its check cell is missing from the notebook")


def test_an_error_does_not_stop_the_run_and_failed_checks_name_it(graded_synthetic):
    table, _, (_, _, oops, *_) = graded_synthetic
    earlier = "(an earlier cell failed: cell 2 (1 / 0): ZeroDivisionError: division by zero)"
    assert _by_exercise(table, oops) == {
        "99.1": (True, 2, "a = 42"),
        "99.2": (False, 0, f"b is 1, want 2 {earlier}"),
    }


def test_a_notebook_that_crashes_or_is_unreadable_scores_zero_with_the_reason(graded_synthetic):
    table, tmp, (*_, crash, broken) = graded_synthetic
    for passed, points, message in _by_exercise(table, crash).values():
        assert (passed, points) == (False, 0)
        assert message == "not run: cell 2 (import os): DeadKernelError: Kernel died"
    (row,) = _by_exercise(table, broken).items()
    assert row[0] == "" and row[1][:2] == (False, 0) and "cannot grade" in row[1][2]
    assert (tmp / "out" / "graded" / "crash.ipynb").is_file()
    assert (tmp / "out" / "graded" / "alice__ex.ipynb").is_file()


def test_a_notebook_that_hangs_is_stopped_at_the_timeout(tmp_path):
    slow = _exercise_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(600)", *EXERCISES)
    table = assignments.grade([slow], timeout=8)
    assert len(table) == 3 and not table.passed.any()
    assert table.message.str.contains("timed out after 8 s").all(), table.message.tolist()


def test_the_command_line_builds_and_grades(tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["assignments", "build", "--out", str(out), str(FIRST)]) == 0
    assert (out / "student" / FIRST.name).is_file() and (out / "instructor" / FIRST.name).is_file()
    broken = tmp_path / "broken.ipynb"
    broken.write_text("nope")
    assert main(["assignments", "grade", str(broken), "--out", str(tmp_path / "g")]) == 0
    assert "cannot grade" in capsys.readouterr().out
    assert (tmp_path / "g" / "grades.csv").is_file() and (tmp_path / "g" / "grades.json").is_file()
    with pytest.raises(SystemExit):
        main(["assignments", "grade", str(broken), "--timeout", "0"])
