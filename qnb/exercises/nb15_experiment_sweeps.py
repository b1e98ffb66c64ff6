"""Notebook 15 (experiment_sweeps): 15.1 the mean SQNR gap per setting of a sweep's results,
15.2 the runs of one shard, 15.3 the parameter grid (core).

15.1 reads the results CSV with pandas; 15.2 plans the sweep with `qnb.sweep` (plan, shard);
15.3 compares with `itertools.product`."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import numpy as np

from qnb.exercises.grading import fail, needs_answer, passed


@needs_answer
def grade_sweep_gap(answer: dict, results_csv: str) -> None:
    """Exercise 15.1: mean SQNR gap (asymmetric - symmetric on ReLU data) per compare_bits."""
    import pandas as pd

    name = "Exercise 15.1"
    table = pd.read_csv(results_csv)
    ok = table[table.status == "ok"]
    gap = ok.sqnr_relu_asymmetric_db - ok.sqnr_relu_symmetric_db
    want = gap.groupby(ok.compare_bits).mean().to_dict()
    if not isinstance(answer, dict) or not answer:
        fail(name, "answer with a dict {compare_bits: mean gap in dB}")
    try:
        given = {int(k): v for k, v in answer.items()}
    except (TypeError, ValueError):
        fail(name, f"the keys are the compare_bits values (integers), got {list(answer)}")
    if set(given) != set(map(int, want)):
        fail(name, f"expected one entry per swept compare_bits {sorted(want)}, got {list(answer)}")
    for bits, value in want.items():
        got = given[int(bits)]
        if not isinstance(got, int | float | np.integer | np.floating) or not math.isfinite(got):
            fail(name, f"the gap at {bits} bits must be a finite number of dB, got {got!r}")
        if math.isclose(got, value, abs_tol=1e-6):
            continue
        if math.isclose(got, -value, abs_tol=1e-6):
            fail(name, "the sign is flipped: asymmetric minus symmetric")
        fail(
            name,
            f"at {bits} bits the mean gap over the seeds is {value:.3f} dB, not {got:.3f}; "
            "average over runs with the same compare_bits (only runs with status ok)",
        )
    passed(name, ", ".join(f"{b} bits: {v:.2f} dB" for b, v in sorted(want.items())))


@needs_answer
def grade_shard(answer: list, notebook: str, grid: dict, shard: str) -> None:
    """Exercise 15.2: the run names one shard `I/N` of a sweep executes."""
    from qnb import sweep

    name = "Exercise 15.2"
    index, count = sweep.parse_shard(shard)
    want = [run.name for run in sweep.shard(sweep.plan([notebook], grid), index, count)]
    if not isinstance(answer, list | tuple):
        fail(name, f"answer with a list of run names, got {type(answer).__name__}")
    if list(answer) == want:
        passed(name, f"shard {shard} runs {len(want)} of the grid: {', '.join(want)}")
        return
    if sorted(answer) == sorted(want):
        fail(name, "right runs, wrong order: list them in the order of the plan")
    everything = [run.name for run in sweep.plan([notebook], grid)]
    if list(answer) == everything[(index - 1) * len(want) : index * len(want)]:
        fail(name, "a shard is not a contiguous block: it takes every N-th run, starting at I")
    fail(
        name,
        f"shard {shard} takes every {count}-th run of the plan starting at run {index} "
        f"(1-based): {len(want)} runs",
    )


@needs_answer
def grade_grid(fn: Callable[[dict], list], seed: int = 0) -> None:
    """Exercise 15.3: `fn(grid)` expands {name: [values]} into one dict of parameters per run:
    every combination, the first parameter varying slowest, as `qnb sweep` plans them."""
    name = "Exercise 15.3"
    grids = [
        {"model_name": ["plain_cnn", "depthwise_cnn"], "bits": [2, 4, 8], "seed": [0, 1]},
        {"engine": ["x86", "qnnpack"], "calib_images": [64, 256, 1024]},
        {"a": [1], "b": ["x", "y"], "c": [0.5, 1.5], "d": [True, False]},
    ]
    grid = grids[seed % 3]
    want = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    got = fn(copy.deepcopy(grid))
    if not isinstance(got, list | tuple) or not all(isinstance(g, dict) for g in got):
        fail(name, "return a list of dicts, one {name: value} per run")
    got = list(got)
    if got == want:
        passed(name, f"{len(want)} runs: " + " x ".join(str(len(v)) for v in grid.values()))
        return
    if len(got) == min(len(v) for v in grid.values()):
        fail(name, "that pairs the values up (zip); a grid runs every combination "
              "(itertools.product)")  # fmt: skip
    if len(got) != len(want):
        sizes = " x ".join(str(len(v)) for v in grid.values())
        fail(name, f"{len(got)} runs; the grid has {sizes} = {len(want)} combinations")
    key = lambda d: repr(sorted(d.items()))  # noqa: E731
    if sorted(map(key, got)) == sorted(map(key, want)):
        fail(name, "right runs, wrong order: the first parameter varies slowest, the last "
              "fastest (itertools.product over the values in the grid's order)")  # fmt: skip
    fail(name, "some runs are not combinations of the grid's values")
