"""Weight quantization for language models (qnb.rtn, qnb.smoothquant, qnb.gptq) on a small
stand-in transformer defined here: RTN's symmetric and asymmetric grids and their storage cost,
activation statistics, SmoothQuant's float-preserving migration, its exact undoing of a
per-channel injected outlier (an identity) and what it does against a first-token outlier,
GPTQ's least-squares update, its brute-force bound and its gain over RTN, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qnb import calibration, gptq, rtn, smoothquant

D = 64
VOCAB = 256


@pytest.fixture(autouse=True)
def one_thread(torch_state):
    """Tiny matrices: one thread is 40x faster than two on a shared, busy machine."""
    torch.set_num_threads(1)


class Block(nn.Module):
    """A pre-norm transformer block: causal single-head attention and a GELU MLP."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(d, 4 * d)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.qkv(self.norm1(x)).chunk(3, dim=-1)
        att = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        x = x + self.attn.proj(att @ v)
        return x + self.mlp(self.norm2(x))


class ToyLM(nn.Module):
    """Byte tokens (batch, time) -> logits (batch, time, 256), two pre-norm blocks."""

    def __init__(self, d: int = D, blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(blocks))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def smooth_pairs(self) -> list[tuple[str, list[str]]]:
        pairs = []
        for i in range(len(self.blocks)):
            pairs += [(f"blocks.{i}.norm1", [f"blocks.{i}.attn.qkv"]),
                      (f"blocks.{i}.norm2", [f"blocks.{i}.mlp.fc1"])]
        return pairs


def toy(seed: int = 0) -> ToyLM:
    torch.manual_seed(seed)
    return ToyLM().eval()


def tokens(seed: int = 0, batches: int = 2, batch: int = 4, time: int = 32) -> list:
    gen = torch.Generator().manual_seed(100 + seed)
    return [torch.randint(0, VOCAB, (batch, time), generator=gen) for _ in range(batches)]


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rel_mse(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).square().mean() / want.square().mean())


def logits(model, batches):
    with torch.no_grad():
        return torch.cat([model(b) for b in batches])


# --- RTN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "channel", 8, 32])
def test_rtn_codes_scales_and_weight(bits, granularity):
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(bits))
    codes, scales = rtn.quantize_codes(w, bits, granularity)
    qmax = 2 ** (bits - 1) - 1
    assert codes.dtype == torch.int8 and codes.shape == w.shape
    assert codes.min() >= -qmax - 1 and codes.max() <= qmax
    shape = {"tensor": (1, 1), "channel": (12, 1)}.get(granularity) or (12, 64 // granularity)
    assert scales.shape == shape
    full = rtn.column_scales(scales, 64).expand_as(w)
    # scale = max|w| of its group / qmax, the largest weight of each group on +-qmax
    if granularity == "tensor":
        tops = w.abs().max().expand_as(w)
    elif granularity == "channel":
        tops = w.abs().amax(1, keepdim=True).expand_as(w)
    else:
        tops = w.abs().reshape(12, -1, granularity).amax(2).repeat_interleave(granularity, 1)
    assert torch.allclose(full, tops / qmax)
    assert (codes.abs() == qmax).any()
    w_hat = rtn.quantize_weight(w, bits, granularity)
    assert torch.equal(w_hat, codes.float() * full)
    assert ((w - w_hat).abs() <= full / 2 * (1 + 1e-6)).all()  # nearest point: half a step


def test_rtn_rounds_half_to_even_and_zero_groups():
    w = torch.tensor([[0.5, 1.5, 2.5, -0.5, 7.0, -3.5, 0, 0], [0.0] * 4 + [1.0, 0, 0, 0]])
    codes, scales = rtn.quantize_codes(w, 4, 4)  # qmax 7: max|w| 7 gives the scale 1
    assert torch.equal(scales, torch.tensor([[2.5 / 7, 1.0], [1.0, 1.0 / 7]]))
    codes, scales = rtn.quantize_codes(w, 4, "channel")
    assert torch.equal(scales, torch.tensor([[1.0], [1.0 / 7]]))
    assert codes[0].tolist() == [0, 2, 2, 0, 7, -4, 0, 0]
    assert torch.equal(rtn.quantize_weight(w, 4, 4)[1, :4], torch.zeros(4))


def test_rtn_error_falls_with_bits_and_finer_groups():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(0))
    w[:, 5] *= 20  # an outlier column: per-group scales isolate it

    def err(bits, g):
        return float((rtn.quantize_weight(w, bits, g) - w).square().mean())

    for g in ["tensor", "channel", 32]:
        assert err(3, g) > err(4, g) > err(8, g)
    assert err(4, "tensor") > err(4, "channel") > err(4, 32) > err(4, 8)


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("granularity", ["channel", 16])
def test_symmetric_rtn_never_uses_qmin(bits, granularity):
    """max|w| / qmax puts the largest weight on +-qmax: -2^(bits-1) is never reached, so only
    2^bits - 1 of the 2^bits codes are used (7 of 8 at 3 bits)."""
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(bits))
    codes, _ = rtn.quantize_codes(w, bits, granularity)
    qmin, qmax = rtn.grid(bits)
    assert int(codes.min()) == -qmax > qmin
    assert len(codes.unique()) == 2**bits - 1


def gptq_reference_asymmetric(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """IST-DASLab/gptq's Quantizer (sym=False, perchannel) applied to each group of columns."""
    rows = w.reshape(-1, group)
    maxq = 2**bits - 1
    xmin = torch.minimum(rows.min(1).values, torch.zeros(len(rows)))
    xmax = torch.maximum(rows.max(1).values, torch.zeros(len(rows)))
    scale = ((xmax - xmin) / maxq)[:, None]
    zero = torch.round(-xmin[:, None] / scale)
    q = torch.clamp(torch.round(rows / scale) + zero, 0, maxq)
    return (scale * (q - zero)).reshape(w.shape)


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "channel", 16])
def test_asymmetric_rtn_codes_zero_points_and_weight(bits, granularity):
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(bits)) + 0.3
    codes, scales, zeros = rtn.asymmetric_codes(w, bits, granularity)
    levels = 2**bits - 1
    assert codes.dtype == torch.uint8 and codes.shape == w.shape
    assert zeros.dtype == torch.int16 and zeros.shape == scales.shape
    assert scales.shape == rtn.weight_scales(w, bits, granularity).shape
    assert int(codes.min()) == 0 and int(codes.max()) == levels  # both ends of the grid used
    assert 0 <= int(zeros.min()) and int(zeros.max()) <= levels
    full, zero = rtn.column_scales(scales, 64).expand_as(w), rtn.column_scales(zeros, 64)
    w_hat = rtn.quantize_weight(w, bits, granularity, symmetric=False)
    assert torch.equal(w_hat, (codes.float() - zero.float()) * full)
    assert ((w - w_hat).abs() <= full / 2 * (1 + 1e-5)).all()  # nearest point: half a step
    group = {"tensor": w.numel(), "channel": 64}.get(granularity, granularity)
    assert torch.allclose(w_hat, gptq_reference_asymmetric(w, bits, group), atol=1e-6)
    if isinstance(granularity, int):  # torch's own fake quantization, one "channel" per group
        torch_hat = torch.fake_quantize_per_channel_affine(
            w.reshape(-1, granularity), scales.reshape(-1), zeros.reshape(-1).int(), 0, 0,
            levels).reshape(w.shape)
        assert torch.allclose(w_hat, torch_hat, atol=1e-6)
    sym = rtn.quantize_weight(w, bits, granularity)
    assert (w_hat - w).square().mean() < (sym - w).square().mean()  # a finer step here


def test_asymmetric_rtn_zero_group_and_one_signed_group():
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 3.0]])
    codes, scales, zeros = rtn.asymmetric_codes(w, 2, 4)  # 4 levels: 0..3
    assert torch.equal(scales, torch.tensor([[1.0, 1.0]]))  # zero group: 1; [0, 3] / 3
    assert zeros.tolist() == [[0, 0]] and codes.tolist() == [[0, 0, 0, 0, 0, 1, 2, 3]]
    assert torch.equal(rtn.quantize_weight(w, 2, 4, symmetric=False),
                       torch.tensor([[0.0, 0, 0, 0, 0, 1, 2, 3]]))


def test_bits_per_weight():
    assert rtn.bits_per_weight(128, 512, 4, 32) == 4.5
    assert rtn.bits_per_weight(128, 512, 4, "channel") == 4 + 16 / 128
    assert rtn.bits_per_weight(128, 512, 3, "tensor") == 3 + 16 / (128 * 512)
    assert rtn.bits_per_weight(128, 512, 4, 64, scale_bits=32) == 4.5
    # asymmetric: a zero point of the weight's width per scale (GPTQ's and AWQ's qzeros)
    assert rtn.bits_per_weight(128, 512, 4, 128, symmetric=False) == 4 + 20 / 128
    assert rtn.bits_per_weight(128, 512, 3, 64, symmetric=False) == 3 + 19 / 64
    assert rtn.bits_per_weight(128, 512, 4, "channel", symmetric=False) == 4 + 20 / 128
    model = toy()
    bpw = rtn.model_bits_per_weight(model, 4, 32)
    assert bpw == 4.5
    keep = ["head"]
    mixed = rtn.model_bits_per_weight(model, 4, "channel", keep=keep)
    layers = rtn.linear_layers(model, keep)
    counts = {n: m.weight.numel() for n, m in layers.items()}
    want = sum(c * (4 + 16 / layers[n].in_features) for n, c in counts.items()) / sum(
        counts.values())
    assert mixed == pytest.approx(want) and "head" not in layers
    assert rtn.model_bits_per_weight(model, 3, 32, symmetric=False) == 3 + 19 / 32


def test_quantize_linears_copies_and_keeps():
    model = toy()
    before = state(model)
    q = rtn.quantize_linears(model, 4, 16, keep=["head"])
    assert same_state(before, state(model)) and not q.training
    layers = dict(q.named_modules())
    for name, layer in dict(model.named_modules()).items():
        if isinstance(layer, nn.Linear):
            want = layer.weight if name == "head" else rtn.quantize_weight(layer.weight, 4, 16)
            assert torch.equal(layers[name].weight, want), name
            assert torch.equal(layers[name].bias, layer.bias)
    assert torch.equal(q.embed.weight, model.embed.weight)
    batches = tokens()
    err4 = rel_mse(logits(q, batches), logits(model, batches))
    err8 = rel_mse(logits(rtn.quantize_linears(model, 8, "channel"), batches),
                   logits(model, batches))
    assert err8 < 1e-4 < err4 < 0.05  # seen: 1.8e-5 and 9e-4 (head kept in float)
    asym = rtn.quantize_linears(model, 3, 16, symmetric=False)
    for name, layer in rtn.linear_layers(model).items():
        want = rtn.quantize_weight(layer.weight, 3, 16, symmetric=False)
        assert torch.equal(dict(asym.named_modules())[name].weight, want), name


def test_rtn_bad_inputs():
    w = torch.randn(4, 12)
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8, got 9"):
        rtn.quantize_weight(w, 9, "channel")
    with pytest.raises(TypeError, match="bits"):
        rtn.quantize_weight(w, 4.0, "channel")
    with pytest.raises(ValueError, match="group size must divide in_features.*in_features=12"):
        rtn.quantize_weight(w, 4, 5)
    with pytest.raises(ValueError, match="granularity must be 'tensor', 'channel' or a group"):
        rtn.quantize_weight(w, 4, "row")
    with pytest.raises(ValueError, match="granularity must be an int >= 1, got 0"):
        rtn.quantize_weight(w, 4, 0)
    with pytest.raises(ValueError, match="2-D"):
        rtn.quantize_weight(torch.randn(4), 4, "tensor")
    with pytest.raises(ValueError, match="NaN or inf"):
        rtn.quantize_weight(torch.tensor([[1.0, float("nan")]]), 4, "tensor")
    model = toy()
    with pytest.raises(ValueError, match=r"granularity=128: .* layer 'blocks.0.attn.qkv' has "
                       r"in_features=64"):
        rtn.quantize_linears(model, 4, 128)
    with pytest.raises(ValueError, match=r"'nope' \(no such module\)"):
        rtn.quantize_linears(model, 4, "channel", keep=["nope"])
    with pytest.raises(ValueError, match=r"'blocks.0.norm1' \(LayerNorm\)"):
        rtn.quantize_linears(model, 4, "channel", keep=["blocks.0.norm1"])
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        rtn.quantize_linears(nn.Sequential(nn.ReLU()), 4, "channel")
    with pytest.raises(TypeError, match="keep must be an iterable of layer names"):
        rtn.quantize_linears(model, 4, "channel", keep="head")
    with pytest.raises(ValueError, match="keeps every nn.Linear"):
        rtn.quantize_linears(nn.Linear(4, 4), 4, "channel", keep=[""])
    with pytest.raises(ValueError, match="in_features=64"):
        rtn.model_bits_per_weight(model, 4, 48)
    with pytest.raises(TypeError, match="symmetric must be True .* or False"):
        rtn.quantize_weight(w, 4, "channel", symmetric="no")
    with pytest.raises(TypeError, match="symmetric must be True"):
        rtn.bits_per_weight(12, 4, 4, "channel", symmetric=1)
    with pytest.raises(TypeError, match="symmetric must be True"):
        rtn.quantize_linears(model, 4, "channel", symmetric=None)
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8, got 1"):
        rtn.asymmetric_codes(w, 1, "channel")


# --- SmoothQuant ----------------------------------------------------------------------------

QKV0, FC1_1 = "blocks.0.attn.qkv", "blocks.1.mlp.fc1"


def with_outliers(model, factor=50.0):
    """Outlier channel 5 into block 0's attention, channel 9 into block 1's MLP."""
    model = smoothquant.inject_outlier(model, "blocks.0.norm1", 5, factor, [QKV0])
    return smoothquant.inject_outlier(model, "blocks.1.norm2", 9, factor, [FC1_1])


def test_activation_stats_match_a_direct_computation():
    model, batches = toy(), tokens()
    stats = smoothquant.activation_stats(model, iter(batches), layers=[FC1_1, "head", QKV0])
    assert [s.name for s in stats] == [FC1_1, "head", QKV0]
    for s in stats:
        x = calibration.capture(model, s.name, batches).reshape(-1, s.channel_max.numel()).double()
        assert s.tokens == len(x) == 2 * 4 * 32
        assert torch.allclose(s.channel_max.double(), x.abs().amax(0))
        centred = x.flatten() - x.mean()
        want = float(centred.pow(4).mean() / centred.pow(2).mean() ** 2)
        assert s.kurtosis == pytest.approx(want, rel=1e-6)
        top = x.abs().amax(0)
        assert s.outlier_ratio == pytest.approx(float(top.max() / top.quantile(0.5)), rel=1e-6)
        row = s.row()
        assert set(row) == {"name", "tokens", "channels", "max", "kurtosis", "outlier_ratio"}
    names = [s.name for s in smoothquant.activation_stats(model, batches)]
    assert names == [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def test_inject_outlier_keeps_the_outputs_and_makes_an_outlier():
    model, batches = toy(), tokens()
    before = state(model)
    out = with_outliers(model)
    assert same_state(before, state(model))
    want = logits(model, batches)
    assert float((logits(out, batches) - want).abs().max()) < 1e-5 * float(want.abs().max())
    clean = {s.name: s for s in smoothquant.activation_stats(model, batches)}
    spiky = {s.name: s for s in smoothquant.activation_stats(out, batches)}
    for name, channel in [(QKV0, 5), (FC1_1, 9)]:
        assert 2.5 < clean[name].kurtosis < 3.5 and clean[name].outlier_ratio < 3  # ~normal
        assert spiky[name].kurtosis > 50 and spiky[name].outlier_ratio > 30  # seen: 179, 61
        assert int(spiky[name].channel_max.argmax()) == channel
        ratio = spiky[name].channel_max[channel] / clean[name].channel_max[channel]
        assert float(ratio) == pytest.approx(50, rel=1e-3)
    assert spiky["head"].outlier_ratio == pytest.approx(clean["head"].outlier_ratio, rel=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_smooth_keeps_the_outputs_and_balances_the_ranges(alpha):
    model, batches = with_outliers(toy()), tokens()
    before = state(model)
    smoothed = smoothquant.smooth(model, batches, alpha)
    assert same_state(before, state(model)) and not smoothed.training
    want = logits(model, batches)
    assert float((logits(smoothed, batches) - want).abs().max()) < 1e-4 * float(
        want.abs().max())
    stats = {s.name: s for s in smoothquant.activation_stats(smoothed, batches)}
    layers = dict(smoothed.named_modules())
    for name in [QKV0, FC1_1]:
        x_max = stats[name].channel_max
        w_max = layers[name].weight.abs().amax(0)
        if alpha == 0.5:  # both ranges sqrt(max|X_j| max|W_j|)
            assert torch.allclose(x_max, w_max, rtol=1e-4)
        elif alpha == 1.0:  # all the difficulty in the weights: every activation range 1
            assert torch.allclose(x_max, torch.ones_like(x_max), rtol=1e-4)
        else:  # all in the activations: every weight column range 1
            assert torch.allclose(w_max, torch.ones_like(w_max), rtol=1e-5)
        if alpha > 0:  # some of the activation outliers moved into the weights
            assert stats[name].outlier_ratio < 3
    assert torch.equal(layers["head"].weight, model.head.weight)  # not in a pair


def test_smooth_uses_every_linear_of_a_pair_for_the_weight_max():
    model, batches = toy(), tokens()
    pair = ("blocks.0.norm2", ["blocks.0.mlp.fc1", "blocks.1.attn.qkv"])  # same width: allowed
    smoothed = smoothquant.smooth(model, batches, 0.5, pairs=[pair])
    x_max = smoothquant.activation_stats(model, batches, ["blocks.0.mlp.fc1"])[0].channel_max
    w = torch.cat([model.blocks[0].mlp.fc1.weight, model.blocks[1].attn.qkv.weight])
    s = smoothquant.smoothing_scales(x_max, w.abs().amax(0), 0.5)
    assert torch.allclose(s, x_max.sqrt() / w.abs().amax(0).sqrt())
    assert torch.allclose(smoothed.blocks[0].norm2.weight, model.blocks[0].norm2.weight / s)
    assert torch.allclose(smoothed.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight * s)
    assert torch.equal(smoothed.blocks[1].norm1.weight, model.blocks[1].norm1.weight)


def test_smoothquant_undoes_a_per_channel_injection_exactly():
    """The injection multiplies a LayerNorm channel by f and divides the weight column by f: the
    smoothing scale of the channel becomes f times the original one, and the smoothed injected
    model is the smoothed original (an identity), whatever alpha."""
    model, batches = toy(), tokens()
    for alpha in (0.25, 0.5, 0.75):
        a = smoothquant.smooth(model, batches, alpha)
        b = smoothquant.smooth(with_outliers(model), batches, alpha)
        for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert torch.allclose(pa, pb, rtol=1e-5, atol=1e-6), (alpha, name)


def test_first_token_outlier_keeps_the_outputs_and_spikes_one_position():
    model, batches = toy(), tokens()
    before = state(model)
    size = 200.0
    out = smoothquant.inject_first_token_outlier(model, "blocks.0.norm1", 5, size, QKV0)
    assert same_state(before, state(model)) and not out.training
    assert isinstance(out.blocks[0].norm1, smoothquant.FirstTokenSpikeNorm)
    want = logits(model, batches)
    assert float((logits(out, batches) - want).abs().max()) < 1e-4 * float(want.abs().max())
    x = calibration.capture(model, QKV0, batches)
    y = calibration.capture(out, QKV0, batches)
    assert torch.allclose(y[:, 0, 5], x[:, 0, 5] + size, atol=1e-3)  # first position: + size
    assert torch.allclose(y[:, 1:], x[:, 1:], atol=1e-5)  # every other position as it was
    assert torch.allclose(y[:, 0, :5], x[:, 0, :5], atol=1e-5)
    keys_values = out.blocks[0].attn.qkv.weight[D:]
    assert torch.equal(keys_values[:, 5], torch.zeros(2 * D))  # only the queries read it
    assert torch.equal(out.blocks[0].attn.qkv.weight[:D], model.blocks[0].attn.qkv.weight[:D])
    ratio = smoothquant.activation_stats(out, batches, [QKV0])[0].outlier_ratio
    assert ratio > 30
    control = smoothquant.inject_first_token_outlier(model, "blocks.0.norm1", 5, 0.0, QKV0)
    assert torch.allclose(calibration.capture(control, QKV0, batches), x, atol=1e-5)
    smoothed = smoothquant.smooth(out, batches, 0.5)  # the spike is scaled with the norm
    assert float((logits(smoothed, batches) - want).abs().max()) < 1e-4 * float(
        want.abs().max())
    clean = rel_mse(logits(smoothquant.w8a8(control), batches), want)
    spiky = rel_mse(logits(smoothquant.w8a8(out), batches), want)
    assert spiky > 10 * clean  # per-tensor W8A8: the spike sets every token's step


def test_first_token_outlier_bad_inputs():
    model = toy()
    with pytest.raises(ValueError, match="size must be a finite number >= 0"):
        smoothquant.inject_first_token_outlier(model, "blocks.0.norm1", 0, -1.0, QKV0)
    with pytest.raises(ValueError, match=r"must output queries, keys and values \(192"):
        smoothquant.inject_first_token_outlier(model, "blocks.1.norm2", 0, 1.0, FC1_1)
    with pytest.raises(ValueError, match=r"'blocks.0.norm2' \(LayerNorm\) fed by"):
        smoothquant.inject_first_token_outlier(model, "blocks.0.norm1", 0, 1.0, "blocks.0.norm2")
    with torch.no_grad():
        model.blocks[0].norm1.weight[3] = 0
    with pytest.raises(ValueError, match="zero weight in channel 3"):
        smoothquant.inject_first_token_outlier(model, "blocks.0.norm1", 0, 1.0, QKV0)
    with pytest.raises(ValueError, match="sequence dimension"):
        smoothquant.FirstTokenSpikeNorm(nn.LayerNorm(4))(torch.randn(4))


def test_quantize_activation_per_tensor_and_per_token():
    x = torch.tensor([[[0.5, -1.0, 127.0], [0.0, 0.0, 0.0], [1.0, 2.0, -4.0]]])
    assert torch.equal(smoothquant.quantize_activation(x, "tensor"),
                       torch.tensor([[[0.0, -1.0, 127.0], [0.0] * 3, [1.0, 2.0, -4.0]]]))
    per_token = smoothquant.quantize_activation(x, "token")
    assert torch.equal(per_token[0, 1], torch.zeros(3))
    assert torch.allclose(per_token[0, 2], x[0, 2], atol=4 / 127 / 2 + 1e-7)
    codes = per_token[0, 2] / (4 / 127)
    assert torch.allclose(codes, codes.round(), atol=1e-4)


def test_w8a8_close_to_float_and_smoothquant_recovers_an_injected_outlier():
    """Per-tensor W8A8 of a model with outlier channels (factor 50) loses ~35-50x more than of the
    same model without; SmoothQuant (alpha 0.5) brings it back to the clean level. Seeds 0..2
    saw: clean 1.2-1.3e-4, outliers 4.3-6.2e-3, smoothed 1.2e-4 (relative MSE of the logits)."""
    for seed in range(3):
        model, batches = toy(seed), tokens(seed)
        want = logits(model, batches)
        out = with_outliers(model)
        sim = smoothquant.w8a8(out)
        assert isinstance(sim.blocks[0].attn.qkv, smoothquant.W8A8Linear) and "per tensor" in (
            repr(sim.blocks[0].attn.qkv))
        clean = rel_mse(logits(smoothquant.w8a8(model), batches), want)
        spiky = rel_mse(logits(sim, batches), want)
        smoothed = rel_mse(logits(smoothquant.w8a8(smoothquant.smooth(out, batches)), batches),
                           want)
        assert clean < 1e-3 and spiky > 10 * clean and smoothed < 1.5 * clean, (seed, clean,
                                                                                  spiky, smoothed)
        token = rel_mse(logits(smoothquant.w8a8(out, activations="token"), batches), want)
        assert clean < token < spiky / 3  # per token helps, but the outlier still costs
    kept = smoothquant.w8a8(model, keep=["head"])
    assert isinstance(kept.head, nn.Linear) and torch.equal(kept.head.weight, model.head.weight)
    layer = nn.Linear(8, 4)
    alone = smoothquant.w8a8(layer)
    assert isinstance(alone, smoothquant.W8A8Linear)
    assert torch.equal(alone.linear.weight, rtn.quantize_weight(layer.weight, 8, "channel"))


def test_smoothquant_bad_inputs():
    model, batches = toy(), tokens()
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\], got 1.5"):
        smoothquant.smooth(model, batches, 1.5)
    with pytest.raises(ValueError, match="has no smooth_pairs"):
        smoothquant.smooth(nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2)), [torch.randn(2, 4)])
    with pytest.raises(ValueError, match=r"'blocks.0.attn.qkv' \(Linear\) must name an "
                       "nn.LayerNorm"):
        smoothquant.smooth(model, batches, pairs=[("blocks.0.attn.qkv", ["head"])])
    with pytest.raises(ValueError, match=r"'blocks.0.norm2' \(LayerNorm\) fed by"):
        smoothquant.smooth(model, batches, pairs=[("blocks.0.norm1", ["blocks.0.norm2"])])
    with pytest.raises(ValueError, match=r"'blocks.0.mlp.fc2' has in_features=256, but "
                       "'blocks.0.norm2' has 64 channels"):
        smoothquant.smooth(model, batches, pairs=[("blocks.0.norm2", ["blocks.0.mlp.fc2"])])
    with pytest.raises(ValueError, match=r"'nope' \(no such module\)"):
        smoothquant.inject_outlier(model, "nope", 0, 10.0, [QKV0])
    with pytest.raises(ValueError, match=r"channel must be an int in 0\.\.63, got 64"):
        smoothquant.inject_outlier(model, "blocks.0.norm1", 64, 10.0, [QKV0])
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        smoothquant.inject_outlier(model, "blocks.0.norm1", 0, 0.0, [QKV0])
    with pytest.raises(ValueError, match="activations must be one of 'tensor', 'token'"):
        smoothquant.w8a8(model, activations="channel")
    with pytest.raises(ValueError, match=r"'blocks.0.norm1' \(LayerNorm\)"):
        smoothquant.w8a8(model, keep=["blocks.0.norm1"])
    with pytest.raises(ValueError, match="layers must name nn.Linear layers"):
        smoothquant.activation_stats(model, batches, layers=["embed"])
    with pytest.raises(TypeError, match="calib must be a DataLoader or an iterable"):
        smoothquant.activation_stats(model, batches[0])


# --- GPTQ -----------------------------------------------------------------------------------


def correlated(n: int, d: int, seed: int, rho: float = 0.8) -> torch.Tensor:
    """n inputs of d channels in float64, every pair correlated by rho (a common factor)."""
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return rho**0.5 * common + (1 - rho) ** 0.5 * torch.randn(n, d, generator=gen,
                                                               dtype=torch.float64)


def weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(rows, cols, generator=gen, dtype=torch.float64)


def output_error(w, q, x) -> float:
    """||(W - Q) X^T||_F^2, the layer's output error on inputs X."""
    return float(((w - q).detach().double() @ x.double().T).square().sum())


def test_hessian():
    x = torch.randn(3, 5, 4)
    flat = x.reshape(-1, 4).double()
    H = gptq.hessian(x)
    assert H.dtype == torch.float64 and torch.allclose(H, 2 * flat.T @ flat / 15)


@pytest.mark.parametrize("k, block_size", [(1, 128), (3, 2), (7, 3)])
def test_gptq_update_is_the_least_squares_optimum_of_the_free_columns(k, block_size):
    """After the first k columns are quantized, the rest are the minimizer of ||(W - W') X^T||^2
    over the free columns with the first k fixed at their quantized values (damp 0)."""
    x, w = correlated(200, 10, 0, rho=0.5), weights(4, 10, 0)
    got = gptq.gptq_weight(w, gptq.hessian(x), 3, "channel", damp=0, block_size=block_size,
                           columns=k)
    fixed = got[:, :k]
    scale = rtn.weight_scales(w, 3, "channel")
    assert torch.equal(fixed[:, 0], rtn.quantize_weight(w, 3, "channel")[:, 0])  # column 0: RTN
    assert torch.equal(fixed / scale, (fixed / scale).round())  # the fixed ones on the grid
    target = x @ w.T - x[:, :k] @ fixed.T
    best = torch.linalg.lstsq(x[:, k:], target).solution.T
    assert torch.allclose(got[:, k:], best, rtol=0, atol=1e-10)  # seen: 1.6e-15
    assert not torch.allclose(got[:, k:], w[:, k:], atol=1e-3)  # it did move them


@pytest.mark.parametrize("bits", [2, 3])
def test_gptq_between_the_brute_force_optimum_and_rtn_on_a_tiny_layer(bits):
    """2 rows x 6 columns, per-channel scales fixed from W: every grid point of each row is tried.
    The optimum <= GPTQ always (GPTQ's codes lie on the same grid); GPTQ <= RTN is not a theorem
    (GPTQ is greedy) but holds on seeds 0..2 here, and in 95 of 100 such layers (seeds 0..49 at
    2 and 3 bits were tried; mean GPTQ/RTN error 0.64); over seeds 0..19 it held in 18 of 20 at
    2 bits (mean ratio 0.68) and 20 of 20 at 3 bits (0.65)."""
    qmin, qmax = rtn.grid(bits)
    levels = torch.arange(qmin, qmax + 1, dtype=torch.float64)
    candidates = torch.cartesian_prod(*[levels] * 6)  # (levels^6, 6)
    ratios = []
    for seed in range(20):  # error = n / 2 * delta H delta^T per row: cheaper than delta X^T
        x, w = correlated(64, 6, seed), weights(2, 6, seed)
        H = gptq.hessian(x)
        q = gptq.gptq_weight(w, H, bits, "channel", damp=0)
        r = rtn.quantize_weight(w, bits, "channel")
        ratios.append(output_error(w, q, x) / output_error(w, r, x))
        if seed >= 3:
            continue
        scale = rtn.weight_scales(w, bits, "channel")
        best = 0.0
        for row in range(2):
            delta = candidates * scale[row] - w[row]
            best += float(((delta @ H) * delta).sum(1).min()) * len(x) / 2
        assert best <= output_error(w, q, x) * (1 + 1e-9) <= output_error(w, r, x) * (1 + 1e-9)
        assert torch.equal(q / scale, (q / scale).round())
    assert sum(ratio <= 1 for ratio in ratios) >= 16 and sum(ratios) / len(ratios) < 0.8


@pytest.mark.parametrize("granularity", ["tensor", "channel", 16])
@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_rtn_on_correlated_inputs(bits, granularity):
    """A 32 x 64 layer on correlated inputs: GPTQ's output error is lower than RTN's on every
    seed 0..2 (seen: 0.16-0.34 of RTN's over these 18 cases; the margin here is 0.6)."""
    for seed in range(3):
        x, w = correlated(256, 64, seed), weights(32, 64, seed).float()
        q = gptq.gptq_weight(w, gptq.hessian(x), bits, granularity)
        r = rtn.quantize_weight(w, bits, granularity)
        assert q.dtype == torch.float32 and q.shape == w.shape
        assert output_error(w, q, x) < 0.6 * output_error(w, r, x), seed


@pytest.mark.parametrize("granularity", ["tensor", "channel", 8, 12])
def test_gptq_weights_are_on_the_grid(granularity):
    x, w = correlated(128, 48, 1), weights(6, 48, 1).float()
    H = gptq.hessian(x)
    codes, scales = gptq.gptq_codes(w, H, 3, granularity, block_size=16)
    q = gptq.gptq_weight(w, H, 3, granularity, block_size=16)
    assert codes.dtype == torch.int8 and codes.min() >= -4 and codes.max() <= 3
    assert torch.equal(q, codes.float() * rtn.column_scales(scales, 48))
    if granularity in ("tensor", "channel"):  # RTN's scales, fixed up front
        assert torch.equal(scales, rtn.weight_scales(w, 3, granularity))
    else:  # a group's scales from the updated weights: not RTN's, but positive
        assert scales.shape == (6, 48 // granularity) and (scales > 0).all()
        assert not torch.equal(scales, rtn.weight_scales(w, 3, granularity))
    for block_size in (1, 5, 128):  # lazy batches change nothing but float rounding
        other = gptq.gptq_weight(w, H, 3, granularity, block_size=block_size)
        assert torch.allclose(other, q, atol=1e-6)


def test_gptq_dead_columns_and_damp():
    x, w = correlated(64, 8, 2), weights(3, 8, 2)
    x[:, 2] = 0
    q = gptq.gptq_weight(w, gptq.hessian(x), 4, "channel")
    assert torch.equal(q[:, 2], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(gptq.gptq_weight(w, gptq.hessian(x), 4, "channel", damp=0)[:, 2], q[:, 2])
    damped, undamped = (gptq.gptq_weight(w, gptq.hessian(x), 4, "channel", damp=d, columns=1)
                        for d in (0.1, 0))
    assert not torch.allclose(damped[:, 1:], undamped[:, 1:])  # damp changes H, so the updates
    H = torch.eye(8, dtype=torch.float64)
    H[1, 1] = -1.0
    with pytest.raises(ValueError, match="H is not positive definite.*damp=0.01"):
        gptq.gptq_weight(w, H, 4, "channel")


def test_gptq_model_beats_rtn_on_the_toy_model():
    """Seeds 0..2 at 3 and 4 bits, groups of 16: GPTQ's logits are closer to the float model's
    than RTN's on held-out tokens (seen: 0.81-0.91 of RTN's relative MSE), and every Linear's
    output error on the float model's inputs is lower."""
    for seed in range(3):
        model, calib, held = toy(seed), tokens(seed, batches=4), tokens(seed + 50)
        before, want = state(model), logits(model, held)
        for bits in (3, 4):
            q = gptq.gptq(model, iter(calib), bits, 16, progress=False)
            r = rtn.quantize_linears(model, bits, 16)
            assert same_state(before, state(model)) and not q.training
            assert rel_mse(logits(q, held), want) < 0.95 * rel_mse(logits(r, held), want)
            q_layers, r_layers = dict(q.named_modules()), dict(r.named_modules())
            for name, layer in rtn.linear_layers(model).items():
                x = calibration.capture(model, name, held)
                assert output_error(layer.weight, q_layers[name].weight, x.flatten(0, -2)) < (
                    output_error(layer.weight, r_layers[name].weight, x.flatten(0, -2))), name
    kept = gptq.gptq(model, calib, 4, "channel", keep=["head"], progress=False)
    assert torch.equal(kept.head.weight, model.head.weight)
    assert not torch.equal(kept.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_gptq_bad_inputs():
    w, x = torch.randn(4, 12), torch.randn(32, 12)
    H = gptq.hessian(x)
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8, got 1"):
        gptq.gptq_weight(w, H, 1, "channel")
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8, got 9"):
        gptq.gptq(toy(), tokens(), 9, "channel")
    with pytest.raises(ValueError, match="group size must divide in_features.*in_features=12"):
        gptq.gptq_weight(w, H, 4, 5)
    with pytest.raises(ValueError, match=r"layer 'blocks.0.attn.qkv' has in_features=64"):
        gptq.gptq(toy(), tokens(), 4, 128)
    with pytest.raises(ValueError, match=r"H must be \(in_features, in_features\) = \(12, 12\).*"
                       r"got shape \(11, 11\)"):
        gptq.gptq_weight(w, H[:11, :11], 4, "channel")
    with pytest.raises(ValueError, match="H holds NaN"):
        gptq.gptq_weight(w, H * float("nan"), 4, "channel")
    with pytest.raises(ValueError, match="damp must be a finite number > 0"):
        gptq.gptq_weight(w, H, 4, "channel", damp=-0.1)
    with pytest.raises(ValueError, match=r"block_size must be an int >= 1, got 0"):
        gptq.gptq_weight(w, H, 4, "channel", block_size=0)
    with pytest.raises(ValueError, match=r"columns must be an int in 1\.\.12, got 13"):
        gptq.gptq_weight(w, H, 4, "channel", columns=13)
    with pytest.raises(ValueError, match="inputs must be a non-empty"):
        gptq.hessian(torch.randn(5))
    with pytest.raises(ValueError, match=r"'blocks.0.norm1' \(LayerNorm\)"):
        gptq.gptq(toy(), tokens(), 4, "channel", keep=["blocks.0.norm1"])
    with pytest.raises(TypeError, match="progress must be None"):
        gptq.gptq(toy(), tokens(), 4, "channel", progress="yes")


def test_gptq_gives_rtn_to_a_linear_the_forward_pass_never_reaches():
    model = toy()
    model.spare = nn.Linear(D, 8)  # not called by forward
    q = gptq.gptq(model, tokens(), 4, "channel", progress=False)
    assert torch.equal(q.spare.weight, rtn.quantize_weight(model.spare.weight, 4, "channel"))
