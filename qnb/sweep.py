"""Parameter sweeps: notebooks × a grid of parameters → one executed notebook per run.

A run folder holds, per run, the executed notebook `<run>.ipynb` and a small status file
`<run>.status.json` (parameters, status, error, failing cell, seconds). The status file is
written atomically and only after the notebook, so a run is finished exactly when its status
file says `ok`. Re-running a sweep skips finished runs and retries the others. `--shard I/N`
runs a fixed slice of the runs; `collect` only reads the folder, so shards run on different
machines into one folder merge into one `results.csv`.

Each run is its own process (`python -m qnb.runner`, which starts its own kernel), so a run
that hangs is killed at its timeout without taking the others down.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import yaml
from tqdm import tqdm

from qnb import notebook, runner
from qnb.files import write_atomic
from qnb.records import read_records

STATUS_SUFFIX = ".status.json"
RESULTS = "results.csv"
MAX_NAME = 150  # characters of a run name before it is shortened with a hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_FIXED_COLUMNS = ("run", "notebook", "status", "error", "cell", "seconds")


@dataclass
class Run:
    """One planned execution: a notebook with one combination of parameter values."""

    source: Path
    params: dict
    name: str  # file name of the executed notebook, without `.ipynb`
    index: int  # position in the notebook's grid (orders the results table)
    code_sha256: str  # fingerprint of the notebook's cells; a changed notebook is re-run


@dataclass
class Table:
    """The results of a run folder: one row per run, and which columns are which."""

    rows: list[dict]
    params: list[str]
    records: list[str]


# --- grid ---------------------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside brackets or quotes: `1,[2,3],'a,b'` → 3 parts."""
    parts, current, depth, quote, escaped = [], [], 0, "", False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_value(text: str):
    """A Python literal (`4`, `0.5`, `True`, `None`, `[1, 2]`, `'a'`), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_param(spec: str) -> tuple[str, list]:
    """`bits=4,8` → `('bits', [4, 8])`."""
    name, sep, text = spec.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ValueError(f"-p must look like NAME=V1,V2 (for example -p bits=4,8), got {spec!r}")
    pieces = [p.strip() for p in _split_top_level(text)]
    if not text.strip():
        raise ValueError(f"-p {name}= has an empty value list; give at least one value: {name}=4,8")
    if not all(pieces):
        raise ValueError(f"-p {spec!r} has an empty value between commas")
    return name, [parse_value(p) for p in pieces]


def load_grid(path: str | Path) -> dict[str, list]:
    """A YAML file mapping parameter names to value lists (a single value is a list of one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--grid file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"--grid file {path.name} must map parameter names to value lists "
            f"(for example 'bits: [4, 8]'), got {type(data).__name__}"
        )
    grid = {}
    for name, values in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"--grid file {path.name}: {name!r} is not a parameter name")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ValueError(f"--grid file {path.name}: parameter {name!r} has an empty value list")
        grid[name] = values
    return grid


def build_grid(specs: list[str] = (), grid_file: str | Path | None = None) -> dict[str, list]:
    """The grid from a `--grid` file and `-p NAME=V1,V2` options (which override the file)."""
    grid = load_grid(grid_file) if grid_file else {}
    given = set()
    for spec in specs:
        name, values = parse_param(spec)
        if name in given:
            raise ValueError(
                f"parameter {name!r} is given twice with -p; list its values once: {name}=V1,V2"
            )
        given.add(name)
        grid[name] = values
    return grid


def parse_shard(text: str | None) -> tuple[int, int]:
    """`'2/4'` → `(2, 4)`: the second of four slices; `None` → `(1, 1)`, everything."""
    if text is None:
        return 1, 1
    match = _SHARD.fullmatch(str(text))
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard must look like I/N with 1 <= I <= N, got {text!r}")
    return int(match[1]), int(match[2])


def _check_value(name: str, value, whole=None) -> None:
    """Papermill passes None, bool, int, float, str, list and dict; refuse anything else."""
    whole = value if whole is None else whole
    if isinstance(value, dict):
        for item in (*value.keys(), *value.values()):
            _check_value(name, item, whole)
    elif isinstance(value, list):
        for item in value:
            _check_value(name, item, whole)
    elif not (value is None or isinstance(value, bool | int | float | str)):
        hint = f"; write it as a list: {list(value)!r}" if isinstance(value, tuple) else ""
        raise ValueError(
            f"value {whole!r} of parameter {name!r} contains a {type(value).__name__}; "
            f"papermill passes numbers, strings, bools, None, lists and dicts{hint}"
        )


# --- plan ---------------------------------------------------------------------------------


def show_param(value) -> str:
    """A parameter value as text: strings as they are, anything else as its repr."""
    return value if isinstance(value, str) else repr(value)


def _digest(params: dict) -> str:
    return hashlib.sha256(repr(list(params.items())).encode()).hexdigest()[:8]


def run_name(stem: str, params: dict) -> str:
    """`01_affine_quantization__bits=4__seed=0`: safe on any file system, stable over machines.

    Names that needed changing (odd characters) or shortening get a hash of the parameters,
    so two different runs never share a name.
    """
    raw = "__".join([stem, *(f"{k}={show_param(v)}" for k, v in params.items())])
    safe = _UNSAFE.sub("_", raw)
    if safe != raw or len(safe) > MAX_NAME:
        safe = f"{safe[:MAX_NAME]}__{_digest(params)}"
    return safe


def code_fingerprint(nb: nbformat.NotebookNode) -> str:
    """A hash of the cells' types and sources (not outputs), to tell a changed notebook."""
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _read_notebook(path: Path) -> tuple[nbformat.NotebookNode, list[str]]:
    if not path.is_file():
        raise ValueError(f"notebook {str(path)!r} does not exist")
    nb = notebook.read(path)
    found = len(notebook.parameters_cells(nb))
    if found != 1:
        raise ValueError(
            f"notebook {path.name} needs exactly one cell tagged 'parameters' to sweep over, "
            f"found {found}"
        )
    return nb, list(dict.fromkeys(notebook.parameter_names(nb)))


def plan(notebooks: list[str | Path], grid: dict[str, list]) -> list[Run]:
    """Every run of every notebook over the grid, checked before anything runs.

    Parameters vary in the order of the notebook's parameters cell (the last one fastest),
    values in the order given, so the plan is the same whatever order `-p` options come in.
    """
    if not notebooks:
        raise ValueError("give at least one notebook to run")
    for name, values in grid.items():
        if not values:
            raise ValueError(f"parameter {name!r} has an empty value list")
        for value in values:
            _check_value(name, value)
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"parameter {name!r} lists a value twice: {values!r}")
    runs, stems = [], {}
    for path in map(Path, notebooks):
        nb, defined = _read_notebook(path)
        if path.stem in stems:
            raise ValueError(
                f"notebooks {str(stems[path.stem])!r} and {str(path)!r} share the name "
                f"{path.stem!r}; their runs would overwrite each other"
            )
        stems[path.stem] = path
        for name in grid:
            if name not in defined:
                raise ValueError(
                    f"parameter {name!r} is not defined in the parameters cell of {path.name}; "
                    f"it defines: {', '.join(defined) or 'nothing'}"
                )
        names = [n for n in defined if n in grid]
        fingerprint = code_fingerprint(nb)
        for index, combo in enumerate(itertools.product(*(grid[n] for n in names))):
            params = dict(zip(names, combo, strict=True))
            name = run_name(path.stem, params)
            runs.append(Run(path.resolve(), params, name, index, fingerprint))
    counts = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    return [
        Run(r.source, r.params, f"{r.name}__{_digest(r.params)}", r.index, r.code_sha256)
        if counts[r.name] > 1
        else r
        for r in runs
    ]


def shard(runs: list[Run], index: int, count: int) -> list[Run]:
    """The `index`-th of `count` fixed slices (1-based): every count-th run from index."""
    return runs[index - 1 :: count]


# --- status files -------------------------------------------------------------------------


def status_path(out: Path, name: str) -> Path:
    return Path(out) / f"{name}{STATUS_SUFFIX}"


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON atomically: readers see all of it or none."""
    return write_atomic(path, json.dumps(data, indent=1, default=repr) + "\n")


def read_status(path: Path) -> dict | None:
    """A run's status, or None when the file is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "run" in data else None


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=repr))


def is_finished(run: Run, out: Path) -> bool:
    """Finished = status `ok`, same parameters, same notebook code, executed notebook present."""
    status = read_status(status_path(out, run.name))
    return (
        status is not None
        and status.get("status") == "ok"
        and status.get("params") == _jsonable(run.params)
        and status.get("code_sha256") == run.code_sha256
        and (Path(out) / f"{run.name}.ipynb").is_file()
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- execution ----------------------------------------------------------------------------


class Workers:
    """The run processes alive right now, so an interrupt can stop them all."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env  # the environment of every run process (None: this one's)
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self, cmd: list[str], timeout: float | None) -> tuple[int | None, str, str]:
        """(exit status or None on timeout, stdout, stderr) of one run process."""
        with self.lock:
            if self.stopped.is_set():
                return -1, "", "interrupted"
            # a session of its own: Ctrl-C goes to the sweep, which then stops the run
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                env=self.env,
            )
            self.live.add(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            return proc.returncode, stdout, stderr
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            stdout, stderr = proc.communicate()
            return None, stdout, stderr
        finally:
            with self.lock:
                self.live.discard(proc)

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
            for proc in list(self.live):
                _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a run process and its kernel (a child in a session of its own)."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - no psutil or the process is gone: kill what we know
        children = []
    for child in children:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    proc.kill()


def run_result(code: int | None, stdout: str, stderr: str, timeout: float | None) -> dict:
    """The status a run process reported (its last result line), or why it failed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(runner.RESULT_MARKER):
            return json.loads(line[len(runner.RESULT_MARKER) :])
    if code is None:
        return {"status": "failed", "error": f"timed out after {timeout:g} s"}
    tail = " | ".join(stderr.strip().splitlines()[-3:]) or "no output"
    return {"status": "failed", "error": f"the run's process exited with status {code}: {tail}"}


def execute_run(run: Run, out: Path, timeout: float | None = None, workers=None) -> dict:
    """Execute one run into `out`; write the notebook, then its status. Never raises for a
    failing notebook: a failure or timeout is recorded in the status."""
    out, workers = Path(out), workers or Workers()
    final, part = out / f"{run.name}.ipynb", out / f".{run.name}.part.ipynb"
    status = {
        "run": run.name,
        "notebook": run.source.name,
        "index": run.index,
        "params": _jsonable(run.params),
        "status": "running",
        "error": "",
        "cell": None,
        "cell_source": "",
        "seconds": None,
        "started": _now(),
        "finished": None,
        "host": socket.gethostname(),
        "source": str(run.source),
        "code_sha256": run.code_sha256,
    }
    write_json_atomic(status_path(out, run.name), status)
    final.unlink(missing_ok=True)
    part.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "qnb.runner", str(run.source), str(part), repr(run.params)]
    start = time.perf_counter()
    code, stdout, stderr = workers.run(cmd, timeout)
    result = run_result(code, stdout, stderr, timeout)
    if workers.stopped.is_set() and result.get("status") != "ok":
        result = {"status": "failed", "error": "interrupted"}
    _keep_notebook(part, final)
    if result.get("status") == "ok" and not final.is_file():
        result = {"status": "failed", "error": "the run left no executed notebook"}
    if result.get("status") != "ok" and result.get("cell") is None and final.is_file():
        where = runner.failing_cell(nbformat.read(final, as_version=4))
        result["cell"], result["cell_source"] = where or (None, "")
    status.update(
        status=result.get("status", "failed"),
        error=result.get("error", ""),
        cell=result.get("cell"),
        cell_source=result.get("cell_source", ""),
        seconds=round(time.perf_counter() - start, 2),
        finished=_now(),
    )
    write_json_atomic(status_path(out, run.name), status)
    return status


def _keep_notebook(part: Path, final: Path) -> None:
    """Move a run's notebook to its final name if it is whole; drop a half-written one."""
    if not part.is_file():
        return
    try:
        nbformat.read(part, as_version=4)
    except Exception:  # noqa: BLE001 - killed mid-write: nothing worth keeping
        part.unlink(missing_ok=True)
        return
    os.replace(part, final)


def sweep(
    notebooks: list[str | Path],
    grid: dict[str, list],
    out: str | Path,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    shard_spec: tuple[int, int] = (1, 1),
    force: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Run every combination of this shard into `out`, `jobs` at a time; return their statuses.

    Everything is checked before anything runs. Finished runs are skipped (unless `force`),
    failed and unfinished ones are run again.

    Taught in notebook 15 (experiment_sweeps).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be a number of seconds > 0, got {timeout!r}")
    index, count = shard_spec
    if not 1 <= index <= count:
        raise ValueError(f"--shard must look like I/N with 1 <= I <= N, got '{index}/{count}'")
    mine = shard(plan(notebooks, grid), index, count)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [run for run in mine if force or not is_finished(run, out)]
    where = f" (shard {index}/{count})" if count > 1 else ""
    skipped = len(mine) - len(todo)
    hint = " (kept; --force runs them again)" if skipped else ""
    print(
        f"{_runs(len(mine))} into {out}{where}: {len(todo)} to run, "
        f"{skipped} finished before{hint}; jobs={jobs}",
        flush=True,
    )
    statuses = {run.name: read_status(status_path(out, run.name)) for run in mine}
    workers = Workers(run_environment(jobs))
    previous = _stop_on_sigterm()
    bar = tqdm(  # the bar only on a terminal; logs get one line per run
        total=len(mine),
        initial=len(mine) - len(todo),
        unit="run",
        disable=None if progress else True,
    )
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(execute_run, run, out, timeout, workers) for run in todo]
        for future in as_completed(futures):
            status = future.result()
            statuses[status["run"]] = status
            bar.update(1)
            bar.write(_line(status))
    except BaseException:  # Ctrl-C or a crash: stop every run process, record them as failed
        workers.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return [statuses[run.name] for run in mine]


def run_environment(jobs: int) -> dict[str, str]:
    """This process's environment, with the cores shared among `jobs` runs at a time: each
    kernel gets cores // jobs threads (OMP_NUM_THREADS), so that two runs on two cores do not
    start four threads that take turns. A thread count set by the caller is kept."""
    env = dict(os.environ)
    if jobs > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def _stop_on_sigterm():
    """Treat SIGTERM (a scheduler cancelling the job) like Ctrl-C; return the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, interrupt)


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _line(status: dict) -> str:
    if status["status"] == "ok":
        return f"ok      {status['run']}  ({status['seconds']:.1f} s)"
    error = runner.describe_failure(status["error"], status["cell"], status["cell_source"])
    return f"FAILED  {status['run']}: {error}"


# --- results ------------------------------------------------------------------------------


def results(out: str | Path) -> Table:
    """Every run in `out` (from its status file and executed notebook), in plan order."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"run folder {str(out)!r} does not exist")
    statuses = [s for s in map(read_status, sorted(out.glob(f"*{STATUS_SUFFIX}"))) if s]
    if not statuses:
        raise ValueError(f"no runs in {str(out)!r}: it has no *{STATUS_SUFFIX} files")
    statuses.sort(key=lambda s: (s.get("notebook", ""), s.get("index", 0), s["run"]))
    params = list(dict.fromkeys(k for s in statuses for k in s.get("params", {})))
    found = [_records(out, s) for s in statuses]
    taken = set(_FIXED_COLUMNS) | set(params)
    names = list(dict.fromkeys(k for recs in found for k in recs))
    columns = {k: f"record.{k}" if k in taken else k for k in names}
    rows = []
    for status, recs in zip(statuses, found, strict=True):
        row = {"run": status["run"], "notebook": status.get("notebook", "")}
        row |= {p: status.get("params", {}).get(p, "") for p in params}
        row |= {k: status.get(k) for k in ("status", "error", "cell", "seconds")}
        row |= {columns[k]: recs.get(k, "") for k in names}
        rows.append(row)
    return Table(rows, params, [columns[k] for k in names])


def _records(out: Path, status: dict) -> dict:
    path = out / f"{status['run']}.ipynb"
    if status.get("status") not in ("ok", "failed") or not path.is_file():
        return {}
    try:
        return read_records(path)
    except Exception:  # noqa: BLE001 - an unreadable notebook has no records to offer
        return {}


def collect(out: str | Path) -> Path:
    """Merge every run's status and records in `out` into `out/results.csv`, atomically.

    Taught in notebook 15 (experiment_sweeps)."""
    table = results(out)
    return runner.write_csv_atomic(Path(out) / RESULTS, table.rows)
