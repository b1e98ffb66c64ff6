"""Notebook files: find the parameters cell, and clean executed notebooks before committing.

A committed notebook keeps the outputs of a clean run (so it reads well on GitHub) but no
papermill metadata, execution timings, widget state or paths of the machine that ran it.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import nbformat

from qnb import files
from qnb.files import REPO

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_CELL_KEYS_DROPPED = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def read(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook, with a clear error if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {str(path)!r} does not exist")
    return nbformat.read(path, as_version=4)


_TIMES = re.compile(r"\bbench\.")


def times_things(path: str | Path) -> bool:
    """True if the notebook measures speed (a code cell calls `qnb.bench`): such a notebook runs
    alone, never beside another, so that no timing is taken on a busy machine."""
    return any(c.cell_type == "code" and _TIMES.search(c.source) for c in read(path).cells)


def parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells tagged `parameters` (a well-formed workbook notebook has exactly one)."""
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]


def parameter_names(nb: nbformat.NotebookNode) -> list[str]:
    """Names assigned in the notebook's parameters cell, in order."""
    cells = parameters_cells(nb)
    if len(cells) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(cells)}")
    names = []
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _scrub_paths(text: str) -> str:
    """Replace this machine's paths (the checkout, the home folder) with neutral ones."""
    text = text.replace(str(REPO), "<qnb>")
    home = os.path.expanduser("~")
    return re.sub(re.escape(home) + r"(?=/)", "~", text) if home not in ("/", "") else text


def _clean_output(output: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    data = output.get("data")
    if data and _WIDGET_MIME in data:  # a progress widget: keep its text, drop the widget
        if "text/plain" not in data:
            return None
        del data[_WIDGET_MIME]
    if output.get("output_type") == "stream":
        output["text"] = _scrub_paths(output["text"])
    elif output.get("output_type") == "error":
        output["traceback"] = [_scrub_paths(line) for line in output["traceback"]]
    elif data and "text/plain" in data:
        data["text/plain"] = _scrub_paths(data["text/plain"])
    return output


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip run-specific metadata and machine paths from an executed notebook, in place."""
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    }
    for cell in nb.cells:
        for key in _CELL_KEYS_DROPPED:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in map(_clean_output, cell.outputs) if o is not None]
    return nb


def write_atomic(nb: nbformat.NotebookNode, path: str | Path) -> Path:
    """Write a notebook via a temporary file and a rename."""
    return files.write_atomic(path, nbformat.writes(nb) + "\n")
