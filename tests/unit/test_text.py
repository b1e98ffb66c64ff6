"""The offline text corpus (qnb.text): the shipped bytes, training windows, evaluation windows."""

from __future__ import annotations

import hashlib

import pytest
import torch

from qnb import text


@pytest.mark.parametrize("split", text.SPLITS)
def test_splits_are_the_shipped_bytes(split):
    data = text.tokens(split)
    assert data.dtype == torch.uint8 and data.dim() == 1
    assert hashlib.sha256(data.numpy().tobytes()).hexdigest() == text.SHA256[split]
    assert data[: len(b"# ==== ")].numpy().tobytes() == b"# ==== "  # a module's header line


def test_the_test_split_holds_modules_the_training_split_does_not():
    def modules(split):
        raw = text.tokens(split).numpy().tobytes().decode("utf-8")
        return {line for line in raw.splitlines() if line.startswith("# ==== ")}

    train, test = modules("train"), modules("test")
    assert len(train) == 99 and len(test) == 5 and not train & test


def test_windows_are_seeded_and_shifted_by_one():
    first = next(text.windows("validation", 32, 4, seed=1))
    again = next(text.windows("validation", 32, 4, seed=1))
    other = next(text.windows("validation", 32, 4, seed=2))
    x, y = first
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x, again[0]) and not torch.equal(x, other[0])


def test_eval_windows_count_every_byte_once():
    batches = text.eval_windows("test", 100, batch_size=7, limit=1_001)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    data = text.tokens("test")[:1_001].long()
    assert x.shape == (10, 100) and torch.equal(x.flatten(), data[:1_000])
    assert torch.equal(y.flatten(), data[1:1_001])
    assert [len(b[0]) for b in batches] == [7, 3]


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="split must be one of 'train', 'validation', 'test'"):
        text.tokens("dev")
    with pytest.raises(ValueError, match="context"):
        next(text.windows("test", 10**9, 4))
    with pytest.raises(ValueError, match="batch_size"):
        next(text.windows("test", 8, 0))
    with pytest.raises(ValueError, match="limit"):
        text.eval_windows("test", 8, limit=1)
