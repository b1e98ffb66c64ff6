"""qnb.lm: the byte-level TinyLM, its training, perplexity, sampling, and its pretrained cache."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import qnb.models as qm
from qnb import lm, text


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("QNB_CACHE", str(tmp_path / "qnb-cache"))


def small(seed=0, **kw):
    torch.manual_seed(seed)
    return lm.TinyLM(d_model=32, layers=1, heads=2, context=16, **kw)


def test_default_model_size_and_shapes():
    model = lm.TinyLM().eval()
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 3_000_000
    x = torch.randint(0, 256, (3, model.context))
    assert model(x).shape == (3, model.context, 256)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1",
                       "blocks.0.mlp.fc2", "blocks.1.attn.qkv", "blocks.1.attn.proj",
                       "blocks.1.mlp.fc1", "blocks.1.mlp.fc2", "head"]


def test_attention_is_causal():
    model = small().eval()
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 256
    a, b = model(x), model(changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_smooth_pairs_name_a_layernorm_and_the_linears_that_read_it():
    model = lm.TinyLM()
    modules = dict(model.named_modules())
    pairs = model.smooth_pairs()
    assert len(pairs) == 2 * len(model.blocks) + 1
    for norm, linears in pairs:
        assert isinstance(modules[norm], nn.LayerNorm)
        for name in linears:
            assert isinstance(modules[name], nn.Linear)
            assert modules[name].in_features == modules[norm].normalized_shape[0]


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(2, 17, dtype=torch.int64), r"<= 16\), got torch.int64 of shape \(2, 17\)"),
        (torch.zeros(2, 8), "got torch.float32"),
        (torch.zeros(8, dtype=torch.int64), r"shape \(8,\)"),
    ],
)
def test_bad_input_names_what_the_model_takes(x, match):
    with pytest.raises(ValueError, match=match):
        small()(x)


def test_untrained_model_is_near_a_uniform_guess():
    model = small()
    ppl = lm.perplexity(model, "validation", limit=4096)
    assert 200 < ppl < 320  # 256 = uniform over the byte values
    assert lm.bits_per_byte(model, "validation", limit=4096) == pytest.approx(math.log2(ppl))


def test_training_is_seeded_lowers_the_loss_and_returns_eval_mode():
    a = lm.train(small(), steps=30, batch_size=8, seed=1, progress=False)
    b = lm.train(small(), steps=30, batch_size=8, seed=1, progress=False)
    c = lm.train(small(), steps=30, batch_size=8, seed=2, progress=False)
    assert not a.training and len(a.history) == 10 and a.history[-1]["step"] == 30
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.head.weight, c.head.weight)
    assert a.history[-1]["loss"] < a.history[0]["loss"] < math.log(256) + 0.1
    assert lm.perplexity(a, "validation", limit=4096) < lm.perplexity(small(), "validation",
                                                                       limit=4096)


def test_mean_loss_counts_every_target():
    model = small().eval()
    batches = text.eval_windows("validation", 16, batch_size=4, limit=200)
    loss = lm.mean_loss(model, batches)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        lm.mean_loss(model, [])


def test_generate_is_seeded_and_continues_the_prompt():
    model = small().eval()
    a = lm.generate(model, b"import ", 40, seed=3)
    assert a.startswith(b"import ") and len(a) == 47
    assert a == lm.generate(model, b"import ", 40, seed=3)
    assert a != lm.generate(model, b"import ", 40, seed=4)
    with pytest.raises(TypeError, match="prompt must be non-empty bytes, got 'import'"):
        lm.generate(model, "import", 4)
    with pytest.raises(ValueError, match="length must be an int >= 1, got 0"):
        lm.generate(model, b"x", 0)


def test_train_bad_input():
    with pytest.raises(TypeError, match="model must be a qnb.lm.TinyLM, got Linear"):
        lm.train(nn.Linear(2, 2), steps=1)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        lm.train(small(), steps=0)
    with pytest.raises(ValueError, match="d_model must be a multiple of heads=3, got 32"):
        lm.TinyLM(d_model=32, heads=3)


def test_pretrained_tinylm_trains_for_steps_and_is_cached(monkeypatch):
    calls = []
    real = lm.train
    monkeypatch.setattr(lm, "train", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    path = qm.cache_path("tinylm", steps=3)
    assert path != qm.cache_path("tinylm", steps=4) != qm.cache_path("tinylm", steps=3, seed=1)
    torch.set_num_threads(2)
    a = qm.pretrained("tinylm", steps=3, progress=False)
    assert torch.get_num_threads() == 2  # trained on TRAIN_THREADS, the caller's setting back
    b = qm.pretrained("tinylm", steps=3, progress=False)
    assert len(calls) == 1 and calls[0]["steps"] == 3 and path.is_file()
    assert isinstance(b, lm.TinyLM) and not b.training and b.history == a.history
    assert torch.equal(a.head.weight, b.head.weight)


def test_pretrained_refuses_the_other_length_unit():
    with pytest.raises(ValueError, match="epochs does not apply to 'tinylm'.*steps.*epochs=2"):
        qm.pretrained("tinylm", epochs=2)
    with pytest.raises(ValueError, match="steps does not apply to 'plain_cnn'.*epochs.*steps=5"):
        qm.pretrained("plain_cnn", steps=5)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        qm.cache_path("tinylm", steps=0)


def test_window_losses_pair_up_and_average_to_the_split_loss():
    model = small().eval()
    losses = lm.window_losses(model, "validation", limit=2000)
    assert losses.shape == ((2000 - 1) // 16,) and losses.dtype == torch.float64
    assert float(losses.mean()) == pytest.approx(
        math.log(lm.perplexity(model, "validation", limit=2000)), rel=1e-6)
