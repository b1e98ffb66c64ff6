"""qnb.awq: the scale formula, the grid search and the folding, against a step-by-step restatement
of the reference implementation (mit-han-lab/llm-awq, awq/quantize/auto_scale.py,
`_search_module_scale` and `scale_ln_fcs`) on a fixed layer; folding leaves float outputs
unchanged; bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qnb import awq, rtn
from qnb.lm import TinyLM


def _layer() -> tuple[nn.LayerNorm, nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    norm, fc = nn.LayerNorm(64), nn.Linear(64, 32)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.1)
        norm.weight[[3, 40]] *= 8  # two salient channels: large on average
    x = norm(torch.randn(4, 16, 64)).detach()
    return norm, fc, x


def _reference_search(fc: nn.Linear, x: torch.Tensor, bits: int, group: int, n_grid: int = 20):
    """llm-awq's loop, restated: scales from mean|x|^ratio, W <- Q(W * s) / s, the output's mean
    squared error, the first ratio of least error; pseudo_quantize_tensor's zero-point grid."""
    x_max = x.abs().view(-1, x.shape[-1]).mean(0)
    org = fc(x)
    best = (float("inf"), -1, None)
    w0 = fc.weight.detach().clone()
    for r in range(n_grid):
        ratio = r / n_grid
        s = x_max.pow(ratio).clamp(min=1e-4).view(-1)
        s = s / (s.max() * s.min()).sqrt()
        w = (w0 * s).reshape(-1, group)
        hi, lo = w.amax(1, keepdim=True), w.amin(1, keepdim=True)
        top = 2**bits - 1
        scale = (hi - lo).clamp(min=1e-5) / top
        zero = (-torch.round(lo / scale)).clamp(0, top)
        q = ((torch.clamp(torch.round(w / scale) + zero, 0, top) - zero) * scale).reshape(w0.shape)
        out = nn.functional.linear(x, q / s, fc.bias)
        loss = (org - out).float().pow(2).mean().item()
        if loss < best[0]:
            best = (loss, ratio, s)
    return best


@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, 16)])
def test_the_search_picks_the_reference_ratio_and_scales(bits, group):
    _, fc, x = _layer()
    before = fc.weight.detach().clone()
    alpha, s, losses = awq.search_scale(fc, [fc], x, bits, group)
    loss, ratio, s_ref = _reference_search(fc, x, bits, group)
    assert alpha == ratio and torch.allclose(s, s_ref) and min(losses) == pytest.approx(loss)
    assert len(losses) == 20 and torch.equal(fc.weight, before)  # the layer is left unchanged
    assert alpha > 0 and losses.index(min(losses)) > 0  # the salient channels make alpha > 0 pay


def test_awq_scales_is_the_mean_magnitude_not_the_maximum():
    x = torch.ones(10, 3)
    x[0, 2] = 40.0  # one token at 40: the mean is 4.9, the maximum 40
    s = awq.awq_scales(awq.act_scale(x), 1.0)
    assert torch.allclose(s, torch.tensor([1.0, 1.0, 4.9]) / 4.9**0.5)
    assert torch.allclose(awq.awq_scales(awq.act_scale(x), 0.0), torch.ones(3))


def test_folding_into_a_layernorm_leaves_the_float_output_unchanged():
    norm, fc, _ = _layer()
    x = torch.randn(5, 64) * 3
    before = fc(norm(x))
    s = torch.rand(64) + 0.2
    awq.fold(norm, [fc], s)
    assert torch.allclose(fc(norm(x)), before, atol=1e-5)


def test_folding_into_value_rows_and_a_gelu_leaves_the_float_output_unchanged():
    torch.manual_seed(1)
    qkv, proj = nn.Linear(16, 48), nn.Linear(16, 16)
    x = torch.randn(7, 16)
    before = proj(qkv(x)[:, 32:]), qkv(x)[:, :32]
    s = torch.rand(16) + 0.5
    awq.fold(qkv, [proj], s)
    assert torch.allclose(proj(qkv(x)[:, 32:]), before[0], atol=1e-5)
    assert torch.allclose(qkv(x)[:, :32], before[1])  # queries and keys untouched
    act, fc2 = awq.ScaledActivation(nn.GELU(), torch.ones(16)), nn.Linear(16, 8)
    before = fc2(act(x))
    awq.fold(act, [fc2], s)
    assert torch.allclose(fc2(act(x)), before, atol=1e-5)


def test_awq_on_a_tinylm_keeps_the_model_and_quantizes_every_linear():
    torch.manual_seed(0)
    model = TinyLM(d_model=32, layers=1, heads=2, context=16).eval()
    batches = [torch.randint(0, 256, (4, 16))]
    x = torch.randint(0, 256, (2, 16))
    before = model(x).detach()
    q = awq.awq(model, batches, 4, 16, n_grid=5)
    assert torch.equal(model(x), before)  # the original is not touched
    assert set(q.awq_alphas) == {",".join(n) for _, n, _ in awq.places(model)}
    assert isinstance(q.blocks[0].mlp.act, awq.ScaledActivation)
    for name, layer in rtn.linear_layers(q).items():  # on the 16-level grid per group of 16
        w = layer.weight.detach().reshape(-1, 16)
        assert all(len(torch.unique(r)) <= 16 for r in w), name
    assert 0 < (q(x) - before).abs().max() < before.abs().max()
    folded = awq.awq(model, batches, 4, 16, n_grid=5, quantize=False)
    assert (folded(x) - before).abs().max() < 1e-4  # folding alone changes nothing
    assert folded.awq_alphas == q.awq_alphas


def test_bad_inputs_are_named():
    norm, fc, x = _layer()
    with pytest.raises(ValueError, match="alpha"):
        awq.awq_scales(awq.act_scale(x), 1.5)
    with pytest.raises(ValueError, match="mean_abs"):
        awq.awq_scales(torch.tensor([-1.0, 2.0]), 0.5)
    with pytest.raises(ValueError, match="channels"):
        awq.search_scale(fc, [fc], x[..., :32], 4, 32)
    with pytest.raises(ValueError, match="granularity=48"):
        awq.search_scale(fc, [fc], x, 4, 48)
    with pytest.raises(TypeError, match="linears"):
        awq.search_scale(fc, [], x, 4, 32)
    with pytest.raises(ValueError, match="positive"):
        awq.fold(norm, [fc], torch.zeros(64))
    with pytest.raises(TypeError, match="prev"):
        awq.fold(nn.ReLU(), [fc], torch.ones(64))
    with pytest.raises(TypeError, match="TinyLM"):
        awq.awq(fc, [x], 4, 32)
