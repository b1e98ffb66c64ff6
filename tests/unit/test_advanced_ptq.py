"""Cross-layer equalization, bias correction and AdaRound (qnb.cle, qnb.bias_correction,
qnb.adaround): the float model unchanged by CLE, the mean error removed by bias correction,
AdaRound's weights on the grid, AdaRound's loss against AIMET's own, bad inputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
import zipfile

import pytest
import torch
from torch import nn
from torch.ao.quantization import _equalize
from torchvision.models import quantization as tvq

from qnb import adaround, bias_correction, calibration, cle, models, simulate

SMALL = adaround.AdaRoundSettings(iterations=20, batch_size=8)


def images(n=16, seed=0, size=28, channels=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, channels, size, size, generator=gen) for _ in range(2)]


@pytest.fixture(scope="module")
def depthwise():
    return models.build("depthwise_cnn", seed=0).eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return tvq.resnet18(weights=None, quantize=False).eval()


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- CLE ------------------------------------------------------------------------------------


def test_pairs_of_the_workbook_models_and_resnet(depthwise, resnet):
    # inside each inverted residual block: expand -> dw (through the ReLU) and dw -> project;
    # after the last block (no skip) project -> head, with nothing between them
    inside = [pair for i in range(1, 5) for pair in (
        (f"block{i}.expand.0", f"block{i}.dw.0"), (f"block{i}.dw.0", f"block{i}.project"))]
    assert cle.pairs(simulate.fused_copy(depthwise)) == [*inside, ("block4.project", "head.0")]
    plain = simulate.fused_copy(models.build("plain_cnn", seed=0).eval())
    assert cle.pairs(plain) == [("fc1.0", "fc2")]
    found = cle.pairs(simulate.fused_copy(resnet))
    assert len(found) == 8 and ("layer1.0.conv1.0", "layer1.0.conv2") in found


def test_no_pair_crosses_a_residual_add(depthwise):
    """A layer whose output also feeds a skip add is never A: rescaling its output channels
    would rescale the add's other input too. So the stem (block1 adds its input back) is not
    paired with block1.expand, nor block2's projection with block3.expand, nor a block's
    projection with the next block's expand."""
    found = cle.pairs(simulate.fused_copy(depthwise))
    assert not any(a == "stem.0" for a, _ in found)
    for i in range(1, 4):
        assert not any(a == f"block{i}.project" for a, _ in found), i
    blocks = depthwise.blocks()
    assert [b.has_skip for b in blocks] == [True, False, True, False]
    # what such a pair would do: block1's output (the add) changes; a real pair keeps it
    x = images(8)[0]
    wrong, report = cle.equalize(depthwise, layer_pairs=[("stem.0", "block1.expand.0")],
                                 max_sweeps=1)
    right, _ = cle.equalize(depthwise, layer_pairs=[("block1.expand.0", "block1.dw.0")],
                            max_sweeps=1)
    assert (report.scales[("stem.0", "block1.expand.0")] - 1).abs().max() > 0.05
    outputs = {}
    fused = simulate.fused_copy(depthwise)
    for name, model in (("fused", fused), ("wrong", wrong), ("right", right)):
        model.block1.register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach()))
        with torch.no_grad():
            model(x)
    scale = outputs["fused"].abs().max().item()
    assert torch.allclose(outputs["right"], outputs["fused"], rtol=1e-4, atol=1e-4 * scale)
    assert (outputs["wrong"] - outputs["fused"]).abs().max().item() > 0.02 * scale


@pytest.mark.parametrize("name", ["depthwise", "resnet"])
def test_equalize_keeps_the_float_outputs_and_the_callers_model(name, request):
    model = request.getfixturevalue(name)
    before = state(model)
    x = images(4, channels=3, size=32)[0] if name == "resnet" else images(8)[0]
    equalized, report = cle.equalize(model)
    assert same_state(before, state(model))
    with torch.no_grad():
        want, got = simulate.fused_copy(model)(x), equalized(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert report.sweeps >= 1 and report.pairs


def test_equalize_matches_the_ranges_of_each_pair(depthwise):
    equalized, report = cle.equalize(depthwise, max_sweeps=100, tolerance=1e-6)
    layers = dict(equalized.named_modules())
    for a, b in report.pairs:
        r1 = cle.channel_ranges(layers[a].weight, 0)
        r2 = cle.channel_ranges(layers[b].weight, 1, layers[b].groups)
        assert torch.allclose(r1, r2, rtol=1e-3), (a, b)
    fused = dict(simulate.fused_copy(depthwise).named_modules())
    spread = [cle.channel_ranges(m[a].weight, 0) for m in (fused, layers) for a, _ in report.pairs]
    ratio_before = max((r.max() / r.min()).item() for r in spread[: len(report.pairs)])
    ratio_after = max((r.max() / r.min()).item() for r in spread[len(report.pairs):])
    assert ratio_after < ratio_before


def test_scales_formula_and_dead_channels():
    r1, r2 = torch.tensor([4.0, 1.0, 0.0]), torch.tensor([1.0, 4.0, 2.0])
    s = cle.equalization_scales(r1, r2)
    assert torch.allclose(s, torch.tensor([2.0, 0.5, 1.0]))
    assert torch.allclose(r1[:2] / s[:2], r2[:2] * s[:2])  # both sqrt(r1 * r2)


def test_one_step_equals_pytorchs_cross_layer_equalization():
    # torch measures a channel's range as max - min, qnb as max|w|: equal up to a factor of 2
    # when every channel is symmetric, which this pair is built to be.
    gen = torch.Generator().manual_seed(0)
    u, v = torch.rand(3, 2, generator=gen) + 0.1, torch.rand(2, 3, generator=gen) + 0.1
    a, b = nn.Linear(4, 3), nn.Linear(3, 4)
    with torch.no_grad():
        a.weight.copy_(torch.cat([u, -u], dim=1) * torch.tensor([[1.0], [10.0], [0.1]]))
        b.weight.copy_(torch.cat([v, -v], dim=0))
    ours_a, ours_b = nn.Linear(4, 3), nn.Linear(3, 4)
    ours_a.load_state_dict(a.state_dict())
    ours_b.load_state_dict(b.state_dict())
    _equalize.cross_layer_equalization(a, b)
    model = nn.Sequential(ours_a, nn.ReLU(), ours_b).eval()
    equalized, _ = cle.equalize(model, layer_pairs=[("0", "2")], max_sweeps=1)
    assert torch.allclose(equalized[0].weight, a.weight, rtol=1e-5)
    assert torch.allclose(equalized[0].bias, a.bias, rtol=1e-5)
    assert torch.allclose(equalized[2].weight, b.weight, rtol=1e-5)


def test_cle_bad_inputs(depthwise):
    with pytest.raises(ValueError, match="train mode"):
        cle.equalize(models.build("depthwise_cnn", seed=0))
    with pytest.raises(ValueError, match="max_sweeps"):
        cle.equalize(depthwise, max_sweeps=0)
    with pytest.raises(ValueError, match="its layers are.*'stem.0'"):
        cle.equalize(depthwise, layer_pairs=[("stem.0", "nope")])
    with pytest.raises(ValueError, match="does not take"):
        cle.equalize(depthwise, layer_pairs=[("stem.0", "block2.dw.0")])
    with pytest.raises(ValueError, match="axis"):
        cle.channel_ranges(torch.ones(2, 2), 2)


# --- bias correction ------------------------------------------------------------------------


def test_bias_correction_removes_the_mean_error_of_the_first_layer(depthwise):
    batches = images(16)
    reference = simulate.fused_copy(depthwise)
    sim, _ = simulate.simulate(depthwise, weight_bits=3)
    before = state(sim)
    corrected, shifts = bias_correction.correct_bias(sim, reference, batches)
    assert same_state(before, state(sim))
    first = "stem.0"

    def means(model):
        return bias_correction.channel_means(calibration.capture(model, first, batches,
                                                                 output=True))

    want, got, was = means(reference), means(corrected), means(sim)
    assert (was - want).abs().max() > 1e-3  # 3-bit weights do shift the mean
    assert torch.allclose(got, want, atol=1e-5)
    assert list(shifts) == [n for n, _ in simulate.weight_layers(reference)]
    changed = {k for k in before if not torch.equal(before[k], corrected.state_dict()[k])}
    assert changed and all(k.endswith("bias") for k in changed)


def test_bias_correction_bad_inputs(depthwise):
    sim, _ = simulate.simulate(depthwise, weight_bits=4)
    plain = simulate.fused_copy(models.build("plain_cnn", seed=0).eval())
    with pytest.raises(ValueError, match="same Conv2d/Linear layers"):
        bias_correction.correct_bias(sim, plain, images(4))
    with pytest.raises(ValueError, match="no batches"):
        bias_correction.correct_bias(sim, simulate.fused_copy(depthwise), [])
    with pytest.raises(TypeError, match="calib"):
        bias_correction.correct_bias(sim, simulate.fused_copy(depthwise), torch.zeros(4, 1, 28, 28))


# --- AdaRound -------------------------------------------------------------------------------


def test_rectified_sigmoid_starts_at_the_fractional_part_and_beta_anneals():
    rest = torch.linspace(0.01, 0.99, 50)
    assert torch.allclose(adaround.rectified_sigmoid(adaround.initial_v(rest)), rest, atol=1e-5)
    assert adaround.rectified_sigmoid(torch.tensor([-20.0, 20.0])).tolist() == [0.0, 1.0]
    settings = adaround.AdaRoundSettings(iterations=100)
    assert adaround.beta_at(19, settings) is None
    assert adaround.beta_at(20, settings) == pytest.approx(20.0)
    assert adaround.beta_at(99, settings) == pytest.approx(2.0, abs=0.01)


def test_round_layer_lowers_the_reconstruction_loss_of_a_layer():
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(32, 16)
    inputs = torch.randn(256, 32, generator=gen).relu()
    targets = layer(inputs).detach()
    scale, _, qmin, qmax = simulate.weight_qparams(layer.weight, 3)
    rounded, result = adaround.round_layer(
        layer, scale, qmin, qmax, inputs, targets,
        settings=adaround.AdaRoundSettings(iterations=300))
    assert result.loss_adaround < result.loss_nearest
    assert 0 < result.flips < result.weights


def check_on_grid(sim, reference, bits):
    for name, layer in simulate.weight_layers(reference):
        scale, _, qmin, qmax = simulate.weight_qparams(layer.weight, bits)
        s = scale.reshape(-1, *[1] * (layer.weight.dim() - 1))
        codes = dict(sim.named_modules())[name].weight.detach() / s
        assert torch.allclose(codes, codes.round(), atol=1e-4), name
        codes, low = codes.round(), torch.floor(layer.weight.detach() / s)
        up_or_down = (codes == low.clamp(qmin, qmax)) | (codes == (low + 1).clamp(qmin, qmax))
        assert up_or_down.all(), name


def test_adaround_weights_round_up_or_down_on_the_grid(depthwise):
    before = state(depthwise)
    sim, results = adaround.adaround(depthwise, images(16), weight_bits=3, act_bits=8,
                                     settings=SMALL)
    assert same_state(before, state(depthwise))
    check_on_grid(sim, simulate.fused_copy(depthwise), 3)
    assert [r.name for r in results] == [n for n, _ in simulate.weight_layers(sim)]
    assert all(r.history and r.seconds > 0 for r in results)


@pytest.mark.slow
def test_cle_bias_correction_and_adaround_on_resnet18(resnet):
    batches = images(2, channels=3, size=32)
    equalized, _ = cle.equalize(resnet)
    sim, _ = simulate.simulate(equalized, weight_bits=4)
    corrected, shifts = bias_correction.correct_bias(sim, simulate.fused_copy(equalized), batches)
    assert len(shifts) == 21
    rounded, results = adaround.adaround(
        resnet, batches, weight_bits=4, act_bits=None,
        settings=adaround.AdaRoundSettings(iterations=2, batch_size=2))
    assert len(results) == 21
    check_on_grid(rounded, simulate.fused_copy(resnet), 4)


def test_adaround_bad_inputs(depthwise):
    with pytest.raises(ValueError, match="weight_bits"):
        adaround.adaround(depthwise, images(4), weight_bits=9)
    with pytest.raises(ValueError, match="train mode"):
        adaround.adaround(models.build("depthwise_cnn", seed=0), images(4), weight_bits=4)
    with pytest.raises(TypeError, match="settings"):
        adaround.adaround(depthwise, images(4), weight_bits=4, settings={"iterations": 5})
    with pytest.raises(ValueError, match="iterations"):
        adaround.AdaRoundSettings(iterations=0)
    with pytest.raises(ValueError, match="warm_start"):
        adaround.AdaRoundSettings(warm_start=1.5)
    with pytest.raises(ValueError, match="no batches"):
        adaround.adaround(depthwise, [], weight_bits=4)
    with pytest.raises(TypeError, match="layer"):
        adaround.round_layer(nn.ReLU(), torch.ones(1), -4, 3, torch.ones(2, 1), torch.ones(2, 1))


# --- AIMET's loss functions, from its wheel -------------------------------------------------

AIMET = "aimet-torch==2.42.0"
AIMET_LOSS = "aimet_torch/_base/adaround/adaround_loss.py"


def aimet_loss_module(tmp_path):
    """AIMET's adaround_loss.py from its wheel on the registry (its package needs a compiled
    library; the loss module only needs AdaroundConstants, given here with AIMET's values)."""
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path), AIMET],
        capture_output=True, text=True, timeout=300,
    )
    wheels = list(tmp_path.glob("aimet_torch-*.whl"))
    if got.returncode or not wheels:
        pytest.skip(f"the registry is not reachable ({got.stderr.strip()[-200:]})")
    with zipfile.ZipFile(wheels[0]) as wheel:
        source = wheel.read(AIMET_LOSS).decode()
        defs = wheel.read("aimet_torch/common/defs.py").decode()
    assert "GAMMA = -0.1" in defs and "ZETA = 1.1" in defs  # the constants stubbed below
    stub = types.ModuleType("aimet_torch.common.defs")
    stub.AdaroundConstants = types.SimpleNamespace(GAMMA=-0.1, ZETA=1.1)
    saved = {k: sys.modules.get(k) for k in ("aimet_torch", "aimet_torch.common",
                                             "aimet_torch.common.defs")}
    sys.modules.update({"aimet_torch": types.ModuleType("aimet_torch"),
                        "aimet_torch.common": types.ModuleType("aimet_torch.common"),
                        "aimet_torch.common.defs": stub})
    try:
        path = tmp_path / "adaround_loss.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("aimet_adaround_loss", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@pytest.mark.slow
@pytest.mark.network  # AIMET's wheel from the registry
def test_losses_and_beta_equal_aimets(tmp_path):
    aimet = aimet_loss_module(tmp_path)
    settings = adaround.AdaRoundSettings(iterations=200)
    params = aimet.AdaroundHyperParameters(200, settings.reg_param, settings.beta_range,
                                           settings.warm_start)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(16, 8, 3, 3, generator=gen) * 3
    out, target = torch.randn(4, 16, 5, 5, generator=gen), torch.randn(4, 16, 5, 5, generator=gen)
    ours = adaround.reconstruction_loss(out, target)
    assert torch.allclose(ours, aimet.AdaroundLoss.compute_recon_loss(out, target), rtol=1e-6)
    for it in (0, 39, 40, 41, 100, 199):
        want = aimet.AdaroundLoss.compute_round_loss(v, params, it)
        got = adaround.rounding_loss(v, adaround.beta_at(it, settings), settings.reg_param)
        assert float(got) == pytest.approx(float(want), rel=1e-6, abs=1e-9), it
