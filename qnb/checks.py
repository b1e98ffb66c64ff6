"""Argument checks shared by the qnb modules: errors name the argument, the value and what
is allowed."""

from __future__ import annotations

import numbers


def check_int(name: str, value: object, lo: int = 1, hi: int | None = None) -> int:
    """`value` as an int in lo..hi, or a TypeError/ValueError naming `name` and `value`."""
    allowed = f"an int in {lo}..{hi}" if hi is not None else f"an int >= {lo}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """`value` if it is True or False, else a TypeError naming `name`."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value
