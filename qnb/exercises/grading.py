"""What every exercise check shares: the error a wrong answer raises, the pass line, the guard
that turns an unanswered stub into "not answered yet", and the comparisons several checks use.

A check prints `✔ Exercise NN.K passed: ...` for a right answer and raises `ExerciseError`
("Exercise NN.K: <diagnosis>") for a wrong one; nbgrader shows either to the student.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable

import numpy as np
import torch


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what is wrong."""


def passed(exercise: str, detail: str = "") -> None:
    """Print the quiet praise of a right answer."""
    print(f"✔ {exercise} passed" + (f": {detail}" if detail else ""))


def fail(exercise: str, hint: str) -> None:
    """Raise the diagnosis of a wrong answer."""
    raise ExerciseError(f"{exercise}: {hint}")


def needs_answer(check: Callable[..., None]) -> Callable[..., None]:
    """Guard a check: an answer left as a stub (a `None`, or a function that still raises the
    stub's NotImplementedError: nbgrader's bare one, or one that names the exercise) fails as
    "not answered yet", never with a confusing traceback.

    The exercise is named by the first words of the check's docstring ("Exercise NN.K: ...").
    """
    found = re.match(r"Exercise \d+\.\d+", check.__doc__ or "")
    if not found:
        raise ValueError(f"{check.__name__}: docstring must start with 'Exercise NN.K:'")
    name, signature = found.group(0), inspect.signature(check)

    @functools.wraps(check)
    def guarded(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        unset = [f"`{k}`" for k, v in given.items() if v is None]
        if unset:
            fail(
                name,
                f"not answered yet ({', '.join(unset)} {'is' if len(unset) == 1 else 'are'} "
                "None): replace the stub in the cell above with your answer and run it",
            )
        try:
            return check(*args, **kwargs)
        except NotImplementedError as exc:  # nbgrader's stub raises it bare
            if str(exc) and not str(exc).startswith(name):
                raise
        fail(
            name,
            "not answered yet: your code is still the stub (it raises NotImplementedError); "
            "replace the stub in the cell above with your answer and run it",
        )

    return guarded


def as_array(got: object) -> np.ndarray:
    """An answer given as a tensor, an array or nested lists, as a float64 array."""
    if isinstance(got, torch.Tensor):
        got = got.detach().numpy()
    return np.asarray(got, dtype=np.float64)


def same_grid(got: np.ndarray, want: np.ndarray, step: np.ndarray) -> bool:
    """Equal, but for values within an ulp of a tie between two levels (x / s vs x * (1 / s)):
    at most 1% of them may be one step off."""
    if got.shape != want.shape:
        return False
    off = np.abs(got - want)
    exact = off <= 1e-4 * step + 1e-7
    one_step = np.isclose(off, step, rtol=1e-3)
    return bool(np.all(exact | one_step) and one_step.mean() <= 0.01)


def rel_close(a: float, b: float) -> bool:
    """Equal to 0.1%: a number the student computed from a measured or stored one."""
    return math.isclose(a, b, rel_tol=1e-3)
