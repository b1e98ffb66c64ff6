"""qnb.checks: the shared argument checks name the argument, the bad value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnb import checks


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ([1.0], TypeError, "w must be a float torch.Tensor, got list"),
        (torch.ones(2, dtype=torch.int8), TypeError, "w must be a float torch.Tensor, got dtype "
         "torch.int8"),
        (torch.tensor([1.0, float("nan")]), ValueError, "w holds NaN or inf values"),
        (torch.tensor([float("-inf")]), ValueError, "w holds NaN or inf values"),
    ],
)
def test_check_float_tensor_refuses(value, error, message):
    with pytest.raises(error, match=message):
        checks.check_float_tensor("w", value)


def test_check_float_tensor_returns_the_tensor_itself():
    x = torch.randn(3, dtype=torch.float64)
    assert checks.check_float_tensor("w", x) is x


def test_show_is_short_and_plain():
    assert checks.show(np.float32(0.5)) == "0.5"
    assert checks.show("x" * 200).endswith("...") and len(checks.show("x" * 200)) == 80
