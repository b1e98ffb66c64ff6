"""qnb.kv_cache: the cache at 16 bits (and float) gives the model without a cache, the
whole-window path equals the step-by-step cache, KIVI's groupings, bytes per token; bad inputs."""

from __future__ import annotations

import pytest
import torch

from qnb import kv_cache as kv
from qnb import lm, text
from qnb.lm import TinyLM


@pytest.fixture(scope="module")
def model() -> TinyLM:
    torch.manual_seed(0)
    m = TinyLM(d_model=32, layers=2, heads=2, context=24).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(5)  # sharper predictions than at initialization
    return m


def _steps(model, x, bits, group=8):
    cache = kv.KVCache(bits, group)
    with torch.no_grad():
        return torch.stack([kv.step(model, x[:, t], cache) for t in range(x.shape[1])], 1)


def test_the_cache_in_float_and_in_16_bits_gives_the_model_without_a_cache(model):
    x = torch.randint(0, 256, (3, 24))
    with torch.no_grad():
        want = model(x)
    assert (_steps(model, x, None) - want).abs().max() < 1e-4
    assert (_steps(model, x, 16) - want).abs().max() < 1e-2 * want.abs().max()  # fp16 rounding
    prompt = b"def f("
    assert kv.generate(model, prompt, 12, 16, seed=3) == lm.generate(model, prompt, 12, seed=3)
    assert kv.generate(model, prompt, 12, None, seed=3) == lm.generate(model, prompt, 12, seed=3)


@pytest.mark.parametrize("bits", [None, 16, 8, 4, 2])
def test_the_whole_window_path_is_the_step_by_step_cache(model, bits):
    x = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        par = kv.window_logits(model, x, bits, group=8)
    assert (par - _steps(model, x, bits)).abs().max() < 1e-3 * par.abs().max()


def test_fewer_bits_move_the_predictions_more(model):
    x = torch.randint(0, 256, (4, 24))
    with torch.no_grad():
        ref = model(x)
        errors = [float((kv.window_logits(model, x, b, 8) - ref).abs().mean()) for b in (8, 4, 2)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_keys_per_channel_values_per_token():
    cache = kv.KVCache(2, group=4)
    k = torch.zeros(1, 1, 1, 3)
    for t in range(4):
        keys, _ = cache.append(0, k + torch.tensor([0.0, 10.0 * t, 0.3 * t]), k + t)
        if t < 3:  # the group is not full: the keys are still float
            assert keys[0, 0, -1, 2] == pytest.approx(0.3 * t)
    # once four positions are in, each key channel has its own 4-level grid over them
    assert torch.allclose(keys[0, 0, :, 1], torch.tensor([0.0, 10.0, 20.0, 30.0]))
    assert torch.allclose(keys[0, 0, :, 2], torch.tensor([0.0, 0.3, 0.6, 0.9]), atol=1e-6)
    assert len(cache) == 4 and cache.done[0] == 4
    v = torch.tensor([[[[0.0, 1.0, 2.9]]]])  # one token's values: min 0, max 2.9, 4 levels
    got = kv.quantize_groups(v, 2, dim=-1)
    assert torch.allclose(got, torch.tensor([[[[0.0, 2.9 / 3, 2.9]]]]))


def test_bytes_per_token_counts_codes_scales_and_zero_points(model):
    d, layers, heads = 32, 2, 2
    assert kv.bytes_per_token(model, 16) == 2 * layers * d * 2
    want8 = 2 * layers * d + layers * (d * 4 / 8 + heads * 4)
    assert kv.bytes_per_token(model, 8, group=8) == want8
    assert kv.bytes_per_token(model, 2, 8) < kv.bytes_per_token(model, 4, 8) < want8


def test_window_losses_pair_up_with_lm_window_losses(model):
    a = lm.window_losses(model, "test", limit=2000)
    b = kv.window_losses(model, "test", None, limit=2000)
    assert a.shape == b.shape == ((2000 - 1) // 24,) and torch.allclose(a, b, atol=1e-5)
    assert len(text.eval_windows("test", 24, 256, limit=2000)) == 1


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="bits"):
        kv.KVCache(1)
    with pytest.raises(ValueError, match="group"):
        kv.KVCache(4, group=0)
    with pytest.raises(TypeError, match="TinyLM"):
        kv.window_losses(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="tokens"):
        kv.step(model, torch.zeros(2, 3, dtype=torch.int64), kv.KVCache())
    with pytest.raises(ValueError, match="length"):
        kv.generate(model, b"abc", 30)
    cache = kv.KVCache()
    for _ in range(24):
        kv.step(model, torch.zeros(1, dtype=torch.int64), cache)
    with pytest.raises(ValueError, match="cache is full"):
        kv.step(model, torch.zeros(1, dtype=torch.int64), cache)
