"""Execute one notebook with papermill; a failing notebook is a result, not a crash.

Each notebook runs in its own kernel (the `python3` kernel of this environment) with its
folder as working directory. The result names the failing cell by its position in the source
notebook. `python -m qnb.runner SOURCE OUTPUT [PARAMETERS]` runs one notebook in a process of
its own (what `qnb.sweep` starts per run) and prints the result as one JSON line.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from qnb import notebook
from qnb.files import write_atomic
from qnb.records import read_records

KERNEL = "python3"


@dataclass
class RunResult:
    """Outcome of one notebook execution."""

    notebook: str
    output: Path
    status: str  # "ok" or "failed"
    seconds: float
    error: str = ""
    records: dict = field(default_factory=dict)
    cell: int | None = None  # 1-based position of the failing cell in the source notebook
    cell_source: str = ""  # its first line of code


RESULT_MARKER = "QNB_RESULT "
_INJECTED_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _describe(exc: Exception) -> str:
    if isinstance(exc, PapermillExecutionError):
        return f"{exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"


def failing_cell(nb: nbformat.NotebookNode) -> tuple[int, str] | None:
    """Position (1-based, in the source notebook) and first line of the cell that failed.

    A cell papermill left `running` counts as failing: the run stopped there (a timeout or a
    killed kernel). Cells papermill injected (parameters, error banner) are not counted.
    """
    position = 0
    for cell in nb.cells:
        if _INJECTED_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        position += 1
        if cell.get("metadata", {}).get("papermill", {}).get("status") in ("failed", "running"):
            lines = [line for line in cell.source.splitlines() if line.strip()]
            return position, (lines[0].strip() if lines else "")
    return None


def describe_failure(error: str, cell: int | None, cell_source: str) -> str:
    """One line for people: `cell 3 (raise RuntimeError('boom')): RuntimeError: boom`."""
    if cell is None:
        return error
    return f"cell {cell} ({cell_source}): {error}" if cell_source else f"cell {cell}: {error}"


def execute(
    source: str | Path,
    output: str | Path,
    parameters: dict | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Execute `source` into `output` with papermill; never raises for a failing notebook."""
    source, output = Path(source), Path(output)
    notebook.parameter_names(notebook.read(source))  # fails early on a malformed notebook
    output.parent.mkdir(parents=True, exist_ok=True)
    start, error = time.perf_counter(), ""
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters or {},
            kernel_name=KERNEL,
            progress_bar=False,
            cwd=str(source.parent),
            execution_timeout=timeout,
        )
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        error = _describe(exc)
    seconds = time.perf_counter() - start
    records, where = {}, None
    if output.is_file():
        records = read_records(output)
        where = failing_cell(nbformat.read(output, as_version=4)) if error else None
    status = "failed" if error else "ok"
    cell, cell_source = where or (None, "")
    return RunResult(source.name, output, status, seconds, error, records, cell, cell_source)


def write_csv_atomic(path: str | Path, rows: list[dict]) -> Path:
    """Write `rows` as CSV (columns in order of first appearance) atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())


def refresh(notebooks: list[str | Path]) -> None:
    """Re-execute committed notebooks in place with default parameters, then clean them."""
    for source in map(Path, notebooks):
        with tempfile.TemporaryDirectory() as tmp:
            result = execute(source, Path(tmp) / source.name)
            if result.status != "ok":
                where = describe_failure(result.error, result.cell, result.cell_source)
                raise RuntimeError(f"{source.name} failed: {where}; left unchanged")
            nb = notebook.clean(notebook.read(result.output))
        notebook.write_atomic(nb, source)
        print(f"{source.name}: refreshed in {result.seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """`python -m qnb.runner SOURCE OUTPUT [PARAMETERS]`: one run, its result as a JSON line.

    PARAMETERS is a Python dict literal such as `{'bits': 4}`. Exit status 0 means ok.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m qnb.runner SOURCE OUTPUT [PARAMETERS]", file=sys.stderr)
        return 2
    parameters = ast.literal_eval(args[2]) if len(args) == 3 else {}
    result = execute(args[0], args[1], parameters)
    fields = ("status", "seconds", "error", "cell", "cell_source")
    print(RESULT_MARKER + json.dumps({k: getattr(result, k) for k in fields}), flush=True)
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
