"""qnb.rotate: Hadamard matrices are orthogonal, a rotation leaves float outputs unchanged and
spreads an outlier, activations are quantized after the rotation; bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnb import rotate, rtn
from qnb.lm import TinyLM


@pytest.mark.parametrize("n", [1, 2, 8, 128, 512])
def test_random_hadamard_is_orthogonal_with_entries_one_over_sqrt_n(n):
    q = rotate.random_hadamard(n, seed=3)
    assert torch.allclose(q @ q.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(q.abs(), torch.full((n, n), n**-0.5, dtype=torch.float64))
    if n >= 8:  # two seeds, two sign patterns
        assert not torch.equal(rotate.random_hadamard(n, 3), rotate.random_hadamard(n, 4))


def test_a_rotation_spreads_a_one_hot_outlier_evenly():
    x = torch.zeros(1, 64)
    x[0, 5] = 10.0
    assert rotate.peak_to_rms(x) == pytest.approx(8.0)  # sqrt(64)
    y = x @ rotate.random_hadamard(64).float()
    assert rotate.peak_to_rms(y) == pytest.approx(1.0)  # every entry +-10/8


def test_rotating_a_tinylm_leaves_its_float_output_unchanged():
    torch.manual_seed(0)
    model = TinyLM(d_model=32, layers=2, heads=2, context=16).eval()
    x = torch.randint(0, 256, (3, 16))
    rotated = rotate.rotate(model, seed=0)
    assert (rotated(x) - model(x)).abs().max() < 1e-4
    inner = rotated.blocks[0].attn.qkv
    assert isinstance(inner, rotate.RotatingLinear)
    assert not torch.allclose(inner.linear.weight, model.blocks[0].attn.qkv.weight)
    assert torch.equal(
        rotate.rotate(model, seed=None).blocks[0].attn.qkv.linear.weight,
        model.blocks[0].attn.qkv.weight,
    )
    assert "blocks.0.attn.qkv.linear" in rtn.linear_layers(rotated)  # rtn reaches the weights


def test_activations_are_quantized_per_token_after_the_rotation():
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    x = torch.randn(2, 3, 16)
    x[..., 2] *= 30  # an outlier channel
    plain = rotate.RotatingLinear(lin, None, act_bits=4)
    rot = rotate.RotatingLinear(lin, rotate.random_hadamard(16), act_bits=4)
    err_plain = (plain(x) - lin(x)).pow(2).mean()
    err_rot = (rot(x) - lin(x)).pow(2).mean()
    assert err_rot < err_plain / 2  # the 4-bit grid of a token is finer once the outlier spreads
    assert torch.allclose(rotate.RotatingLinear(lin, None)(x), lin(x))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="power of two"):
        rotate.hadamard(12)
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        rotate.RotatingLinear(nn.Linear(16, 4), rotate.random_hadamard(8))
    with pytest.raises(ValueError, match="act_bits"):
        rotate.RotatingLinear(nn.Linear(16, 4), None, act_bits=9)
    with pytest.raises(TypeError, match="nn.Linear"):
        rotate.RotatingLinear(nn.Conv1d(1, 1, 1), None)
    with pytest.raises(ValueError, match="seed"):
        rotate.rotate(nn.Sequential(nn.Linear(4, 4)), seed=-1)
