"""qnb.llm_int8: the decomposition against bitsandbytes' CPU Linear8bitLt, the outlier columns,
the int8 part alone, bad inputs."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from qnb import llm_int8
from qnb.lm import TinyLM

bnb = pytest.importorskip("bitsandbytes")


def _case(seed: int = 0) -> tuple[nn.Linear, torch.Tensor]:
    """A Linear and inputs that float16 holds exactly (bitsandbytes casts to float16), with an
    outlier feature in every token and one in a single token."""
    torch.manual_seed(seed)
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.copy_(lin.weight.half().float())
        lin.bias.copy_(lin.bias.half().float())
    x = torch.randn(3, 10, 64)
    x[..., 5] *= 9
    x[0, 0, 17] = -20.0
    return lin, x.half().float()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_decomposition_agrees_with_bitsandbytes_linear8bitlt(seed):
    lin, x = _case(seed)
    ref = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False, threshold=6.0)
    ref.load_state_dict(lin.state_dict())
    ref.eval()
    logging.disable(logging.WARNING)  # bitsandbytes warns that it casts to float16
    try:
        with torch.no_grad():
            want = ref(x)
    finally:
        logging.disable(logging.NOTSET)
    got, cols = llm_int8.int8_matmul(x, lin.weight, lin.bias)
    assert cols.tolist() == ref.state.idx.tolist() == [5, 17]
    assert (got - want).abs().max() < 1e-4 * want.abs().max()
    assert (got - lin(x)).abs().max() > 1e-3  # and it is not the float product


def test_outliers_in_float_beat_plain_vectorwise_int8_on_an_outlier_feature():
    lin, x = _case()
    y = lin(x).detach()
    mixed, _ = llm_int8.int8_matmul(x, lin.weight, lin.bias, 6.0)
    plain, cols = llm_int8.int8_matmul(x, lin.weight, lin.bias, 0)
    assert len(cols) == 0
    assert (mixed - y).pow(2).mean() < (plain - y).pow(2).mean() / 2


def test_without_outliers_it_is_vectorwise_int8():
    torch.manual_seed(0)
    a = torch.randn(4, 8)
    w = torch.randn(3, 8)
    y, cols = llm_int8.int8_matmul(a, w)
    ca, ma = llm_int8.int8_rows(a)
    cw, mw = llm_int8.int8_rows(w)
    assert len(cols) == 0
    assert torch.allclose(y, (ca.float() @ cw.float().T) * ma[:, None] * mw / 127**2)
    assert ca.abs().amax(dim=1).tolist() == [127] * 4


def test_a_tinylm_in_int8_stays_close_and_counts_outliers():
    torch.manual_seed(0)
    model = TinyLM(d_model=32, layers=1, heads=2, context=8).eval()
    x = torch.randint(0, 256, (2, 8))
    q = llm_int8.llm_int8(model, threshold=0.5)
    with torch.no_grad():
        y, yq = model(x), q(x)
    assert 0 < (y - yq).abs().max() < 0.05 * y.abs().max()
    fc1 = q.blocks[0].mlp.fc1
    assert fc1.outliers > 0 and len(fc1.seen) >= fc1.outliers  # LayerNorm outputs above 0.5


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="threshold"):
        llm_int8.outlier_columns(torch.ones(2, 2), -1.0)
    with pytest.raises(ValueError, match="does not fit"):
        llm_int8.int8_matmul(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        llm_int8.int8_rows(torch.ones(3))
    with pytest.raises(TypeError, match="nn.Linear"):
        llm_int8.Int8Linear(nn.ReLU())
