"""Simulated quantization of whole models, and calibration plumbing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qnb import affine, models, simulate
from qnb.calibration import calibrate
from qnb.env import hide_deprecation_warnings

hide_deprecation_warnings()


@pytest.fixture(scope="module")
def model():
    return models.build("plain_cnn", seed=0).eval()


@pytest.fixture(scope="module")
def batches():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(8, 1, 28, 28, generator=gen) for _ in range(3)]


def test_weights_land_on_a_grid_of_2_to_the_bits_levels(model):
    sim, report = simulate.simulate(model, weight_bits=3, granularity="per_tensor")
    for _, layer in simulate.weight_layers(sim):
        assert len(torch.unique(layer.weight)) <= 2**3
    assert [r.name for r in report] == ["conv1.0", "conv2.0", "fc1.0", "fc2"]
    assert all(r.bits == 3 and r.granularity == "per_tensor" for r in report)


def test_per_channel_weights_match_the_numpy_reference(model):
    w = simulate.fused_copy(model).conv1[0].weight.detach()
    flat = w.reshape(len(w), -1).numpy()
    qp = affine.qparams(flat.min(axis=1), flat.max(axis=1), bits=4, symmetric=True)
    expected = affine.fake_quantize(w.numpy(), qp, axis=0)
    np.testing.assert_array_equal(simulate.fake_quantize_weight(w, 4).numpy(), expected)


def test_per_channel_is_about_as_good_as_per_tensor_on_similar_channels(model):
    """Freshly initialised layers have channels of similar range: the two are within noise."""
    _, per_tensor = simulate.simulate(model, weight_bits=4, granularity="per_tensor")
    _, per_channel = simulate.simulate(model, weight_bits=4, granularity="per_channel")
    for t, c in zip(per_tensor, per_channel, strict=True):
        assert c.weight_sqnr_db >= t.weight_sqnr_db - 0.5


def test_per_channel_wins_big_when_channel_ranges_differ():
    w = torch.randn(3, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    w *= torch.tensor([1.0, 10.0, 100.0])[:, None, None, None]
    error = {
        g: affine.sqnr_db(w.numpy(), simulate.fake_quantize_weight(w, 4, g).numpy())
        for g in simulate.GRANULARITIES
    }
    assert error["per_channel"] > error["per_tensor"] + 0.1  # the big channel dominates SQNR
    small = {g: simulate.fake_quantize_weight(w, 4, g)[0] for g in simulate.GRANULARITIES}
    assert len(torch.unique(small["per_tensor"])) <= 3  # the small channel is all but erased
    assert len(torch.unique(small["per_channel"])) >= 12


@pytest.fixture(scope="module")
def channels():
    """Conv weights whose channels differ in range, the first with its largest |w| positive."""
    w = torch.randn(4, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    w *= torch.tensor([1.0, 3.0, 0.3, 10.0])[:, None, None, None]
    w[0, 0, 0, 0] = w[0].abs().max() + 0.5
    return w


def _per_channel_mse(w: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
    return (w - w_hat).reshape(len(w), -1).square().mean(1)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_minmax_clips_the_top_positive_weight_and_narrow_does_not(channels, bits):
    top = channels[0].abs().max()
    torch_q = simulate.fake_quantize_weight(channels, bits)
    narrow = simulate.fake_quantize_weight(channels, bits, scale_rule="narrow")
    qmax = 2 ** (bits - 1) - 1
    step = top / (qmax + 0.5)  # torch's scale: max|w| / ((qmax - qmin) / 2)
    assert torch_q[0, 0, 0, 0] == pytest.approx(float(qmax * step), rel=1e-6)  # half a step off
    assert narrow[0, 0, 0, 0] == pytest.approx(float(top), rel=1e-6)  # on a level
    for c in range(len(channels)):  # at most 2 * qmax + 1 levels, symmetric around 0
        levels = torch.unique(narrow[c])
        assert len(levels) <= 2 * qmax + 1
        assert levels.min() >= -levels.abs().max() - 1e-6


@pytest.mark.parametrize("granularity", simulate.GRANULARITIES)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_scale_has_at_most_the_weight_error_of_minmax_and_narrow(channels, bits, granularity):
    got = {
        rule: simulate.fake_quantize_weight(channels, bits, granularity, scale_rule=rule)
        for rule in simulate.SCALE_RULES
    }
    if granularity == "per_channel":
        mse = {rule: _per_channel_mse(channels, w_hat) for rule, w_hat in got.items()}
    else:
        mse = {rule: (channels - w_hat).square().mean()[None] for rule, w_hat in got.items()}
    for other in ("minmax", "narrow"):  # both scales are among the candidates
        assert torch.all(mse["mse"] <= mse[other] * (1 + 1e-5) + 1e-12), other
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    for c in range(len(channels)):  # on a grid of at most 2 ** bits levels
        assert len(torch.unique(got["mse"][c])) <= qmax - qmin + 1


def test_mse_scale_beats_minmax_at_two_bits_on_gaussian_weights():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    mse = {
        rule: _per_channel_mse(w, simulate.fake_quantize_weight(w, 2, scale_rule=rule)).mean()
        for rule in simulate.SCALE_RULES
    }
    assert mse["mse"] < 0.7 * mse["minmax"]  # clipping the tails pays off with four levels


def test_scale_rule_reaches_simulate(model):
    sims = {
        rule: simulate.simulate(model, weight_bits=3, granularity="per_tensor", scale_rule=rule)
        for rule in simulate.SCALE_RULES
    }
    for _, layer in simulate.weight_layers(sims["narrow"][0]):
        assert len(torch.unique(layer.weight)) <= 7  # -3..3
    narrow_top = float(sims["narrow"][0].conv1[0].weight.detach().abs().max())
    top = float(simulate.fused_copy(model).conv1[0].weight.detach().abs().max())
    assert narrow_top == pytest.approx(top, rel=1e-6)  # the largest weight is on a level
    sqnr = {rule: [r.weight_sqnr_db for r in report] for rule, (_, report) in sims.items()}
    assert all(m >= t - 1e-3 for m, t in zip(sqnr["mse"], sqnr["minmax"], strict=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bits": 1}, ValueError, "bits must be an int in 2..16, got 1"),
        ({"bits": 3, "scale_rule": "max"}, ValueError, "scale_rule must be one of .*'max'"),
        ({"bits": 3, "granularity": "row"}, ValueError, "granularity must be one of .*'row'"),
        (
            {"bits": 3, "scale_rule": "mse", "symmetric": False},
            ValueError,
            "scale_rule='mse' is a symmetric rule",
        ),
    ],
)
def test_fake_quantize_weight_bad_arguments(channels, kwargs, error, message):
    with pytest.raises(error, match=message):
        simulate.fake_quantize_weight(channels, **kwargs)


def test_the_callers_model_is_untouched(model, batches):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    simulate.simulate(model, weight_bits=2, act_bits=4, calib=batches)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not hasattr(model, "activation_ranges")


def test_activations_are_fake_quantized(model, batches):
    sim, _ = simulate.simulate(model, weight_bits=None, act_bits=3, calib=batches)
    assert set(sim.activation_ranges) == {"quant", "conv1", "conv2", "fc1", "fc2"}
    seen = []
    sim.conv1.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.inference_mode():
        sim(batches[0])
    assert len(torch.unique(seen[0])) <= 2**3


def test_weight_only_leaves_activations_float(model, batches):
    sim, report = simulate.simulate(model, weight_bits=8)
    assert not hasattr(sim, "activation_ranges")
    float_out, sim_out = simulate.fused_copy(model)(batches[0]), sim(batches[0])
    assert torch.allclose(float_out, sim_out, atol=0.05)
    assert all(r.weight_sqnr_db > 35 for r in report)


def test_sixteen_bits_is_nearly_lossless(model, batches):
    sim, _ = simulate.simulate(model, weight_bits=16, act_bits=16, calib=batches)
    assert torch.allclose(simulate.fused_copy(model)(batches[0]), sim(batches[0]), atol=1e-3)


def test_calib_accepts_pairs_and_stops_after_num_batches(model):
    pairs = [(torch.randn(2, 1, 28, 28), torch.zeros(2)) for _ in range(5)]
    assert calibrate(model, pairs, num_batches=2) == 2
    assert calibrate(model, iter(pairs)) == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weight_bits": 1}, ValueError, "weight_bits must be an int in 2..16, got 1"),
        ({"act_bits": 8.0, "calib": []}, TypeError, "act_bits must be an int in 2..16, got 8.0"),
        ({"granularity": "per_row"}, ValueError, "granularity must be one of .*'per_row'"),
        ({"scale_rule": "kl"}, ValueError, "scale_rule must be one of .*'kl'"),
        ({"scale_rule": "narrow", "symmetric": False}, ValueError, "'narrow' is a symmetric"),
        ({"act_bits": 8}, ValueError, "act_bits needs calib"),
        ({"act_bits": 8, "calib": [], "act_method": "kl"}, ValueError, "method must be one of"),
        ({"act_bits": 8, "calib": []}, ValueError, "calib yielded no batches"),
        ({"act_bits": 8, "calib": torch.zeros(3)}, TypeError, "calib must be a DataLoader"),
        ({"act_bits": 8, "calib": [[1, 2]]}, TypeError, "got a batch of type int"),
    ],
)
def test_bad_arguments(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        simulate.simulate(model, **kwargs)


def test_bad_num_batches(model, batches):
    with pytest.raises(ValueError, match="num_batches must be an int >= 1, got 0"):
        calibrate(model, batches, num_batches=0)


@pytest.mark.parametrize("zero_point, quant_min, quant_max", [(0, 0, 255), (73, 0, 255),
                                                               (0, -128, 127), (3, 0, 15)])
def test_fake_quant_evaluation_path_is_torchs_kernel_bit_for_bit(zero_point, quant_min, quant_max):
    """The fast evaluation path of simulate.FakeQuant equals torch's fake-quantize kernel on
    every value: ties of the grid, values beyond both ends, many scales."""
    generator = torch.Generator().manual_seed(0)
    for scale in torch.rand(40, generator=generator).mul(0.2).add(1e-4).tolist():
        fq = simulate.FakeQuant(scale, zero_point, quant_min, quant_max)
        grid = torch.arange(quant_min - 20, quant_max + 20, 0.5) - zero_point  # ties included
        x = torch.cat([grid * scale, torch.randn(10_000, generator=generator) * 300 * scale,
                       torch.tensor([float("inf"), -float("inf"), 0.0, -0.0])])
        with torch.inference_mode():
            fast = fq(x)
        expected = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)
        assert torch.equal(fast, expected), scale


def test_fake_quant_keeps_the_straight_through_gradient():
    fq = simulate.FakeQuant(0.1, 0, 0, 255)
    x = torch.tensor([0.04, 0.26, 30.0, -1.0], requires_grad=True)
    fq(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # passes inside the range, stops outside


def test_simulated_convolutions_run_channels_last(model, batches):
    """The simulated copy holds its conv weights channels-last (oneDNN's fast layout); the
    caller's model keeps its own layout, and the outputs agree with a contiguous copy to float
    rounding."""
    sim, _ = simulate.simulate(model, weight_bits=8, act_bits=None)
    convs = [m for _, m in simulate.weight_layers(sim) if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last)
                         for c in convs)
    assert not convs[1].weight.is_contiguous()  # (with one input channel both layouts agree)
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    contiguous = sim.to(memory_format=torch.contiguous_format)
    x = batches[0]
    with torch.inference_mode():
        torch.testing.assert_close(sim(x), contiguous(x), rtol=1e-4, atol=1e-4)
