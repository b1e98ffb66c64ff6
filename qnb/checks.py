"""Argument checks shared by every qnb module (the base layer): one check per concept.

Each returns the checked value (normalised where useful) or raises a TypeError/ValueError whose
message names the argument, the bad value and what is allowed. torch is imported inside the
checks that need it, so the notebook tooling (runner, sweep, report, ...) can use this module
without importing torch."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


def show(value: object) -> str:
    """A short repr of a bad value for an error message (numpy scalars as Python numbers)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: object, lo: int = 1, hi: int | None = None) -> int:
    """`value` as an int in lo..hi, or a TypeError/ValueError naming `name` and `value`."""
    allowed = f"an int in {lo}..{hi}" if hi is not None else f"an int >= {lo}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {show(value)} ({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {allowed}, got {show(value)}")
    return int(value)


def check_int_codes(name: str, value: object, ndim: tuple[int, ...], what: str) -> np.ndarray:
    """`value` as an int64 array of one of the dimensionalities `ndim` (`what` describes the
    shape wanted), or a TypeError/ValueError naming `name`."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be integer codes (an int or uint array, e.g. from affine.quantize); "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must be {what}; got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def check_int_pair(name: str, value: object, lo: int = 0) -> tuple[int, int]:
    """An int or a pair of ints >= `lo` (a stride, a padding) as a pair, or a clear error."""
    items = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints; got {show(value)}")
    return check_int(name, items[0], lo), check_int(name, items[1], lo)


def check_bool(name: str, value: object) -> bool:
    """`value` if it is True or False (numpy's bool too), else a TypeError naming `name`."""
    if not isinstance(value, bool | np.bool_):
        kind = type(value).__name__
        raise TypeError(f"{name} must be True or False, got {show(value)} ({kind})")
    return bool(value)


def check_positive(name: str, value: object) -> float:
    """`value` as a float if it is a finite number > 0 (a learning rate, a scale, seconds)."""
    allowed = f"{name} must be a finite number > 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{allowed}, got {show(value)} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{allowed}, got {show(value)}")
    return float(value)


def check_choice(name: str, value: object, choices: Sequence) -> object:
    """`value` if it is one of `choices`, else a ValueError listing them."""
    if isinstance(value, str | int | float | type(None)) and value in choices:
        return value
    allowed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{name} must be one of {allowed}, got {show(value)}")


def check_bits(name: str, bits: object, lo: int = 2, hi: int = 16) -> int:
    """A bit width: an int in lo..hi (2..16 for the numpy reference, 2..8 for int8 engines)."""
    return check_int(name, bits, lo, hi)


def check_optional_bits(name: str, bits: object, lo: int = 2, hi: int = 16) -> int | None:
    """A bit width, or None (float: not quantized)."""
    return None if bits is None else check_bits(name, bits, lo, hi)


def check_model(model: object, name: str = "model") -> nn.Module:
    """`model` if it is a torch.nn.Module."""
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_float_tensor(name: str, value: object) -> torch.Tensor:
    """`value` if it is a floating-point torch.Tensor holding no NaN or inf."""
    import torch

    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        got = f"dtype {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"{name} must be a float torch.Tensor, got {got}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} holds NaN or inf values")
    return value


def check_eval_model(model: object, name: str = "model", why: str = "") -> nn.Module:
    """`model` if it is an nn.Module in eval mode (every submodule); `why` ends the message."""
    model = check_model(model, name)
    training = [n or "(root)" for n, m in model.named_modules() if m.training]
    if training:
        reason = f": {why}" if why else ""
        raise ValueError(
            f"{name} is in train mode ({', '.join(training[:4])}): call {name}.eval() first{reason}"
        )
    return model


def check_calib(calib: object, name: str = "calib") -> Iterable:
    """A DataLoader or any iterable of batches (not a bare tensor, which iterates over samples)."""
    import torch

    if isinstance(calib, torch.Tensor) or not isinstance(calib, Iterable):
        raise TypeError(
            f"{name} must be a DataLoader or an iterable of batches (input tensors or "
            f"(input, target) pairs), got {type(calib).__name__}"
        )
    return calib


def as_reusable(calib: Iterable, name: str = "calib") -> Iterable:
    """`calib` checked, and read into a list if it is a one-shot iterator (to iterate twice)."""
    calib = check_calib(calib, name)
    return list(calib) if isinstance(calib, Iterator) else calib


def check_path(path: object, name: str = "path") -> Path:
    """`path` as a Path if it is a str or os.PathLike."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def check_file(path: object, name: str = "path") -> Path:
    """`path` as a Path if it names an existing file."""
    path = check_path(path, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}={str(path)!r} is not a file")
    return path


def check_engine(engine: object, name: str = "engine") -> str:
    """A quantized engine this machine's PyTorch supports; None means this machine's default
    (`qnb.env.default_engine()`: x86 where supported, else qnnpack)."""
    from qnb import env

    if engine is None:
        return env.default_engine()
    supported = env.quantized_engines()
    if not isinstance(engine, str) or engine not in supported:
        raise ValueError(
            f"{name} must be one of the quantized engines this PyTorch supports: "
            f"{', '.join(repr(e) for e in supported)} (or None: this machine's default, "
            f"{env.default_engine()!r}); got {show(engine)}"
        )
    return engine
