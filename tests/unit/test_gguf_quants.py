"""qnb.gguf_quants: Q8_0 and Q4_0 bit-exact with gguf's quantizers, Q4_K read back by gguf's
decoder as this encoder means it, the TinyLM written to a .gguf and read back, bad inputs."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from qnb import gguf_quants as g
from qnb.lm import TinyLM

T = gguf.GGMLQuantizationType


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((16, 512)) * rng.exponential(1, (16, 1))).astype(np.float32)
    x[0, :32] = 0  # an all-zero block: scale 0
    x[1, :32] = np.float32(0.25) * np.arange(32) - 4  # ties: codes land on .5 exactly
    x[2, 40] = -9.0  # the largest magnitude negative: Q4_0's d changes sign
    x[3, 256:] = np.abs(x[3, 256:]) + 1  # a super-block with no value below 0
    return x


@pytest.mark.parametrize(("encode", "qtype"), [(g.q8_0_encode, T.Q8_0), (g.q4_0_encode, T.Q4_0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_block_encoders_are_bit_exact_with_gguf(encode, qtype, seed):
    x = _values(seed)
    want = gguf.quants.quantize(x, qtype).reshape(-1)
    assert np.array_equal(encode(x), want)
    assert np.array_equal(encode(torch.from_numpy(x)), want)  # a tensor is taken too


def test_q4_0_rounds_like_gguf_not_to_nearest_even():
    x = np.zeros(32, np.float32)
    x[0], x[1] = -8.0, 2.5  # d = 1: 2.5 + 8.5 = 11 truncates to 11, code 11 - 8 = 3 (not 2)
    codes = g.q4_0_encode(x)[2:]
    assert codes[0] & 0x0F == 0 and codes[1] & 0x0F == 11


def test_q4_k_bytes_decode_in_gguf_to_what_the_encoder_meant():
    x = _values()
    decoded = gguf.quants.dequantize(g.q4_k_encode(x).reshape(16, -1), T.Q4_K).reshape(-1)
    assert np.array_equal(decoded, g.q4_k_decode(x))
    blocks = x.reshape(-1, 32)
    step = (blocks.max(1) - np.minimum(blocks.min(1), 0)) / 15  # the sub-block's own step
    err = np.abs(decoded.reshape(-1, 32) - blocks).max(1)
    assert (err <= step * 0.5 + np.abs(x).max() / 63 / 2 + 1e-6).all()
    assert err.max() > 0  # four bits are not exact


def test_q4_k_scales_pack_as_gguf_unpacks_them():
    sc = np.array([[1, 2, 3, 63, 17, 33, 48, 62]], np.uint8)
    mins = np.array([[63, 0, 5, 31, 32, 16, 1, 47]], np.uint8)
    got_sc, got_min = gguf.quants.Q4_K.get_scale_min(g._pack_scales(sc, mins))
    assert np.array_equal(got_sc, sc) and np.array_equal(got_min, mins)


def test_bits_per_weight_from_the_layouts():
    assert g.bits_per_weight("Q8_0") == 8.5
    assert g.bits_per_weight("Q4_0") == g.bits_per_weight("Q4_K") == 4.5
    for fmt in g.FORMATS:
        block, size = gguf.GGML_QUANT_SIZES[getattr(T, fmt)]
        assert g.bits_per_weight(fmt) == size * 8 / block


@pytest.mark.parametrize("fmt", g.FORMATS)
def test_a_tinylm_goes_to_a_gguf_file_and_back_identical(fmt):
    torch.manual_seed(0)
    model = TinyLM(d_model=32, layers=1, heads=2, context=8)
    with torch.no_grad():
        model.blocks[0].mlp.fc2.weight.normal_()  # 128 inputs: Q8_0/Q4_0 blocks, not Q4_K's 256
    same, tensors, size = g.roundtrip(model, fmt)
    assert same and size > 0
    assert set(tensors) == set(model.state_dict())
    kinds = {name: t["type"] for name, t in tensors.items()}
    assert kinds["blocks.0.norm1.weight"] == "F32"
    assert kinds["blocks.0.mlp.fc2.weight"] == ("F32" if fmt == "Q4_K" else fmt)
    w = model.blocks[0].mlp.fc2.weight.detach().numpy()
    got = tensors["blocks.0.mlp.fc2.weight"]["values"]
    assert got.shape == w.shape
    if fmt != "Q4_K":
        assert 0 < np.abs(got - w).max() < np.abs(w).max() / (7 if fmt == "Q4_0" else 100)
    assert np.array_equal(
        tensors["blocks.0.norm1.bias"]["values"], model.blocks[0].norm1.bias.detach().numpy()
    )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="multiple of 32"):
        g.q8_0_encode(np.zeros(33, np.float32))
    with pytest.raises(ValueError, match="multiple of 256"):
        g.q4_k_encode(np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="finite"):
        g.q4_0_encode(np.full(32, np.nan, np.float32))
    with pytest.raises(TypeError, match="float numpy array"):
        g.q4_0_encode(np.zeros(32, np.int32))
    with pytest.raises(TypeError, match="float numpy array"):
        g.q4_0_encode([0.0] * 32)
    with pytest.raises(ValueError, match="fmt"):
        g.bits_per_weight("Q5_K")
    with pytest.raises(TypeError, match="TinyLM"):
        g.roundtrip(torch.nn.Linear(32, 32))
