"""The exercises where the student writes the core of a technique (02.3, 03.3, 05.3, 06.3, 09.3,
10.3, 15.3): the notebook's worked solution passes on every seed (the visible check's and the
hidden tests'), typical mistakes get their diagnosis, and a stub is "not answered yet"."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from qnb import env, exercises
from qnb.exercises import nb09_mixed_precision as nb09
from qnb.exercises import ExerciseError

SEEDS = [0, 1, 2]  # the notebooks' visible checks use 0, their hidden tests 1 and 2


def fake_quantize_per_channel(weight, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    top = np.abs(weight).reshape(len(weight), -1).max(axis=1)
    scale = (top / ((qmax - qmin) / 2)).reshape(-1, *[1] * (weight.ndim - 1))
    return np.clip(np.rint(weight / scale), qmin, qmax) * scale


def moving_average_minmax(batches, averaging_constant):
    lo, hi = float(batches[0].min()), float(batches[0].max())
    for b in batches[1:]:
        lo += averaging_constant * (float(b.min()) - lo)
        hi += averaging_constant * (float(b.max()) - hi)
    return lo, hi


def static_ptq(model, calib, engine, qconfig_engine=None, batches=None):
    from torch.ao import quantization as tq

    model = copy.deepcopy(model).eval()
    model.qconfig = tq.get_default_qconfig(qconfig_engine or engine)
    prepared = tq.prepare(model)
    with torch.inference_mode():
        for x in calib if batches is None else calib[:batches]:
            prepared(x)
    return tq.convert(prepared)


def group_quantize(weight, group_size, bits, levels=None, axis_rows=True):
    qmax = 2**bits - 1
    groups = weight.reshape(-1, group_size) if axis_rows else weight.T.reshape(-1, group_size)
    lo = np.minimum(groups.min(axis=1, keepdims=True), 0)
    hi = np.maximum(groups.max(axis=1, keepdims=True), 0)
    scale = (hi - lo) / (levels or qmax)
    zero = np.clip(np.rint(-lo / scale), 0, qmax)
    q = np.clip(np.rint(groups / scale) + zero, 0, qmax)
    out = (q - zero) * scale
    return out.reshape(weight.shape) if axis_rows else out.reshape(weight.T.shape).T


def allocate(options, budget):
    names = list(options)
    best_cost, best = float("inf"), None
    for combo in itertools.product(*(options[n] for n in names)):
        size = sum(options[n][b][1] for n, b in zip(names, combo, strict=True))
        cost = sum(options[n][b][0] for n, b in zip(names, combo, strict=True))
        if size <= budget and cost < best_cost:
            best_cost, best = cost, dict(zip(names, combo, strict=True))
    return best


def paired_speedup(fp32_ms, int8_ms):
    ratios = np.asarray(fp32_ms) / np.asarray(int8_ms)
    p25, median, p75 = np.quantile(ratios, [0.25, 0.5, 0.75])
    return median, p25, p75


def grid_runs(grid):
    names = list(grid)
    return [dict(zip(names, v, strict=True)) for v in itertools.product(*grid.values())]


def _engine() -> str:
    return env.default_engine()


RIGHT = {
    "02.3": lambda seed: exercises.check_fake_quantize_per_channel(fake_quantize_per_channel, seed),
    "03.3": lambda seed: exercises.check_moving_average_minmax(moving_average_minmax, seed),
    "05.3": lambda seed: exercises.check_static_ptq(static_ptq, _engine(), seed),
    "06.3": lambda seed: exercises.check_group_quantize(group_quantize, seed),
    "09.3": lambda seed: exercises.check_allocation(allocate, seed),
    "10.3": lambda seed: exercises.check_paired_speedup(paired_speedup, seed),
    "15.3": lambda seed: exercises.check_grid(grid_runs, seed),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("exercise", RIGHT)
def test_the_worked_solution_passes_on_every_seed(exercise, seed, capsys):
    RIGHT[exercise](seed)
    assert f"✔ Exercise {exercise} passed" in capsys.readouterr().out


def _stub(*args):
    raise NotImplementedError()  # what nbgrader leaves in place of the solution


MISTAKES = {
    "02.3-per-tensor": (
        exercises.check_fake_quantize_per_channel,
        lambda w, bits: fake_quantize_per_channel(w.reshape(1, -1), bits).reshape(w.shape),
        "is per-tensor",
    ),
    "02.3-no-clamp": (
        exercises.check_fake_quantize_per_channel,
        lambda w, bits: np.rint(w / _scale(w, bits)) * _scale(w, bits),
        r"clamp to \[qmin, qmax\] = \[-8, 7\]",
    ),
    "02.3-codes": (
        exercises.check_fake_quantize_per_channel,
        lambda w, bits: np.clip(np.rint(w / _scale(w, bits)), -8, 7),
        "those are the integer codes",
    ),
    "03.3-global-minmax": (
        exercises.check_moving_average_minmax,
        lambda batches, c: (min(b.min() for b in batches), max(b.max() for b in batches)),
        "min/max over all batches",
    ),
    "03.3-from-zero": (
        exercises.check_moving_average_minmax,
        lambda batches, c: moving_average_minmax([np.zeros(1, np.float32), *batches], c),
        r"averaging from \(0, 0\)",
    ),
    "03.3-swapped-constant": (
        exercises.check_moving_average_minmax,
        lambda batches, c: moving_average_minmax(batches, 1 - c),
        "c weighs the new batch",
    ),
    "05.3-no-convert": (
        exercises.check_static_ptq,
        lambda model, calib, engine: _prepared(model, calib, engine),
        "still has observers",
    ),
    "05.3-no-calibration": (
        exercises.check_static_ptq,
        lambda model, calib, engine: static_ptq(model, calib, engine, batches=0),
        "observers never saw data",
    ),
    "05.3-first-batch": (
        exercises.check_static_ptq,
        lambda model, calib, engine: static_ptq(model, calib, engine, batches=1),
        "calibrate on every batch",
    ),
    "06.3-per-row": (
        exercises.check_group_quantize,
        lambda w, g, bits: group_quantize(w, w.shape[1], bits),
        "one scale per row is per-channel",
    ),
    "06.3-columns": (
        exercises.check_group_quantize,
        lambda w, g, bits: group_quantize(w, g, bits, axis_rows=False),
        "not weights down a column",
    ),
    "06.3-levels": (
        exercises.check_group_quantize,
        lambda w, g, bits: group_quantize(w, g, bits, levels=2**bits),
        "there are 2\\*\\*bits - 1 = 15 steps",
    ),
    "09.3-greedy": (
        exercises.check_allocation,
        lambda options, budget: nb09._greedy_allocation(options, budget),
        "that is the greedy allocation",
    ),
    "09.3-all-8": (
        exercises.check_allocation,
        lambda options, budget: {n: 8 for n in options},
        "over the budget",
    ),
    "09.3-a-layer-missing": (
        exercises.check_allocation,
        lambda options, budget: {n: 2 for n in list(options)[1:]},
        "give every layer its bits",
    ),
    "10.3-ratio-of-medians": (
        exercises.check_paired_speedup,
        lambda a, b: (np.median(a) / np.median(b), 0, 0),
        "ratio of the medians",
    ),
    "10.3-inverted": (
        exercises.check_paired_speedup,
        lambda a, b: paired_speedup(b, a),
        "that is int8 / fp32",
    ),
    "10.3-mean": (
        exercises.check_paired_speedup,
        lambda a, b: (np.mean(np.asarray(a) / np.asarray(b)), 0, 0),
        "mean of the ratios",
    ),
    "10.3-sorted": (
        exercises.check_paired_speedup,
        lambda a, b: paired_speedup(sorted(a), sorted(b)),
        "sorting each list breaks the pairs",
    ),
    "15.3-zip": (
        exercises.check_grid,
        lambda grid: [dict(zip(grid, v, strict=False)) for v in zip(*grid.values(), strict=False)],
        "pairs the values up",
    ),
    "15.3-last-slowest": (
        exercises.check_grid,
        lambda grid: [
            dict(reversed(list(zip(reversed(list(grid)), v, strict=True))))
            for v in itertools.product(*reversed(list(grid.values())))
        ],
        "right runs, wrong order",
    ),
}


def _scale(w, bits):
    return np.abs(w).reshape(len(w), -1).max(axis=1).reshape(-1, 1, 1, 1) / ((2**bits - 1) / 2)


def _prepared(model, calib, engine):
    from torch.ao import quantization as tq

    model = copy.deepcopy(model).eval()
    model.qconfig = tq.get_default_qconfig(engine)
    return tq.prepare(model)


@pytest.mark.parametrize(("check", "answer", "diagnosis"), MISTAKES.values(), ids=MISTAKES)
def test_a_typical_mistake_gets_its_diagnosis(check, answer, diagnosis):
    args = (answer, _engine()) if check is exercises.check_static_ptq else (answer,)
    with pytest.raises(ExerciseError, match=diagnosis):
        check(*args)


@pytest.mark.parametrize("exercise", RIGHT)
def test_nbgraders_stub_is_not_answered_yet(exercise):
    check = {
        "02.3": exercises.check_fake_quantize_per_channel,
        "03.3": exercises.check_moving_average_minmax,
        "05.3": exercises.check_static_ptq,
        "06.3": exercises.check_group_quantize,
        "09.3": exercises.check_allocation,
        "10.3": exercises.check_paired_speedup,
        "15.3": exercises.check_grid,
    }[exercise]
    args = (_stub, _engine()) if exercise == "05.3" else (_stub,)
    with pytest.raises(ExerciseError, match=f"^Exercise {exercise}: not answered yet"):
        check(*args)


def test_the_allocation_problem_is_one_where_greedy_is_not_optimal():
    """The visible 09.3 problem is built so that the greedy heuristic misses the optimum."""
    options, budget = nb09._allocation_problem(0)
    greedy = nb09._greedy_allocation(options, budget)
    best, _ = nb09._best_allocation(options, budget)
    assert sum(options[n][greedy[n]][0] for n in options) > best + 1e-9
    assert sum(options[n][greedy[n]][1] for n in options) <= budget


def test_a_bad_engine_is_refused_naming_it():
    with pytest.raises(ValueError, match="engine must be one of .* got 'tpu'"):
        exercises.check_static_ptq(static_ptq, "tpu")
