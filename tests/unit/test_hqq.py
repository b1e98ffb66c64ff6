"""qnb.hqq: codes, scales and zeros identical with torchao's HQQ (the reference answer), the
optimized zero lowers the l_p error it targets, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_affine_hqq

from qnb import hqq, rtn
from qnb.lm import TinyLM


def _weight(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    w = torch.randn(32, 128) * 0.05
    w[3, 7] = 0.6  # an outlier weight
    return w


@pytest.mark.parametrize(("bits", "group"), [(4, 64), (3, 32), (4, 128), (2, 16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_codes_scales_and_zeros_are_torchaos(bits, group, seed):
    w = _weight(seed)
    codes, scale, zero = hqq.hqq_codes(w, bits, group)
    rq, rs, rz, _ = _choose_qparams_and_quantize_affine_hqq(
        w,
        nbits=bits,
        group_size=group,
        axis=1,
        compute_dtype=torch.float32,
        device="cpu",
        raw_output=True,
    )
    assert torch.equal(codes, rq) and torch.equal(scale, rs) and torch.equal(zero, rz)


def test_the_optimized_zero_lowers_the_lp_error_it_targets():
    w = _weight()
    p = 0.7
    opt = hqq.hqq_weight(w, 4, 64)
    start = hqq.hqq_weight(w, 4, 64, iters=1, early_stop=False)  # one round: barely moved
    init = rtn.quantize_weight(w, 4, 64, symmetric=False)

    def lp(v):
        return float((w - v).abs().pow(p).sum())

    assert lp(opt) < lp(init) and lp(opt) <= lp(start)
    assert len(torch.unique(opt[0, :64])) <= 16


def test_shrink_is_the_soft_threshold_at_p_one():
    x = torch.tensor([-2.0, -0.05, 0.0, 0.05, 2.0])
    assert torch.allclose(hqq.shrink(x, 10.0, 1), torch.tensor([-1.9, 0, 0, 0, 1.9]))
    assert (hqq.shrink(x, 10.0, 0.7).abs() <= x.abs()).all()


def test_hqq_linears_needs_no_data_and_keeps_the_model():
    torch.manual_seed(0)
    model = TinyLM(d_model=32, layers=1, heads=2, context=8).eval()
    before = model.head.weight.clone()
    q = hqq.hqq_linears(model, 4, 16)
    assert torch.equal(model.head.weight, before)
    assert len(torch.unique(q.head.weight[0, :16])) <= 16


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="granularity=48"):
        hqq.hqq_codes(_weight(), 4, 48)
    with pytest.raises(ValueError, match="bits"):
        hqq.hqq_codes(_weight(), 1, 64)
    with pytest.raises(ValueError, match="p must"):
        hqq.shrink(torch.ones(2), 1.0, 1.5)
    with pytest.raises(ValueError, match="2-D"):
        hqq.hqq_codes(torch.ones(64), 4, 64)
