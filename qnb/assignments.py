"""Course assignments: student and instructor builds of the notebooks, and grading.

An exercise in a notebook is a markdown cell with "**Exercise NN.K.**" and the task, then a
code cell tagged `solution`, then right after it a code cell tagged `check` that calls a check
from `qnb.exercises` (it prints "✔ Exercise NN.K passed" or raises `ExerciseError`). Optional
cell metadata: `hint` on the solution cell (the stub's message, instead of the task's first
sentence) and `points` on the check cell (default 1). "(open)" exercises have no check and are
not graded.

- `build(out)` writes `out/student/` (every solution replaced by a stub that keeps the names the
  solution defines and raises NotImplementedError with a hint; outputs cleared) and
  `out/instructor/` (solutions and outputs kept). In both, solution and check cells carry their
  exercise id in metadata; in the student version they are also tagged `raises-exception`, so
  papermill, nbclient and JupyterLab's "run all" go on past them.
- `grade(paths)` executes submitted notebooks (each in a process of its own, with a timeout,
  every cell allowed to raise) and returns one row per notebook and exercise: passed, points,
  and the check's message.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd

from qnb import notebook, runner, sweep
from qnb.files import REPO, write_atomic

SOLUTION, CHECK, RAISES = "solution", "check", "raises-exception"
HEADING = re.compile(r"\*\*Exercise (\d+\.\d+)\.\*\*")
COLUMNS = ["notebook", "exercise", "passed", "points", "max_points", "message"]
STUDENT, INSTRUCTOR, GRADED = "student", "instructor", "graded"
DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Exercise:
    """One graded exercise of a notebook: its id, cells (0-based indices) and points."""

    id: str  # "01.2"
    check: int
    solution: int | None  # the code cell right before the check, if tagged `solution`
    points: float
    task: str  # the exercise's prose, from its heading to the end of the paragraph


def default_notebooks() -> list[Path]:
    """The workbook's notebooks, `notebooks/NN_*.ipynb`, in order."""
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _tagged(cell: nbformat.NotebookNode, tag: str) -> bool:
    return cell.cell_type == "code" and tag in _tags(cell)


def _add_tag(cell: nbformat.NotebookNode, tag: str) -> None:
    if tag not in _tags(cell):
        cell.metadata["tags"] = [*_tags(cell), tag]


def _tasks(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(id, task) for the exercise headings in front of each cell: the latest one wins."""
    current, found = ("", ""), []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            matches = list(HEADING.finditer(cell.source))
            if matches:
                rest = cell.source[matches[-1].end() :]
                current = (matches[-1].group(1), rest.split("\n\n")[0].strip())
        found.append(current)
    return found


def _points(*cells: nbformat.NotebookNode) -> float:
    for cell in cells:
        value = cell.get("metadata", {}).get("points")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"cell metadata 'points' must be a number >= 0, got {value!r}")
            return value
    return 1


def exercises(nb: nbformat.NotebookNode, name: str = "notebook") -> list[Exercise]:
    """The graded exercises of `nb`, one per `check` cell, in order.

    The id comes from the check cell's metadata `exercise`, else from the nearest
    "**Exercise NN.K.**" heading above it. Raises ValueError when it cannot be told, or twice.
    """
    found: list[Exercise] = []
    tasks = _tasks(nb)
    for index, cell in enumerate(nb.cells):
        if not _tagged(cell, CHECK):
            continue
        exercise_id = str(cell.metadata.get("exercise") or tasks[index][0])
        if not exercise_id:
            raise ValueError(f"{name}: check cell {index + 1} has no **Exercise NN.K.** above it")
        if any(e.id == exercise_id for e in found):
            raise ValueError(f"{name}: two check cells for Exercise {exercise_id}")
        before = _previous_code_cell(nb, index)
        solution = before if before is not None and _tagged(nb.cells[before], SOLUTION) else None
        cells = [cell] + ([nb.cells[solution]] if solution is not None else [])
        task = tasks[index][1] if tasks[index][0] == exercise_id else ""
        found.append(Exercise(exercise_id, index, solution, _points(*cells), task))
    return found


def _previous_code_cell(nb: nbformat.NotebookNode, index: int) -> int | None:
    for before in range(index - 1, -1, -1):
        if nb.cells[before].cell_type == "code":
            return before
    return None


def _validate(nb: nbformat.NotebookNode, name: str) -> list[Exercise]:
    """Exercises of a notebook to build: every solution cell must be followed by its check."""
    found = exercises(nb, name)
    paired = {e.solution for e in found}
    for index, cell in enumerate(nb.cells):
        if _tagged(cell, SOLUTION) and index not in paired:
            raise ValueError(
                f"{name}: solution cell {index + 1} is not followed by a cell tagged 'check'"
            )
    return found


# --- stubs -------------------------------------------------------------------------------


class _Names(ast.NodeVisitor):
    """Names a piece of module code binds, not looking inside functions, classes or lambdas."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and node.id not in self.names:
            self.names.append(node.id)

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self._add(node.name)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_ListComp(self, node: ast.AST) -> None:  # comprehension variables are local
        pass

    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp

    def _add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)


def _parse(source: str, where: str) -> ast.Module:
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")
    )
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise ValueError(
            f"{where}: the solution is not valid Python ({exc.msg}, line {exc.lineno})"
        ) from None


def defined_names(source: str) -> list[str]:
    """Names a solution defines (assignments, defs, classes), in order of first definition."""
    visitor = _Names()
    for statement in _parse(source, "solution").body:
        if not isinstance(statement, ast.Import | ast.ImportFrom):
            visitor.visit(statement)
    return visitor.names


def _plain(markdown: str) -> str:
    """Markdown and LaTeX of a task as one line of plain text (code spans kept as they are)."""
    parts = re.split(r"(`[^`]*`)", markdown)
    for i in range(0, len(parts), 2):  # the text between code spans
        text = re.sub(r"\\[lc]?dots", "…", parts[i])
        text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
        parts[i] = re.sub(r"[*${}]", "", text)
    return " ".join("".join(parts).split())


def hint(exercise: Exercise, solution: nbformat.NotebookNode) -> str:
    """The stub's message: the cell's metadata `hint`, else the task's first sentence."""
    given = solution.get("metadata", {}).get("hint")
    if given:
        return " ".join(str(given).split())
    first = re.split(r"(?<=[.?!])\s", _plain(exercise.task), maxsplit=1)[0]
    return textwrap.shorten(first, 200, placeholder=" ...") if first else "see the task above."


def _raise(message: str, indent: str = "") -> list[str]:
    """`raise NotImplementedError("...")`, the message wrapped into short string literals."""
    parts = textwrap.wrap(message, 80, break_long_words=False, break_on_hyphens=False)
    literals = [json.dumps(p + " ", ensure_ascii=False) for p in parts[:-1]]
    literals.append(json.dumps(parts[-1], ensure_ascii=False))
    if len(literals) == 1:
        return [f"{indent}raise NotImplementedError({literals[0]})"]
    return [
        f"{indent}raise NotImplementedError(",
        *(f"{indent}    {lit}" for lit in literals),
        f"{indent})",
    ]


def _signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(function, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    return f"{prefix} {function.name}({ast.unparse(function.args)}){returns}:"


def _signature_imports(statements: list[ast.stmt]) -> list[str]:
    """The solution's imports that its function signatures need (`def f(x, k=math.pi)`)."""
    functions = [s for s in statements if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    used = {
        node.id
        for f in functions
        for part in (f.args, f.returns)
        if part is not None
        for node in ast.walk(part)
        if isinstance(node, ast.Name)
    }
    return [
        ast.unparse(s)
        for s in statements
        if isinstance(s, ast.Import | ast.ImportFrom)
        and {(a.asname or a.name).split(".")[0] for a in s.names} & used
    ]


def stub(source: str, exercise_id: str, hint_text: str) -> str:
    """A student's starting point for a solution: the same names, no solution.

    Functions keep their signature and raise NotImplementedError(hint) when called; every other
    name the solution defines is set to None, and the cell ends raising NotImplementedError(hint).
    Imports are dropped, except those a signature needs.
    """
    message = f"Exercise {exercise_id}: {hint_text} Replace this stub with your answer."
    statements = _parse(source, f"Exercise {exercise_id}").body
    blocks, names, functions = [_signature_imports(statements), []], [], False
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            blocks += [[_signature(statement), *_raise(message, "    ")], []]
            functions = True
        elif not isinstance(statement, ast.Import | ast.ImportFrom):
            visitor = _Names()
            visitor.visit(statement)
            new = [n for n in visitor.names if n not in names]
            names += new
            blocks[-1] += [f"{n} = None" for n in new]
    if names:
        intro = "replace each None with your answer, then delete the raise."
    elif functions:
        intro = "write the body of the function in place of its raise."
    else:
        intro = "your answer here, then delete the raise."
    if names or not functions:
        blocks[-1] += _raise(message)
    body = "\n\n".join("\n".join(b) for b in blocks if b)
    return f"# Exercise {exercise_id}: {intro}\n{body}"


# --- builds ------------------------------------------------------------------------------


def _mark(nb: nbformat.NotebookNode, found: list[Exercise]) -> None:
    for exercise in found:
        for index in (exercise.solution, exercise.check):
            if index is not None:
                nb.cells[index].metadata["exercise"] = exercise.id


def student_version(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """`nb` with every solution replaced by its stub, outputs and execution counts cleared."""
    nb = notebook.clean(copy.deepcopy(nb))
    found = _validate(nb, name)
    _mark(nb, found)
    for exercise in found:
        check = nb.cells[exercise.check]
        _add_tag(check, RAISES)
        if exercise.solution is not None:
            cell = nb.cells[exercise.solution]
            cell.source = stub(cell.source, exercise.id, hint(exercise, cell))
            _add_tag(cell, RAISES)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def instructor_version(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """`nb` with its solutions and outputs, each exercise cell marked with its id."""
    nb = notebook.clean(copy.deepcopy(nb))
    _mark(nb, _validate(nb, name))
    return nb


def build(out: str | Path, notebooks: list[str | Path] | None = None) -> dict[str, list[Path]]:
    """Write `out/student/*.ipynb` and `out/instructor/*.ipynb`; return the paths written.

    Every notebook is checked (readable, each solution followed by its check, solutions valid
    Python) before anything is written.
    """
    sources = [Path(p) for p in notebooks] if notebooks else default_notebooks()
    if not sources:
        raise ValueError("no notebooks to build: none given and notebooks/NN_*.ipynb is empty")
    versions = []
    for source in sources:
        nb = notebook.read(source)
        versions.append(
            (source.name, student_version(nb, source.name), instructor_version(nb, source.name))
        )
    written: dict[str, list[Path]] = {STUDENT: [], INSTRUCTOR: []}
    for name, student, instructor in versions:
        for kind, nb in ((STUDENT, student), (INSTRUCTOR, instructor)):
            folder = Path(out) / kind
            folder.mkdir(parents=True, exist_ok=True)
            written[kind].append(notebook.write_atomic(nb, folder / name))
    return written


# --- grading -----------------------------------------------------------------------------


def _row(path: str, exercise: str, points: float, passed: bool, got: float, message: str) -> dict:
    return dict(
        notebook=path,
        exercise=exercise,
        passed=passed,
        points=got,
        max_points=points,
        message=message,
    )


def _reference(path: Path, reference: str | Path | None) -> nbformat.NotebookNode | None:
    if reference is None:
        return None
    candidate = Path(reference) / path.name
    return notebook.read(candidate) if candidate.is_file() else None


def _prepare(
    nb: nbformat.NotebookNode, wanted: list[Exercise], ref: nbformat.NotebookNode | None
) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """The submission ready to grade: checks restored from the reference, outputs cleared, and
    every code cell allowed to raise, so an error in one answer (or in a cell the student added)
    does not stop the rest. Returns it and {exercise id: why it cannot be graded}."""
    nb = copy.deepcopy(nb)
    present = {e.id: e for e in exercises(nb)}
    missing = {}
    for exercise in wanted:
        mine = present.get(exercise.id)
        if mine is None:
            missing[exercise.id] = "its check cell is missing from the notebook"
            continue
        check = nb.cells[mine.check]
        if ref is not None:
            check.source = ref.cells[exercise.check].source
        check.metadata["exercise"] = exercise.id
    for cell in nb.cells:
        if cell.cell_type == "code":
            _add_tag(cell, RAISES)
            cell.outputs, cell.execution_count = [], None
    return nb, missing


def _execute(
    source: Path, output: Path, timeout: float | None, workers: sweep.Workers | None = None
) -> dict:
    """Run `source` into `output` in a process of its own, killed after `timeout` seconds."""
    cmd = [sys.executable, "-m", "qnb.runner", str(source), str(output)]
    code, stdout, stderr = (workers or sweep.Workers()).run(cmd, timeout)
    return sweep.run_result(code, stdout, stderr, timeout)


def _cell_error(cell: nbformat.NotebookNode) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    return ""


def _numbered(nb: nbformat.NotebookNode) -> Iterator[tuple[int, nbformat.NotebookNode]]:
    """(position, cell) with positions as in the submitted notebook (papermill's cells skipped)."""
    position = 0
    for cell in nb.cells:
        if {"injected-parameters", "papermill-error-cell-tag"} & set(_tags(cell)):
            continue
        position += 1
        yield position, cell


def _where(position: int, cell: nbformat.NotebookNode, error: str) -> str:
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    return runner.describe_failure(error, position, lines[0] if lines else "")


def _stop_reason(nb: nbformat.NotebookNode, error: str) -> str:
    """Where and why a run ended early (a timeout, a dead kernel): the cell still running when
    it ended, else the last cell that started."""
    started = None
    for position, cell in _numbered(nb):
        status = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and status.get("status") == "running":
            return _where(position, cell, error or "stopped")
        if cell.cell_type == "code" and status.get("start_time"):
            started = (position, cell)
    if started is not None and error:
        return _where(*started, error)
    return error or "the notebook stopped before this cell"


def _check_result(cell: nbformat.NotebookNode, exercise_id: str, stopped: str) -> tuple[bool, str]:
    """(passed, message) from an executed check cell's outputs."""
    printed = "".join(
        o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
    )
    error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
    prefix = f"Exercise {exercise_id}: "
    if error is not None:
        value = str(error.get("evalue", ""))
        if value.startswith(prefix):
            return False, value[len(prefix) :]
        return False, f"{error.get('ename', 'Error')}: {value}"
    passed = re.search(rf"✔ Exercise {re.escape(exercise_id)} passed:? ?(.*)", printed)
    if passed:
        return True, passed.group(1).strip() or "passed"
    if cell.get("execution_count") is None and not cell.get("outputs"):
        return False, f"not run: {stopped}"
    return False, "the check printed no result (was the check cell changed?)"


def _graded_rows(
    label: str,
    executed: nbformat.NotebookNode,
    wanted: list[Exercise],
    missing: dict[str, str],
    error: str,
) -> list[dict]:
    checks, earlier = {}, ""  # id -> (check cell, first failure of a non-exercise cell before)
    for position, cell in _numbered(executed):
        if _tagged(cell, CHECK) and cell.metadata.get("exercise"):
            checks[cell.metadata["exercise"]] = (cell, earlier)
        elif cell.cell_type == "code" and not _tagged(cell, SOLUTION) and _cell_error(cell):
            earlier = earlier or _where(position, cell, _cell_error(cell))
    stopped = _stop_reason(executed, error)
    rows = []
    for exercise in wanted:
        if exercise.id in missing or exercise.id not in checks:
            reason = missing.get(exercise.id, "its check cell is missing")
            rows.append(_row(label, exercise.id, exercise.points, False, 0, reason))
            continue
        cell, failed_before = checks[exercise.id]
        passed, message = _check_result(cell, exercise.id, stopped)
        if not passed and failed_before and not message.startswith("not run"):
            message += f" (an earlier cell failed: {failed_before})"
        got = exercise.points if passed else 0
        rows.append(_row(label, exercise.id, exercise.points, passed, got, message))
    return rows


def grade_notebook(
    path: str | Path,
    work: Path,
    timeout: float | None = DEFAULT_TIMEOUT,
    reference: str | Path | None = None,
    keep: Path | None = None,
    workers: sweep.Workers | None = None,
) -> list[dict]:
    """Rows of one submitted notebook; never raises for a broken or failing submission.

    `work` is an empty scratch folder (the run's working directory); the executed notebook is
    copied to `keep` when given. With `reference` (a folder of instructor or source notebooks),
    the exercises, points and check cells come from the notebook of the same name there.
    """
    path, label = Path(path), str(path)
    ref = _reference(path, reference)
    wanted = exercises(ref, path.name) if ref is not None else []
    try:
        nb = notebook.read(path)
        wanted = wanted if ref is not None else exercises(nb, path.name)
        prepared, missing = _prepare(nb, wanted, ref)
    except Exception as exc:  # noqa: BLE001 - an unreadable submission scores zero, with why
        reason = f"cannot grade this notebook: {type(exc).__name__}: {exc}"
        rows = [_row(label, e.id, e.points, False, 0, reason) for e in wanted]
        return rows or [_row(label, "", 0, False, 0, reason)]
    if not wanted:
        return [_row(label, "", 0, False, 0, "no exercises with a check cell found")]
    source, output = work / "nb" / path.name, work / "nb" / f"graded-{path.name}"
    source.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(prepared, source)
    result = _execute(source, output, timeout, workers)
    try:
        executed = notebook.read(output)
    except Exception:  # noqa: BLE001 - no notebook left behind (killed early, crashed)
        reason = f"the notebook did not run: {result.get('error') or 'no output'}"
        return [_row(label, e.id, e.points, False, 0, reason) for e in wanted]
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_atomic(executed, keep)
    return _graded_rows(label, executed, wanted, missing, result.get("error", ""))


def graded_names(paths: list[str | Path]) -> list[str]:
    """File names for the executed submissions: the file name, or, when two submissions share
    one (alice/01.ipynb, bob/01.ipynb), their path below the common folder joined by `__`."""
    paths = [Path(p).resolve() for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([p.parent for p in paths]))
    return ["__".join(p.relative_to(common).parts) for p in paths]


def grade(
    paths: list[str | Path],
    timeout: float | None = DEFAULT_TIMEOUT,
    reference: str | Path | None = None,
    out: str | Path | None = None,
    jobs: int = 1,
) -> pd.DataFrame:
    """Execute each submitted notebook and return one row per notebook and exercise:
    notebook, exercise, passed, points, max_points, message.

    Runs `jobs` at a time, each in its own process killed after `timeout` seconds. An error in
    a cell does not stop the run (a failed check then names the first earlier cell that failed);
    a submission that cannot be read or does not finish (a dead kernel, the timeout) scores zero
    for the exercises it did not reach, with the reason. With `out`, the executed notebooks are
    kept in `out/graded/` to hand back.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if reference is not None and not Path(reference).is_dir():
        raise ValueError(f"reference folder {str(reference)!r} does not exist")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    workers = sweep.Workers()  # the same run processes and timeout as a sweep

    def one(i: int, path: str | Path, name: str) -> list[dict]:
        keep = Path(out) / GRADED / name if out is not None else None
        return grade_notebook(path, Path(tmp) / str(i), timeout, reference, keep, workers)

    with tempfile.TemporaryDirectory(prefix="qnb-grade-") as tmp:
        pool, names = ThreadPoolExecutor(jobs), graded_names(paths)
        try:
            futures = [
                pool.submit(one, i, p, n) for i, (p, n) in enumerate(zip(paths, names, strict=True))
            ]
            rows = [row for future in futures for row in future.result()]
        except BaseException:  # Ctrl-C: stop the runs still going, then give up
            pool.shutdown(wait=False, cancel_futures=True)
            workers.stop()
            raise
        pool.shutdown()
    return pd.DataFrame(rows, columns=COLUMNS)


def totals(table: pd.DataFrame) -> pd.DataFrame:
    """Points per notebook: notebook, points, max_points, passed (count), exercises (count)."""
    grouped = table.groupby("notebook", sort=False)
    return pd.DataFrame(
        {
            "points": grouped["points"].sum(),
            "max_points": grouped["max_points"].sum(),
            "passed": grouped["passed"].sum(),
            "exercises": grouped["exercise"].apply(lambda s: int((s != "").sum())),
        }
    ).reset_index()


def write_grades(table: pd.DataFrame, out: str | Path) -> tuple[Path, Path]:
    """Write `out/grades.csv` (one row per exercise) and `out/grades.json` (rows and totals)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(table.to_json(orient="records"))
    summary = json.loads(totals(table).to_json(orient="records"))
    csv_path = runner.write_csv_atomic(out / "grades.csv", rows or [dict.fromkeys(COLUMNS)])
    document = json.dumps({"exercises": rows, "totals": summary}, indent=2, ensure_ascii=False)
    json_path = write_atomic(out / "grades.json", document + "\n")
    return csv_path, json_path


def format_table(table: pd.DataFrame) -> str:
    """The grades as text: one line per exercise, then each notebook's total."""
    if table.empty:
        return "no notebooks graded"
    shown = table.assign(passed=table["passed"].map({True: "yes", False: "no"}))
    lines = [shown.to_string(index=False, max_colwidth=70)]
    for row in totals(table).itertuples():
        lines.append(f"total {row.notebook}: {row.points:g} / {row.max_points:g} points")
    return "\n".join(lines)
