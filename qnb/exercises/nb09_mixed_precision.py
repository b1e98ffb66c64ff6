"""Notebook 09 (mixed_precision): 09.1 a model's size at per-layer bit widths, 09.2 the points on
a Pareto front, 09.3 the optimal bit allocation under a budget (core).

09.1 and 09.2 use the workbook's own size model and front (`qnb.mixed.model_size_bytes`,
`qnb.mixed.pareto`, with `qnb.simulate.fused_copy`); 09.3 searches every combination."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import numpy as np
import torch

from qnb.exercises.grading import fail, needs_answer, passed


def _size_variants(model: torch.nn.Module, bitwidths: dict) -> dict[str, float]:
    """The size of `model` at `bitwidths` the right way and the usual wrong ways, in bytes."""
    from qnb import mixed, simulate

    bits = mixed.resolve_bitwidths(model, bitwidths)
    # {float name: layer}, batch norm folded
    fused = mixed.layers_by_name(simulate.fused_copy(model))
    original = dict(model.named_modules())
    sizes = dict.fromkeys(
        ("right", "bits", "kib", "no scales", "per tensor", "no bias", "unfused bias", "all 8"),
        0.0,
    )
    for name, layer in fused.items():
        b, numel, channels = bits[name], layer.weight.numel(), layer.weight.shape[0]
        bias = 4 * layer.bias.numel() if layer.bias is not None else 0
        own_bias = 4 * channels if getattr(original[name], "bias", None) is not None else 0
        weights = numel * 4 if b is None else numel * b / 8
        scales = 0 if b is None else 4 * channels
        sizes["right"] += weights + scales + bias
        sizes["bits"] += (weights + scales + bias) * 8
        sizes["no scales"] += weights + bias
        sizes["per tensor"] += weights + (0 if b is None else 4) + bias
        sizes["no bias"] += weights + scales
        sizes["unfused bias"] += weights + scales + own_bias
        sizes["all 8"] += numel + 4 * channels + bias
    sizes["kib"] = sizes["right"] / 1024
    return sizes


@needs_answer
def grade_model_size(answer: float, model: torch.nn.Module, bitwidths: dict) -> None:
    """Exercise 09.1: the workbook's size (bytes) of `model`'s layers at `bitwidths`."""
    from qnb import mixed

    name = "Exercise 09.1"
    if not isinstance(answer, int | float | np.integer | np.floating) or not math.isfinite(answer):
        fail(name, f"answer must be a number of bytes, got {answer!r}")
    want = mixed.model_size_bytes(model, bitwidths)
    if math.isclose(answer, want, rel_tol=1e-9, abs_tol=1e-6):
        passed(name, f"{want:,.0f} bytes ({want / 1024:.1f} KiB)")
        return
    variants = _size_variants(model, bitwidths)
    hints = {
        "bits": "you counted bits, not bytes: a weight at b bits takes b / 8 bytes",
        "kib": "that is KiB: answer in bytes",
        "no scales": "you are 4 bytes per output channel short: each layer has a float32 "
        "scale per output channel *and* a float32 bias (one element per output channel)",
        "per tensor": "the weights are per-channel: one 4-byte scale per output channel "
        "(weight.shape[0]), not one per layer",
        "no bias": "count the biases too: they stay float32, 4 bytes per element",
        "unfused bias": "fold batch norm first (simulate.fused_copy): the fused convolutions get a "
        "bias even where the float conv had bias=False",
        "all 8": "every layer came out at 8 bits: use each layer's own entry of the dict",
    }
    for variant, hint in hints.items():
        if math.isclose(answer, variants[variant], rel_tol=1e-9, abs_tol=1e-6):
            fail(name, hint)
    fail(
        name,
        f"{answer:,.1f} is {answer - want:+,.1f} bytes off: per layer, numel * bits / 8 + "
        "4 * out_channels (scales) + 4 * bias.numel(), on the fused model",
    )


@needs_answer
def grade_pareto_points(answer: list, points: dict) -> None:
    """Exercise 09.2: the names of the (size, accuracy) points on the Pareto front."""
    from qnb import mixed

    name = "Exercise 09.2"
    if not isinstance(answer, list | tuple | set):
        fail(name, f"answer with a list of point names, got {type(answer).__name__}")
    names = list(points)
    unknown = sorted(set(answer) - set(names))
    if unknown:
        fail(name, f"{unknown} are not points of the list; the names are {names}")
    mask = mixed.pareto([points[n] for n in names])
    want = {n for n, keep in zip(names, mask, strict=True) if keep}
    got = set(answer)
    if got == want:
        passed(name, f"{len(want)} of {len(names)} points are on the front: {sorted(want)}")
        return
    for n in sorted(got - want):
        size, acc = points[n]
        other = next(
            o
            for o in names
            if points[o][0] <= size
            and points[o][1] >= acc
            and (points[o][0] < size or points[o][1] > acc)
        )
        tie = points[other][0] == size or points[other][1] == acc
        fail(
            name,
            f"{n!r} is dominated by {other!r}: at most as large and at least as accurate, "
            "and strictly better in one" + (" (a tie on one axis still counts)" if tie else ""),
        )
    missing = sorted(want - got)
    smallest = points[missing[0]][0] == min(p[0] for p in points.values())
    fail(
        name,
        f"{missing[0]!r} belongs on the front: no other point is at most as large and at least "
        "as accurate as it" + (" (nothing is smaller than it)" if smallest else ""),
    )


def _allocation_problem(seed: int) -> tuple[dict, float]:
    """Five layers, each at 2, 4 or 8 bits: {layer: {bits: (cost, bytes)}} and a budget where
    dropping bits greedily by cost per byte is not optimal."""
    if seed == 0:
        sizes = {"conv1": 300, "conv2": 4600, "conv3": 9200, "fc1": 50000, "fc2": 1300}
        costs = {"conv1": (0.9, 0.06), "conv2": (0.30, 0.02), "conv3": (0.25, 0.015),
                 "fc1": (0.2, 0.004), "fc2": (0.5, 0.03)}  # fmt: skip
    else:
        rng = np.random.default_rng(seed + 90)
        names = [f"layer{i}" for i in range(5)]
        sizes = dict(zip(names, rng.integers(200, 40000, 5).tolist(), strict=True))
        costs = {n: (float(rng.uniform(0.1, 1)), float(rng.uniform(0.001, 0.05))) for n in names}
    options = {
        n: {2: (costs[n][0], sizes[n] * 2 / 8), 4: (costs[n][1], sizes[n] * 4 / 8),
            8: (0.0, float(sizes[n]))}
        for n in sizes
    }  # fmt: skip
    total8 = sum(sizes.values())
    return options, 0.4 * total8


def _best_allocation(options: dict, budget: float) -> tuple[float, dict]:
    names = list(options)
    best = (math.inf, {})
    for combo in itertools.product(*(sorted(options[n]) for n in names)):
        size = sum(options[n][b][1] for n, b in zip(names, combo, strict=True))
        cost = sum(options[n][b][0] for n, b in zip(names, combo, strict=True))
        if size <= budget and cost < best[0]:
            best = (cost, dict(zip(names, combo, strict=True)))
    return best


def _greedy_allocation(options: dict, budget: float) -> dict:
    bits = {n: max(options[n]) for n in options}
    size = lambda: sum(options[n][bits[n]][1] for n in options)  # noqa: E731
    while size() > budget:
        steps = []
        for n in options:
            lower = [b for b in options[n] if b < bits[n]]
            if lower:
                b = max(lower)
                saved = options[n][bits[n]][1] - options[n][b][1]
                steps.append(((options[n][b][0] - options[n][bits[n]][0]) / saved, n, b))
        if not steps:
            break
        _, n, b = min(steps)
        bits[n] = b
    return bits


@needs_answer
def grade_allocation(fn: Callable[[dict, float], dict], seed: int = 0) -> None:
    """Exercise 09.3: `fn(options, budget)` picks bits per layer ({layer: {bits: (cost, bytes)}})
    with the smallest total cost whose bytes fit the budget: the exact optimum, not a heuristic."""
    name = "Exercise 09.3"
    options, budget = _allocation_problem(seed)
    got = fn(copy.deepcopy(options), budget)
    if not isinstance(got, dict):
        fail(name, f"answer with a dict {{layer: bits}}, got {type(got).__name__}")
    missing = [n for n in options if n not in got]
    if missing:
        fail(name, f"give every layer its bits; missing {missing}")
    for n, b in got.items():
        if n not in options or b not in options[n]:
            fail(name, f"{n!r}: {b!r} bits is not one of its options {sorted(options.get(n, {}))}")
    size = sum(options[n][got[n]][1] for n in options)
    cost = sum(options[n][got[n]][0] for n in options)
    if size > budget + 1e-9:
        fail(name, f"{size:,.0f} bytes is over the budget of {budget:,.0f}: the bytes must fit")
    best, best_bits = _best_allocation(options, budget)
    if cost <= best + 1e-12:
        passed(name, f"total cost {cost:.4g} in {size:,.0f} of {budget:,.0f} bytes: the optimum")
        return
    if got == _greedy_allocation(options, budget):
        fail(
            name,
            f"that is the greedy allocation (cost {cost:.4g}): dropping bits where they cost least "
            f"per byte saved is not optimal here; the best one costs {best:.4g}. Search the "
            "combinations (a knapsack: dynamic programming over bytes, or all 3**layers)",
        )
    fail(
        name,
        f"cost {cost:.4g} fits the budget, but another allocation costs {best:.4g}: search every "
        "combination of bits (or a knapsack over bytes)",
    )
