"""Feeding calibration data through a prepared model, so its observers see real activations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from qnb import checks, hooks
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


def input_batches(calib: Iterable, num_batches: int | None = None) -> list[torch.Tensor]:
    """The input tensors of up to `num_batches` batches of `calib`, as a list (to reuse)."""
    if num_batches is not None:
        num_batches = checks.check_int("num_batches", num_batches, 1)
    checks.check_calib(calib)
    batches = []
    for batch in calib:
        batches.append(batch_inputs(batch))
        if len(batches) == num_batches:
            break
    if not batches:
        raise ValueError("calib yielded no batches: calibration needs at least one batch of data")
    return batches


def forward_order(model: nn.Module, layers: Mapping[str, nn.Module], batch: torch.Tensor
                  ) -> list[str]:
    """The names of `layers` ({name: submodule of `model`}) in the order one forward pass of
    `batch` first calls them; layers the pass never calls are left out."""
    order: list[str] = []
    seen = [(module, lambda *_, name=name: order.append(name)) for name, module in layers.items()]
    with hooks.attached(seen):
        hooks.run(model, [batch], inference=True)
    return list(dict.fromkeys(order))


def capture(
    model: nn.Module, name: str, batches: Iterable[torch.Tensor], *, output: bool = False
) -> torch.Tensor:
    """The input (or, with `output`, the output) of submodule `name` over `batches`, stacked
    along the batch dimension. The output is taken before any other forward hook of that
    module (an observer or fake quantizer that torch.ao's prepare attached) changes it."""
    module = dict(model.named_modules()).get(name)
    if module is None:
        raise ValueError(f"name={name!r} is not a submodule of the model")
    seen: list[torch.Tensor] = []
    if output:
        watch = hooks.attached([(module, lambda _m, _a, out: seen.append(out.detach()))],
                               prepend=True)
    else:
        watch = hooks.attached(pre=[(module, lambda _m, args: seen.append(args[0].detach()))])
    with watch:
        hooks.run(model, batches)  # not inference_mode: the tensors may feed autograd later
    return torch.cat(seen)
