"""Execute notebooks with papermill and collect what they record.

Each notebook runs in its own kernel (the `python3` kernel of this environment) with its
folder as working directory. A failing notebook is reported with the failing cell and the
others still run.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import papermill
from papermill.exceptions import PapermillExecutionError

from qnb import notebook
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


def _describe(exc: Exception) -> str:
    if isinstance(exc, PapermillExecutionError):
        return f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"


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
    records = read_records(output) if output.is_file() else {}
    status = "failed" if error else "ok"
    return RunResult(source.name, output, status, seconds, error, records)


def write_csv_atomic(path: str | Path, rows: list[dict]) -> Path:
    """Write `rows` as CSV via a temporary file and a rename, so no reader sees half a file."""
    path = Path(path)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def run_all(notebooks: list[str | Path], out: str | Path) -> list[RunResult]:
    """Execute every notebook into `out` and write `out/records.csv` (one row per record)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    for source in map(Path, notebooks):
        print(f"[{len(results) + 1}/{len(notebooks)}] {source.name} ...", flush=True)
        result = execute(source, out / source.name)
        print(f"    {result.status} in {result.seconds:.0f} s {result.error}", flush=True)
        results.append(result)
        rows += [
            {"notebook": result.notebook, "status": result.status, "name": k, "value": v}
            for k, v in result.records.items()
        ] or [{"notebook": result.notebook, "status": result.status, "name": "", "value": ""}]
    write_csv_atomic(out / "records.csv", rows)
    return results


def refresh(notebooks: list[str | Path]) -> None:
    """Re-execute committed notebooks in place with default parameters, then clean them."""
    for source in map(Path, notebooks):
        with tempfile.TemporaryDirectory() as tmp:
            result = execute(source, Path(tmp) / source.name)
            if result.status != "ok":
                raise RuntimeError(f"{source.name} failed ({result.error}); left unchanged")
            nb = notebook.clean(notebook.read(result.output))
        notebook.write_atomic(nb, source)
        print(f"{source.name}: refreshed in {result.seconds:.0f} s")
