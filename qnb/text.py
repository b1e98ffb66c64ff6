"""The offline text corpus (`data/text/`: Python 3.11.7's standard library, see data/README.md)
as bytes for a byte-level language model: the splits, training windows, and bits per byte.

- `tokens(split)`: a split ("train", "validation", "test") as a 1-D uint8 tensor of its bytes,
  checked against the sha256 sum the corpus ships with.
- `windows(split, context, batch_size, seed=...)`: an endless iterator of `(x, y)` batches of
  random windows, y being x shifted by one byte, drawn with a seeded generator.
- `eval_windows(split, context)`: the split cut into consecutive, non-overlapping windows, for
  a loss over every byte of the split exactly once.

Vocabulary: the 256 byte values. Perplexity per byte is exp(mean cross-entropy in nats);
bits per byte is that mean divided by ln 2.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch

from qnb import checks, files

__all__ = ["SPLITS", "VOCAB", "SHA256", "corpus_dir", "tokens", "windows", "eval_windows"]

SPLITS = ("train", "validation", "test")
VOCAB = 256
SHA256 = {  # as shipped, see data/README.md
    "train": "f553f15b264e2dfd4ebad7580600e226a67178ec8e1ce01f832ae94c13922365",
    "validation": "e761fd8f3bb28678efec9838e3108a7f3735bd441ce642597e0f4996949e8060",
    "test": "b85d185ed8421c928fc3352e602dee3f1592dc276ecabf3cad15921fa552b185",
}


def corpus_dir() -> Path:
    """The folder holding the corpus: `data/text/` of the checkout."""
    return files.REPO / "data" / "text"


@functools.cache
def _read(split: str) -> bytes:
    path = corpus_dir() / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"the text corpus is missing: {str(path)!r} (it ships with the workbook in "
            "data/text/; rebuild it with python3.11 data/build_text_corpus.py)"
        )
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != SHA256[split]:
        raise ValueError(
            f"{str(path)!r} is not the shipped corpus (its sha256 differs from data/README.md's): "
            "restore it from git or rebuild it with python3.11 data/build_text_corpus.py"
        )
    return blob


def tokens(split: str) -> torch.Tensor:
    """The bytes of `split` ("train", "validation" or "test") as a 1-D uint8 tensor (a copy)."""
    checks.check_choice("split", split, SPLITS)
    return torch.frombuffer(bytearray(_read(split)), dtype=torch.uint8)


def _check_context(context: object, length: int) -> int:
    return checks.check_int("context", context, 1, length - 1)


def windows(
    split: str, context: int, batch_size: int, *, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless `(x, y)` batches of `batch_size` random windows of `context` bytes (int64), y the
    next byte of each position; the window starts come from a generator seeded with `seed`."""
    data = tokens(split).long()
    context = _check_context(context, len(data))
    batch_size = checks.check_int("batch_size", batch_size, 1)
    seed = checks.check_int("seed", seed, 0)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(context)
    while True:
        starts = torch.randint(len(data) - context, (batch_size, 1), generator=gen)
        index = starts + offsets
        yield data[index], data[index + 1]


def eval_windows(split: str, context: int, batch_size: int = 64, limit: int | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`split` (or its first `limit` bytes) cut into consecutive windows of `context` bytes, in
    `(x, y)` batches of up to `batch_size` windows: every predicted byte counted once (the last,
    incomplete window is left out)."""
    data = tokens(split).long()
    if limit is not None:
        data = data[: checks.check_int("limit", limit, 2, len(data))]
    context = _check_context(context, len(data))
    batch_size = checks.check_int("batch_size", batch_size, 1)
    count = (len(data) - 1) // context
    x = data[: count * context].reshape(count, context)
    y = data[1 : count * context + 1].reshape(count, context)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, count, batch_size)]
