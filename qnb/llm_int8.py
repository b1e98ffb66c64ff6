"""LLM.int8() (Dettmers et al., NeurIPS 2022, arXiv:2208.07339): a Linear in int8 with its outlier
input features kept out of the integer product.

For inputs X (tokens, in_features) and weight W (out_features, in_features):
- outlier columns: the input features where some |x| >= `threshold` (6.0 in the paper and in
  bitsandbytes), on this call;
- the rest in int8, vector-wise: each token's row scaled by 127 / its max|x| (the outlier values
  set to 0 before the max is taken), each output row of W by 127 / its max|w|; codes
  round-half-even; the int32 product rescaled by both;
- the outlier columns in float: X[:, outliers] times those columns of W.
As bitsandbytes' `Linear8bitLt(has_fp16_weights=False)` does it (`bitsandbytes/backends/default/
ops.py`: `int8_vectorwise_quant`, `int8_mixed_scaled_mm`), the outlier columns multiply the int8
weights dequantized (the paper keeps them in 16 bits), and with one token only the outlier
columns' int8 codes are not zeroed. bitsandbytes also casts the inputs to float16 first; here
everything stays float32, so the two agree to float16 rounding (tested).

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from qnb import checks, rtn

__all__ = ["THRESHOLD", "int8_rows", "outlier_columns", "int8_matmul", "Int8Linear", "llm_int8"]

THRESHOLD = 6.0


def _check_threshold(threshold: object) -> float:
    if threshold == 0 and not isinstance(threshold, bool):
        return 0.0
    return checks.check_positive("threshold", threshold)


def int8_rows(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int8, absmax per row) of a 2-D tensor: round(a * 127 / absmax); a zero row gets
    codes 0 and absmax 0."""
    checks.check_float_tensor("a", a)
    if a.dim() != 2:
        raise ValueError(f"a must be 2-D (rows, columns), got shape {tuple(a.shape)}")
    absmax = a.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    return torch.round(a * (127.0 / safe)[:, None]).to(torch.int8), absmax


def outlier_columns(x: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """The indices of the input features (last dimension of `x`) where some |x| >= `threshold`
    (none for threshold 0)."""
    checks.check_float_tensor("x", x)
    threshold = _check_threshold(threshold)
    if threshold == 0:
        return torch.empty(0, dtype=torch.int64)
    return torch.nonzero((x.reshape(-1, x.shape[-1]).abs() >= threshold).any(dim=0)).view(-1)


def int8_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    threshold: float = THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, outlier columns): y = x W^T + b by LLM.int8()'s decomposition (see the module's doc);
    x is (..., in_features), W (out_features, in_features)."""
    checks.check_float_tensor("x", x)
    checks.check_float_tensor("weight", weight)
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x (..., {x.shape[-1]}) does not fit weight of shape "
            f"{tuple(weight.shape)} (out_features, in_features)"
        )
    a = x.reshape(-1, x.shape[-1])
    cols = outlier_columns(a, threshold)
    masked = a.masked_fill(a.abs() >= threshold, 0) if len(cols) else a
    codes_a, max_a = int8_rows(masked)
    if len(cols) and len(a) > 1:
        codes_a[:, cols] = 0
    codes_w, max_w = int8_rows(weight.detach())
    y = (codes_a.float() @ codes_w.float().T) * (max_a[:, None] * max_w[None, :] / 127**2)
    if len(cols):
        y = y + a[:, cols] @ (codes_w[:, cols].float() * (max_w / 127)[:, None]).T
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0]), cols


class Int8Linear(nn.Module):
    """An nn.Linear computed by `int8_matmul` at `threshold` on every call; `outliers` counts
    the outlier columns of the last call, `seen` holds every outlier column of every call."""

    def __init__(self, linear: nn.Linear, threshold: float = THRESHOLD) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.threshold = _check_threshold(threshold)
        self.linear = copy.deepcopy(linear)
        self.outliers = 0
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, cols = int8_matmul(x, self.linear.weight, self.linear.bias, self.threshold)
        self.outliers = len(cols)
        self.seen.update(cols.tolist())
        return y

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"


def llm_int8(model: nn.Module, threshold: float = THRESHOLD, keep: Iterable[str] = ()) -> nn.Module:
    """An eval-mode copy of `model` whose every nn.Linear (but `keep`) is an `Int8Linear` at
    `threshold` (0: plain vector-wise int8, no decomposition). `model` is not changed."""
    checks.check_model(model)
    threshold = _check_threshold(threshold)
    out = copy.deepcopy(model).eval()
    for name, layer in rtn.linear_layers(out, keep).items():
        parent, _, attr = name.rpartition(".")
        if not parent and not attr:
            raise TypeError("model must hold its Linears as submodules, got a bare nn.Linear")
        setattr(out.get_submodule(parent) if parent else out, attr, Int8Linear(layer, threshold))
    return out
