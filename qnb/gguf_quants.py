"""GGUF's block formats, written here: Q8_0 and Q4_0 (blocks of 32 values, one fp16 scale each)
bit-exact with the `gguf` package's `gguf.quants.quantize`, and Q4_K (super-blocks of 256 values:
8 sub-blocks of 32 with 6-bit scales and mins under two fp16 factors), whose bytes `gguf`'s
decoder reads back (`gguf` decodes k-quants but does not encode them); and a TinyLM written to a
`.gguf` file with `gguf.GGUFWriter` and read back with `gguf.GGUFReader`.

Block layouts (ggml's `block_q8_0`, `block_q4_0`, `block_q4_K`, as `gguf.quants` decodes them):
- **Q8_0**, 34 bytes per 32 values: d = max|x| / 127 (fp16), then 32 int8 codes
  round-half-away-from-zero(x / d). 8.5 bits per weight.
- **Q4_0**, 18 bytes per 32 values: the value of largest magnitude m (its sign kept),
  d = m / -8 (fp16), codes q = min(15, trunc(x / d + 8.5)) in 0..15, value d * (q - 8); byte i
  holds code i in its low nibble and code i + 16 in its high one. 4.5 bits per weight.
- **Q4_K**, 144 bytes per 256 values: d and dmin (fp16), 12 bytes of 6-bit sub-block scales
  sc_j and mins m_j (8 each, packed as `gguf.quants.Q4_K.get_scale_min` unpacks them), 128 bytes
  of 4-bit codes (sub-blocks 2k and 2k + 1 share 32 bytes: low and high nibbles); value
  d * sc_j * q - dmin * m_j. 4.5 bits per weight. The encoder here takes each sub-block's own
  min/max (llama.cpp's `quantize_row_q4_K_ref` also searches the sub-block scale, so its bytes
  differ; any encoder's bytes are valid Q4_K).

Taught in notebook 14 (llm_outliers_and_gguf).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qnb import checks

__all__ = [
    "BLOCK",
    "SUPER_BLOCK",
    "FORMATS",
    "ENCODERS",
    "q8_0_encode",
    "q4_0_encode",
    "q4_k_encode",
    "q4_k_decode",
    "bits_per_weight",
    "write_gguf",
    "read_gguf",
    "roundtrip",
]

BLOCK = 32  # values per Q8_0 / Q4_0 block, per Q4_K sub-block
SUPER_BLOCK = 256  # values per Q4_K super-block
BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_K": 144}  # bytes per block (per super-block for Q4_K)
FORMATS = tuple(BYTES)


def _blocks(values: object, size: int, name: str = "values") -> np.ndarray:
    """`values` (finite floats, any shape, a multiple of `size` long) as float32 (blocks, size)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a float numpy array or torch tensor, got "
            f"{type(values).__name__}{getattr(values, 'dtype', '')}"
        )
    if values.size == 0 or values.size % size:
        raise ValueError(
            f"{name} must hold a positive multiple of {size} values (one block), "
            f"got {values.size} (shape {values.shape})"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return values.astype(np.float32).reshape(-1, size)


def _round_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero (C's roundf), exactly in float32."""
    a = np.abs(v)
    f = np.floor(a)
    return np.sign(v) * (f + (a - f >= np.float32(0.5)))


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def q8_0_encode(values: object) -> np.ndarray:
    """The Q8_0 bytes (uint8, 34 per block of 32 consecutive values) of `values`."""
    blocks = _blocks(values, BLOCK)
    d = (np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    codes = _round_away(blocks * _inverse(d)).astype(np.int8)
    return np.concatenate(
        [d.astype(np.float16).view(np.uint8), codes.view(np.uint8)], axis=1
    ).reshape(-1)


def q4_0_encode(values: object) -> np.ndarray:
    """The Q4_0 bytes (uint8, 18 per block of 32 consecutive values) of `values`."""
    blocks = _blocks(values, BLOCK)
    index = np.abs(blocks).argmax(axis=1)[:, None]
    d = (np.take_along_axis(blocks, index, axis=1) / np.float32(-8)).astype(np.float32)
    codes = np.minimum(np.trunc(blocks * _inverse(d) + np.float32(8.5)), 15).astype(np.uint8)
    packed = codes[:, :16] | (codes[:, 16:] << np.uint8(4))
    return np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1).reshape(-1)


def _pack_scales(sc: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """12 bytes per super-block from 8 six-bit scales and mins (`Q4_K.get_scale_min` inverted)."""
    low = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    mid = mins[:, :4] | ((mins[:, 4:] >> 4) << 6)
    high = (sc[:, 4:] & 0x0F) | ((mins[:, 4:] & 0x0F) << 4)
    return np.concatenate([low, mid, high], axis=1).astype(np.uint8)


def _q4_k_parts(values: object) -> tuple[np.ndarray, ...]:
    """(d, dmin, sc, mins, codes) of the Q4_K encoding, before packing."""
    blocks = _blocks(values, SUPER_BLOCK).reshape(-1, 8, BLOCK)
    lo = np.minimum(blocks.min(axis=2), 0)  # Q4_K subtracts a min >= 0: lo is at most 0
    step = (blocks.max(axis=2) - lo) / np.float32(15)
    d = (step.max(axis=1, keepdims=True) / np.float32(63)).astype(np.float16)
    dmin = ((-lo).max(axis=1, keepdims=True) / np.float32(63)).astype(np.float16)
    sc = np.clip(np.rint(step * _inverse(d.astype(np.float32))), 0, 63).astype(np.uint8)
    mins = np.clip(np.rint(-lo * _inverse(dmin.astype(np.float32))), 0, 63).astype(np.uint8)
    scale = d.astype(np.float32) * sc  # (super-blocks, 8): the effective step of each sub-block
    offset = dmin.astype(np.float32) * mins
    codes = np.rint((blocks + offset[..., None]) * _inverse(scale)[..., None])
    return d, dmin, sc, mins, np.clip(codes, 0, 15).astype(np.uint8)


def q4_k_encode(values: object) -> np.ndarray:
    """The Q4_K bytes (uint8, 144 per super-block of 256 consecutive values) of `values`: each
    sub-block of 32 gets the step (max - min(min, 0)) / 15 and the offset -min(min, 0), both
    rounded to 6 bits under the super-block's fp16 d and dmin (their largest / 63)."""
    d, dmin, sc, mins, codes = _q4_k_parts(values)
    pairs = codes.reshape(-1, 4, 2, BLOCK)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << np.uint8(4))).reshape(-1, 128)
    return np.concatenate(
        [d.view(np.uint8), dmin.view(np.uint8), _pack_scales(sc, mins), qs], axis=1
    ).reshape(-1)


def q4_k_decode(values: object) -> np.ndarray:
    """The values (float32, flat) that `q4_k_encode(values)` stands for, computed from its parts
    here (d * sc * q - dmin * m): what `gguf`'s own decoder must return from the bytes."""
    d, dmin, sc, mins, codes = _q4_k_parts(values)
    scale = (d.astype(np.float32) * sc.astype(np.float32))[..., None]
    offset = (dmin.astype(np.float32) * mins.astype(np.float32))[..., None]
    return (scale * codes.astype(np.float32) - offset).reshape(-1)


def bits_per_weight(fmt: str) -> float:
    """Bits per stored value of a GGUF block format: bytes per block * 8 / values per block."""
    checks.check_choice("fmt", fmt, FORMATS)
    return BYTES[fmt] * 8 / (SUPER_BLOCK if fmt == "Q4_K" else BLOCK)


ENCODERS = {"Q8_0": q8_0_encode, "Q4_0": q4_0_encode, "Q4_K": q4_k_encode}


def _quantizable(name: str, tensor: torch.Tensor, fmt: str) -> bool:
    size = SUPER_BLOCK if fmt == "Q4_K" else BLOCK
    return name.endswith(".weight") and tensor.dim() == 2 and tensor.shape[1] % size == 0


def write_gguf(model: nn.Module, path: str | Path, fmt: str = "Q8_0") -> dict[str, str]:
    """Write `model`'s state (a qnb.lm.TinyLM) to the GGUF file `path` with `gguf.GGUFWriter`:
    every 2-D weight whose rows are a multiple of the block in format `fmt` (Q8_0, Q4_0, Q4_K),
    encoded here, the rest (embeddings' rows too short for Q4_K, norms, biases) as F32; the model's
    shape as metadata. Returns {tensor name: the type written}."""
    import gguf

    from qnb.lm import TinyLM

    if not isinstance(model, TinyLM):
        raise TypeError(f"model must be a qnb.lm.TinyLM, got {type(model).__name__}")
    checks.check_choice("fmt", fmt, FORMATS)
    path = Path(checks.check_path(path))
    writer = gguf.GGUFWriter(path, "tinylm")
    writer.add_name("qnb TinyLM")
    writer.add_context_length(model.context)
    writer.add_embedding_length(model.embed.embedding_dim)
    writer.add_block_count(len(model.blocks))
    writer.add_head_count(model.blocks[0].attn.heads)
    written = {}
    qtype = getattr(gguf.GGMLQuantizationType, fmt)
    for name, tensor in model.state_dict().items():
        t = tensor.detach().float().cpu()
        if _quantizable(name, t, fmt):
            data = ENCODERS[fmt](t).reshape(t.shape[0], -1)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
            written[name] = fmt
        else:
            writer.add_tensor(name, t.numpy().astype(np.float32))
            written[name] = "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def read_gguf(path: str | Path) -> dict[str, dict]:
    """{tensor name: {"type", "shape" (as torch orders it), "bytes" (uint8), "values" (float32,
    decoded by `gguf.quants.dequantize`), "n_elements"}} of a GGUF file, read with
    `gguf.GGUFReader`."""
    import gguf

    reader = gguf.GGUFReader(checks.check_file(path))
    out = {}
    for t in reader.tensors:
        raw = np.asarray(t.data)
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists the fastest axis first
        values = gguf.quants.dequantize(raw, t.tensor_type).reshape(shape)
        out[t.name] = {
            "type": t.tensor_type.name,
            "shape": shape,
            "n_elements": t.n_elements,
            "bytes": raw.view(np.uint8).reshape(-1).copy(),
            "values": np.asarray(values, np.float32),
        }
    return out


def roundtrip(model: nn.Module, fmt: str = "Q8_0") -> tuple[bool, dict[str, dict], int]:
    """Write `model` to a `.gguf` in a temporary folder in format `fmt` and read it back:
    (identical, the tensors read, the file's size in bytes). Identical: every tensor's bytes are
    those encoded here (F32 tensors: the model's float32 values) and has the model's shape."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tinylm.gguf"
        written = write_gguf(model, path, fmt)
        tensors = read_gguf(path)
        size = path.stat().st_size
    state = model.state_dict()
    same = set(tensors) == set(written)
    for name, kind in written.items():
        if not same:
            break
        t = state[name].detach().float().cpu()
        want = (
            ENCODERS[fmt](t)
            if kind != "F32"
            else t.numpy().astype(np.float32).view(np.uint8).reshape(-1)
        )
        got = tensors[name]
        same = (
            got["type"] == kind
            and got["shape"] == tuple(t.shape)
            and np.array_equal(got["bytes"], want)
        )
    return same, tensors, size
