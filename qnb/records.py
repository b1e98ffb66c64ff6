"""Record a notebook's metrics inside the executed notebook, and read them back.

`record(name, value)` displays the metric twice over: as plain text for the reader and under
its own MIME type for machines. The executed notebook is then the single artifact of a run;
`read_records(path)` returns `{name: value}` from it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

MIME_TYPE = "application/vnd.qnb.record+json"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

Value = int | float | str | bool | None  # None: not measured on this run (e.g. an x86-only figure)


def _check(name: str, value: Value) -> Value:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"record name must be an identifier such as 'int8_acc' "
            f"(letters, digits, '_' or '.'), got {name!r}"
        )
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if value is not None and not isinstance(value, int | float | str | bool):
        raise TypeError(
            f"record value for {name!r} must be a number, string, bool or None (not measured), "
            f"got {type(value).__name__}: {value!r}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"record value for {name!r} must be finite, got {value!r}")
    return value


def record(name: str, value: Value) -> None:
    """Record metric `name` = `value` in the running notebook (or print it outside one); None
    says that this run did not measure it (and why is said in the notebook)."""
    value = _check(name, value)
    shown = (
        f"{value:.6g}"
        if isinstance(value, float)
        else "None (not measured)"
        if value is None
        else value
    )
    text = f"record: {name} = {shown}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({MIME_TYPE: {"name": name, "value": value}, "text/plain": text}, raw=True)
    else:
        print(text)


def read_records(path: str | Path) -> dict[str, Value]:
    """Return `{name: value}` recorded in an executed notebook; a later record wins."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_records: no notebook at {str(path)!r}")
    import nbformat  # here, not at the top: importing it costs ~1 s in every kernel

    nb = nbformat.read(path, as_version=4)
    found: dict[str, Value] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if MIME_TYPE in data:
                found[data[MIME_TYPE]["name"]] = data[MIME_TYPE]["value"]
    return found
