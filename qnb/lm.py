"""A small byte-level language model for notebook 12: the model, its training, perplexity and
sampling. Trained and cached by `qnb.models.pretrained("tinylm", seed=...)`.

- `TinyLM`: a decoder-only transformer over the 256 byte values, GPT-2 style pre-norm blocks
  (LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP -> residual); every matrix
  that weight quantization acts on is an `nn.Linear` (`attn.qkv`, `attn.proj`, `mlp.fc1`,
  `mlp.fc2`, `head`). `smooth_pairs()` names each LayerNorm and the Linear layers that read its
  output, the places where SmoothQuant can move scale from activations into weights.
- `train(model, steps=..., ...)`: AdamW on random windows of the train split (`qnb.text`).
- `bits_per_byte(model, split)` / `perplexity(model, split)`: the mean loss over every byte of a
  split once (perplexity per byte = exp(loss in nats), bits per byte = loss / ln 2).
- `generate(model, prompt, length, seed=...)`: sampled continuation of a prompt (bytes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from qnb import checks, text
from qnb.progress import bar_as_asked

__all__ = [
    "TinyLM", "train", "mean_loss", "window_losses", "bits_per_byte", "perplexity", "generate",
]
EVAL_BATCH = 256  # windows per forward pass when scoring a split


class Attention(nn.Module):
    """Causal multi-head self-attention: one Linear for queries, keys and values, one after."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """Linear (d -> 4d), GELU, Linear (4d -> d)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A byte-level decoder-only transformer: token and position embeddings, `layers` pre-norm
    blocks of width `d_model` with `heads` heads, a final LayerNorm and a Linear head to the 256
    byte values. Input: int64 bytes (batch, time <= context); output: logits (batch, time, 256).
    The defaults give about 0.43 million parameters."""

    def __init__(self, d_model: int = 128, layers: int = 2, heads: int = 4, context: int = 64
                 ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model must be a multiple of heads={heads}, got {d_model}")
        self.context = context
        self.embed = nn.Embedding(text.VOCAB, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, text.VOCAB, bias=False)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] > self.context or x.dtype != torch.int64:
            raise ValueError(
                f"TinyLM takes int64 bytes of shape (batch, time <= {self.context}), "
                f"got {x.dtype} of shape {tuple(x.shape)}"
            )
        h = self.embed(x) + self.pos(torch.arange(x.shape[1]))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def smooth_pairs(self) -> list[tuple[str, list[str]]]:
        """Each LayerNorm and the Linear layers that read its output (for `qnb.smoothquant`)."""
        pairs = []
        for i in range(len(self.blocks)):
            pairs.append((f"blocks.{i}.norm1", [f"blocks.{i}.attn.qkv"]))
            pairs.append((f"blocks.{i}.norm2", [f"blocks.{i}.mlp.fc1"]))
        return pairs + [("norm", ["head"])]


def _init(module: nn.Module) -> None:
    """GPT-2's initialization: normal(0, 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _check_lm(model: object) -> TinyLM:
    if not isinstance(model, TinyLM):
        raise TypeError(f"model must be a qnb.lm.TinyLM, got {type(model).__name__}")
    return model


def train(
    model: TinyLM,
    *,
    steps: int = 1000,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool | None = None,
) -> TinyLM:
    """Train `model` in place on random windows of the train split and return it in eval mode.

    AdamW (weight decay 0.01), a linear warm-up over the first 5% of `steps`, then a cosine
    decay; windows of `model.context` bytes drawn with a generator seeded with `seed` (the
    global RNG is left untouched). Runs on `qnb.models.TRAIN_THREADS` threads when called by
    `pretrained`. `model.history`: the mean training loss (nats per byte) of each tenth of the
    steps.
    """
    model = _check_lm(model)
    steps = checks.check_int("steps", steps, 1)
    lr = checks.check_positive("lr", lr)
    batches = text.windows("train", model.context, batch_size, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, warmup, steps))
    history, losses = [], []
    model.train()
    for step in bar_as_asked(range(steps), progress, desc="training TinyLM"):
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": sum(losses) / len(losses)})
            losses = []
    model.eval()
    model.history = history
    return model


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def mean_loss(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The mean cross-entropy (nats per predicted byte) of `model` over `(x, y)` batches."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x, y in batches:
                logits = model(x)
                total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
                count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("batches must hold at least one (x, y) pair, got none")
    return total / count


def _split_windows(model: nn.Module, split: str, limit: int | None) -> list:
    context = getattr(model, "context", None)
    if not isinstance(context, int):
        raise TypeError(f"model must have an int `context` (a TinyLM), got {type(model).__name__}")
    return text.eval_windows(split, context, EVAL_BATCH, limit=limit)


def _split_loss(model: nn.Module, split: str, limit: int | None) -> float:
    return mean_loss(model, _split_windows(model, split, limit))


def window_losses(model: nn.Module, split: str = "test", limit: int | None = None
                  ) -> torch.Tensor:
    """The mean loss (nats per byte) of each evaluation window of `split` (or its first `limit`
    bytes), in order: all windows have `model.context` bytes, so their mean is the split's mean
    loss, and two models' windows pair up for a paired comparison (`qnb.stats.Family.loss`, one
    array per training seed for each model)."""
    losses = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x, y in _split_windows(model, split, limit):
                loss = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none")
                losses.append(loss.mean(dim=1))
    finally:
        model.train(was_training)
    return torch.cat(losses).double()


def bits_per_byte(model: nn.Module, split: str = "test", limit: int | None = None) -> float:
    """The mean loss in bits per byte over every byte of `split` (or its first `limit`) once."""
    return _split_loss(model, split, limit) / math.log(2)


def perplexity(model: nn.Module, split: str = "test", limit: int | None = None) -> float:
    """Perplexity per byte, exp(mean loss in nats), over every byte of `split` (or its first
    `limit` bytes) once: 256 for a uniform guess, 1 for a perfect model."""
    return math.exp(_split_loss(model, split, limit))


def generate(
    model: nn.Module, prompt: bytes, length: int = 200, *, temperature: float = 0.8, seed: int = 0
) -> bytes:
    """`prompt` followed by `length` bytes sampled from `model` (softmax at `temperature`), with a
    generator seeded with `seed`. The model sees the last `model.context` bytes."""
    if not isinstance(prompt, bytes) or not prompt:
        raise TypeError(f"prompt must be non-empty bytes, got {prompt!r}")
    length = checks.check_int("length", length, 1)
    temperature = checks.check_positive("temperature", temperature)
    gen = torch.Generator().manual_seed(checks.check_int("seed", seed, 0))
    out = list(prompt)
    with torch.inference_mode():
        for _ in range(length):
            x = torch.tensor([out[-model.context :]])
            probs = torch.softmax(model(x)[0, -1] / temperature, dim=-1)
            out.append(int(torch.multinomial(probs, 1, generator=gen)))
    return bytes(out)
