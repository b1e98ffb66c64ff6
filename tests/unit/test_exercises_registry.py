"""`qnb.exercises.REGISTRY` is the notebooks' exercises: every graded exercise cell of
notebooks/*.ipynb has exactly one entry, with the same id and points, and the check its check
cell calls; the check lives in the module of its notebook. Read from the notebooks' JSON (their
nbgrader metadata and the calls in the check cells), not from the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qnb import exercises
from qnb.exercises import REGISTRY

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
GRADE_ID = re.compile(r"ex(\d\d)-(\d+)-check")
CALL = re.compile(r"^\s*(grade_\w+)\((.*)\)\s*$")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _graded_cells(path: Path) -> list[dict]:
    """The check cells of a notebook, straight from its JSON: id, points, the check it calls,
    and the seeds its calls pass (None for a call without one)."""
    found = []
    for cell in json.loads(path.read_text())["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        number, k = GRADE_ID.fullmatch(meta["grade_id"]).groups()
        calls = [CALL.match(line) for line in _source(cell).split("\n") if CALL.match(line)]
        assert calls, f"{path.name} {meta['grade_id']}: the check cell calls no grade_*"
        seeds = [re.search(r"\bseed=(\d+)", c.group(2)) for c in calls]
        found.append({
            "id": f"{number}.{k}",
            "points": meta["points"],
            "checks": {c.group(1) for c in calls},
            "seeds": [int(s.group(1)) if s else None for s in seeds],
        })  # fmt: skip
    return found


def _notebook_cells() -> dict[str, list[dict]]:
    return {p.name: _graded_cells(p) for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def _registry_rows() -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for e in REGISTRY:
        rows.setdefault(e.notebook, []).append(
            {"id": e.id, "points": e.points, "checks": {e.grader.__name__}}
        )
    return rows


def test_the_registry_is_the_notebooks_exercises_ids_points_and_checks():
    cells = _notebook_cells()
    graded = {name: [{k: c[k] for k in ("id", "points", "checks")} for c in found]
              for name, found in cells.items() if found}  # fmt: skip
    assert _registry_rows() == graded


def test_the_notebooks_with_exercises_are_the_ones_the_registry_names():
    """A notebook that lost its nbgrader cells, or a registry entry for a notebook that does
    not exist, fails here and in the test above."""
    with_cells = {name for name, found in _notebook_cells().items() if found}
    assert {e.notebook for e in REGISTRY} == with_cells
    assert len(with_cells) >= 14


@pytest.mark.parametrize("exercise", REGISTRY, ids=lambda e: e.id)
def test_each_check_lives_in_its_notebooks_module_and_names_its_exercise(exercise):
    stem = exercise.notebook.removesuffix(".ipynb")
    assert exercise.notebook.startswith(exercise.id[:2] + "_")
    assert exercise.grader.__module__ == f"qnb.exercises.nb{stem}"
    assert exercise.grader.__doc__.startswith(f"Exercise {exercise.id}: ")
    assert getattr(exercises, exercise.grader.__name__) is exercise.grader  # re-exported


def test_every_check_is_registered_once_and_exported():
    names = [e.grader.__name__ for e in REGISTRY]
    assert len(names) == len(set(names)) == len({e.id for e in REGISTRY})
    assert set(names) <= set(exercises.__all__)
    exported = {n for n in exercises.__all__ if n.startswith("grade_")}
    assert exported == set(names)


def test_the_core_checks_hidden_tests_run_the_held_out_seeds():
    """Where a check cell already holds hidden tests, they call the same check on other seeds;
    a seeded check's visible call uses the default seed (0)."""
    by_id = {e.id: e for e in REGISTRY}
    for found in _notebook_cells().values():
        for cell in found:
            exercise, seeds = by_id[cell["id"]], cell["seeds"]
            assert seeds[0] is None, f"{cell['id']}: the visible check passes no seed"
            if len(seeds) > 1:
                assert exercise.seeded and sorted(seeds[1:]) == [1, 2], cell
