"""Feeding calibration data through a prepared model, so its observers see real activations."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from qnb import checks
from qnb.progress import progress


def batch_inputs(batch: object) -> torch.Tensor:
    """The input tensor of a batch: the batch itself, or the first item of `(input, target)`."""
    if isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            "calib must yield input tensors or (input, target) pairs, "
            f"got a batch of type {type(batch).__name__}"
        )
    return batch


def calibrate(
    model: nn.Module, calib: Iterable, num_batches: int | None = None, desc: str = "calibrating"
) -> int:
    """Run up to `num_batches` batches of `calib` through `model`; return how many ran.

    `calib` is a DataLoader or any iterable of batches (tensors or `(input, target)` pairs).

    Taught in notebook 05 (static_ptq).
    """
    if num_batches is not None:
        num_batches = checks.check_int("num_batches", num_batches, 1)
    checks.check_calib(calib)
    total = num_batches if num_batches is not None else _length(calib)
    seen = 0
    with torch.inference_mode():
        for batch in progress(calib, desc=desc, total=total, leave=False):
            model(batch_inputs(batch))
            seen += 1
            if seen == num_batches:
                break
    if seen == 0:
        raise ValueError("calib yielded no batches: calibration needs at least one batch of data")
    return seen


def _length(calib: Iterable) -> int | None:
    try:
        return len(calib)  # type: ignore[arg-type]
    except TypeError:
        return None
