"""A key/value cache for `qnb.lm.TinyLM`, quantized as KIVI does it (Liu et al., ICML 2024,
arXiv:2402.02750): keys per channel, values per token.

Generating token by token, each attention layer keeps the keys and values of every earlier
position instead of recomputing them. Their memory grows with the context and, in a real LLM,
soon exceeds the weights'. KIVI's observation: keys have a few large *channels* (the same
channels in every token), values do not; so keys are quantized per channel over a group of
`group` tokens (one scale and zero point per channel and group, once the group is full; the
newest, incomplete group stays in float, KIVI's residual), values per token (one scale and zero
point per token and head). Both on the asymmetric grid (codes 0..2^bits-1, min/max of the group).
Simulated: the cache holds the dequantized values; `bytes_per_token` counts what an integer
cache would store (fp16 scales and zero points). `bits=16`: the cache in float16, no codes.

- `KVCache(bits, group)`: the cache of one sequence batch, one entry per layer.
- `step(model, tokens, cache)`: the logits of the next position, reading and extending the cache.
- `window_logits(model, x, bits, ...)` / `window_losses(model, split, bits, ...)`: what the
  cached model predicts at every position of a window, all positions at once (each query reads
  the keys and values as the cache held them at its position; tested equal to `step`), and each
  test window's mean loss (the perplexity of a cached model, paired with `qnb.lm`'s windows).
- `generate(model, prompt, length, bits, ...)`: sampled text, through the cache.

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qnb import checks, text

__all__ = [
    "quantize_groups",
    "KVCache",
    "step",
    "window_logits",
    "window_losses",
    "generate",
    "bytes_per_token",
]


def _check_bits(bits: object) -> int:
    if bits == 16 and not isinstance(bits, bool):
        return 16
    return checks.check_bits("bits", bits, 2, 8)


def quantize_groups(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """`x` fake-quantized on the asymmetric `bits` grid with one scale and zero point per slice
    along `dim` (min and max over `dim`): codes round((x - min) / scale) in 0..2^bits-1,
    scale (max - min) / (2^bits - 1); a constant slice comes back unchanged."""
    checks.check_float_tensor("x", x)
    bits = checks.check_bits("bits", bits, 2, 8)
    lo, hi = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)
    top = 2**bits - 1
    scale = (hi - lo) / top
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round((x - lo) / safe).clamp_(0, top) * safe + lo


class KVCache:
    """Keys and values of each layer, (batch, heads, positions, head_dim): keys quantized per
    channel in groups of `group` positions once a group is full, values per token on arrival;
    `bits` None: float32 (exact), 16: float16."""

    def __init__(self, bits: int | None = None, group: int = 16) -> None:
        self.bits = None if bits is None else _check_bits(bits)
        self.group = checks.check_int("group", group, 1)
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.done: dict[int, int] = {}  # positions of keys already quantized, per layer

    def _store(self, x: torch.Tensor) -> torch.Tensor:
        return x.half().float() if self.bits == 16 else x

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add one position's k and v (batch, heads, 1, head_dim) to `layer`; return all keys and
        values so far as the attention reads them."""
        if self.bits is not None and self.bits <= 8:
            v = quantize_groups(v, self.bits, dim=-1)  # per token (and head)
        else:
            v = self._store(v)
        k = k if self.bits is not None and self.bits <= 8 else self._store(k)
        keys = torch.cat([self.keys[layer], k], dim=2) if layer in self.keys else k
        values = torch.cat([self.values[layer], v], dim=2) if layer in self.values else v
        done = self.done.get(layer, 0)
        if self.bits is not None and self.bits <= 8 and keys.shape[2] - done == self.group:
            full = quantize_groups(keys[:, :, done:], self.bits, dim=2)  # per channel
            keys = torch.cat([keys[:, :, :done], full], dim=2)
            self.done[layer] = done + self.group
        self.keys[layer], self.values[layer] = keys, values
        return keys, values

    def __len__(self) -> int:
        return 0 if not self.keys else self.keys[0].shape[2]


def _check_lm(model: object) -> nn.Module:
    from qnb.lm import TinyLM

    if not isinstance(model, TinyLM):
        raise TypeError(f"model must be a qnb.lm.TinyLM, got {type(model).__name__}")
    return model


def step(model: nn.Module, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """The logits (batch, 256) after `tokens` (batch,), the next byte of each sequence, at
    position len(cache), reading the earlier positions' keys and values from `cache` and adding
    this one's."""
    model = _check_lm(model)
    position = len(cache)
    if position >= model.context:
        raise ValueError(
            f"the cache is full: {position} positions, the model's context is {model.context}"
        )
    if tokens.dim() != 1 or tokens.dtype != torch.int64:
        raise ValueError(
            f"tokens must be int64 of shape (batch,), got {tokens.dtype} {tuple(tokens.shape)}"
        )
    h = (model.embed(tokens) + model.pos.weight[position])[:, None]  # (batch, 1, d)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        b, _, d = h.shape
        q, k, v = (
            attn.qkv(block.norm1(h))
            .view(b, 1, 3, attn.heads, d // attn.heads)
            .permute(2, 0, 3, 1, 4)
        )
        keys, values = cache.append(i, k, v)
        y = F.scaled_dot_product_attention(q, keys, values)  # every cached position is earlier
        h = h + attn.proj(y.transpose(1, 2).reshape(b, 1, d))
        h = h + block.mlp(block.norm2(h))
    return model.head(model.norm(h))[:, 0]


def _attention(attn: nn.Module, x: torch.Tensor, bits: int | None, group: int) -> torch.Tensor:
    """Causal self-attention of a whole window at once, each query reading the keys and values
    exactly as a `KVCache(bits, group)` would hold them at its position: values quantized per
    token, keys of a full group of `group` positions quantized per channel, the rest float."""
    b, t, d = x.shape
    q, k, v = attn.qkv(x).view(b, t, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)
    if bits is None or bits == 16:
        if bits == 16:
            k, v = k.half().float(), v.half().float()
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    v = quantize_groups(v, bits, dim=-1)
    full = t // group * group
    k_full = k[:, :, :full].reshape(b, attn.heads, full // group, group, -1)
    k_q = torch.cat(
        [quantize_groups(k_full, bits, dim=3).reshape(b, attn.heads, full, -1), k[:, :, full:]],
        dim=2,
    )
    scale = 1 / math.sqrt(k.shape[-1])
    pos = torch.arange(t)
    ready = (pos[None, :] // group + 1) * group - 1 <= pos[:, None]  # key j quantized at query t
    scores = torch.where(ready, q @ k_q.transpose(-1, -2), q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def window_logits(
    model: nn.Module, x: torch.Tensor, bits: int | None = None, group: int = 16
) -> torch.Tensor:
    """TinyLM's logits (batch, time, 256) for windows `x`, every position computed as `step`
    computes it through a `KVCache(bits, group)`, all positions at once (equal up to float
    rounding; tested against `step`)."""
    model = _check_lm(model)
    KVCache(bits, group)  # checks bits and group
    bits = None if bits is None else _check_bits(bits)
    h = model.embed(x) + model.pos(torch.arange(x.shape[1]))
    for block in model.blocks:
        a = _attention(block.attn, block.norm1(h), bits, group)
        h = h + block.attn.proj(a.transpose(1, 2).reshape(h.shape))
        h = h + block.mlp(block.norm2(h))
    return model.head(model.norm(h))


def window_losses(
    model: nn.Module,
    split: str = "test",
    bits: int | None = None,
    group: int = 16,
    limit: int | None = None,
) -> torch.Tensor:
    """The mean loss (nats per byte) of each evaluation window of `split` (`qnb.lm`'s windows,
    the same order) with the keys and values a `KVCache(bits, group)` holds (`window_logits`)."""
    model = _check_lm(model)
    KVCache(bits, group)
    out = []
    with torch.inference_mode():
        for x, y in text.eval_windows(split, model.context, 256, limit=limit):
            logits = window_logits(model, x, bits, group)
            out.append(F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1))
    return torch.cat(out).double()


def generate(
    model: nn.Module,
    prompt: bytes,
    length: int = 100,
    bits: int | None = None,
    *,
    group: int = 16,
    temperature: float = 0.8,
    seed: int = 0,
) -> bytes:
    """`prompt` and `length` bytes sampled through a `KVCache(bits, group)` (softmax at
    `temperature`, a generator seeded with `seed`), as `qnb.lm.generate` samples them; the
    prompt and continuation together fit in the model's context."""
    model = _check_lm(model)
    if not isinstance(prompt, bytes) or not prompt:
        raise TypeError(f"prompt must be non-empty bytes, got {prompt!r}")
    length = checks.check_int("length", length, 1, model.context - len(prompt))
    temperature = checks.check_positive("temperature", temperature)
    gen = torch.Generator().manual_seed(checks.check_int("seed", seed, 0))
    cache, out = KVCache(bits, group), list(prompt)
    with torch.inference_mode():
        for byte in prompt[:-1]:
            step(model, torch.tensor([byte]), cache)
        for _ in range(length):
            logits = step(model, torch.tensor([out[-1]]), cache)[0]
            probs = torch.softmax(logits / temperature, dim=-1)
            out.append(int(torch.multinomial(probs, 1, generator=gen)))
    return bytes(out)


def bytes_per_token(model: nn.Module, bits: int, group: int = 16) -> float:
    """Bytes the cache stores per position: keys and values of every layer at `bits` each, an
    fp16 scale and zero point per channel and group of `group` keys and per token and head of
    values; `bits` 16: float16, nothing else."""
    model = _check_lm(model)
    bits = _check_bits(bits)
    group = checks.check_int("group", group, 1)
    d, layers, heads = model.embed.embedding_dim, len(model.blocks), model.blocks[0].attn.heads
    codes = 2 * layers * d * bits / 8
    if bits == 16:
        return codes
    return codes + layers * (d * 4 / group + heads * 4)
