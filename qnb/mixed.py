"""Mixed precision and the one-call API: `quantize(model, bitwidths=..., engine=..., calib=...)`.

- `quantize`: bit widths per quantizable layer (an int, a list in forward order, or a dict by
  layer name). All layers at 8 bits (with 8-bit activations and `calib`) gives a real int8 model
  via `qnb.ptq.quantize_static`; anything else gives a simulated (fake-quantized) float model.
- `sensitivity`: each layer alone at low bits, the rest float: accuracy drop or output SQNR.
- `allocate`: bits per layer under a model-size budget (exact knapsack over the per-layer
  sensitivities, assumed additive); `model_size_bytes`: the size model it uses;
  `predicted_sqnr_db`: the output SQNR the summed per-layer costs predict for an allocation
  (a width that was never measured is an error, not a free layer).
- `pareto`: which (size, accuracy) points are not dominated.

"Quantizable layers" are the Conv2d and Linear layers, named as in the float model (`conv1`,
`block1.dw`; not the fused `conv1.0`), in the order forward calls them (found with forward
hooks on one calibration batch; definition order when no batch is available). Other layers
(LSTM, embeddings, ...) stay float.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.quantization import QuantStub, prepare

from qnb import affine, checks, eager, models, ptq, simulate
from qnb.calibration import batch_inputs, calibrate, forward_order

__all__ = [
    "BITS",
    "LayerRow",
    "QuantizeReport",
    "quantizable_layers",
    "resolve_bitwidths",
    "model_size_bytes",
    "quantize",
    "sensitivity",
    "allocate",
    "predicted_sqnr_db",
    "pareto",
]

BITS = (2, 8)  # the bit widths quantize() accepts per layer: 2..8
SCALE_BYTES = 4  # one float32 scale per output channel (per tensor: one per layer)
BIAS_BYTES = 4  # biases stay float32 (int32 in an int8 model: the same size)


# --- layers and their names ----------------------------------------------------------------


def _prepared_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy, fused (see `simulate.fused_copy`)."""
    return simulate.fused_copy(checks.check_model(model))


def _float_name(name: str, modules: Mapping[str, nn.Module]) -> str:
    """`conv1` for the `conv1.0` a fusion made of it; other names unchanged."""
    parent, _, last = name.rpartition(".")
    if last == "0" and parent and isinstance(modules.get(parent), _FusedModule):
        return parent
    return name


def layers_by_name(fused: nn.Module) -> dict[str, nn.Module]:
    """{float name: Conv2d/Linear module} of a (fused) model, in definition order."""
    modules = dict(fused.named_modules())
    return {_float_name(n, modules): m for n, m in simulate.weight_layers(fused)}


def _reusable(calib: Iterable | None) -> Iterable | None:
    """`calib` (None allowed) readable twice: see `checks.as_reusable`."""
    return None if calib is None else checks.as_reusable(calib)


def _first_input(calib: Iterable) -> torch.Tensor:
    for batch in calib:
        return batch_inputs(batch)
    raise ValueError("calib yielded no batches: calibration needs at least one batch of data")


def _ordered(fused: nn.Module, calib: Iterable | None) -> tuple[dict[str, nn.Module], str]:
    """The quantizable layers of a fused model in forward order (definition order without
    calib), and which order it is."""
    layers = layers_by_name(fused)
    if not layers:
        raise ValueError(
            f"model {type(fused).__name__} has no Conv2d or Linear layer: qnb.quantize "
            "quantizes the weights of Conv2d and Linear layers and has nothing to do here"
        )
    if calib is None:
        return layers, "definition order (pass calib for forward order)"
    order = forward_order(fused, layers, _first_input(calib))
    if not order:
        raise ValueError(
            f"forward of {type(fused).__name__} called none of its Conv2d/Linear layers "
            f"({', '.join(layers)}) on a calibration batch: nothing to quantize"
        )
    return {name: layers[name] for name in order}, "forward order"


def quantizable_layers(model: nn.Module, calib: Iterable | None = None) -> list[str]:
    """The names of `model`'s quantizable layers (Conv2d, Linear): in forward order on the first
    batch of `calib`, else in definition order. Layers forward never calls are left out.

    Taught in notebook 09 (mixed_precision)."""
    return list(_ordered(_prepared_copy(model), _reusable(calib))[0])


def _listing(names: Sequence[str], order: str) -> str:
    shown = "\n".join(f"  {i}: {name}" for i, name in enumerate(names))
    return f"the model's {len(names)} quantizable layers, in {order}:\n{shown}"


def _check_layer_bits(bits: object, name: str) -> int | None:
    """`bits` if it is an int in 2..8 (or None: float), else an error naming the layer."""
    if bits is None:
        return None
    try:
        return checks.check_bits("bits", bits, *BITS)
    except (TypeError, ValueError) as error:
        raise type(error)(f"layer {name!r}: {error} (or None: float)") from None


def _resolve(bitwidths: object, names: Sequence[str], order: str) -> dict[str, int | None]:
    if isinstance(bitwidths, Mapping):
        unknown = [k for k in bitwidths if k not in names]
        if unknown:
            raise ValueError(
                f"bitwidths names layers the model does not have: "
                f"{', '.join(repr(k) for k in unknown)}; {_listing(names, order)}"
            )
        chosen = {name: bitwidths.get(name, 8) for name in names}
    elif isinstance(bitwidths, list | tuple):
        if len(bitwidths) != len(names):
            raise ValueError(
                f"bitwidths has {len(bitwidths)} entries but the model has {len(names)} "
                f"quantizable layers (one entry per layer); {_listing(names, order)}"
            )
        chosen = dict(zip(names, bitwidths, strict=True))
    elif isinstance(bitwidths, int | np.integer) and not isinstance(bitwidths, bool):
        chosen = dict.fromkeys(names, bitwidths)
    else:
        raise TypeError(
            "bitwidths must be an int (every layer), a list with one int per quantizable layer "
            f"in forward order, or a dict {{layer name: bits}}; got {type(bitwidths).__name__}"
        )
    return {name: _check_layer_bits(bits, name) for name, bits in chosen.items()}


def resolve_bitwidths(
    model: nn.Module, bitwidths: object, calib: Iterable | None = None
) -> dict[str, int | None]:
    """{layer name: bits} for each quantizable layer from an int, a list (forward order) or a
    dict (layers it leaves out get 8 bits; None keeps a layer float)."""
    layers, order = _ordered(_prepared_copy(model), _reusable(calib))
    return _resolve(bitwidths, list(layers), order)


# --- size model ------------------------------------------------------------------------------


def _layer_bytes(layer: nn.Module, bits: int | None, granularity: str) -> float:
    """numel * bits / 8, plus a float32 scale per output channel (or per layer) and the
    float32 bias; a float layer (bits None) is numel * 4 plus its bias."""
    weight = layer.weight
    bias = layer.bias.numel() * BIAS_BYTES if getattr(layer, "bias", None) is not None else 0
    if bits is None:
        return weight.numel() * 4 + bias
    scales = weight.shape[0] if granularity == "per_channel" else 1
    return weight.numel() * bits / 8 + scales * SCALE_BYTES + bias


def _check_granularity(granularity: object) -> str:
    return checks.check_choice("granularity", granularity, simulate.GRANULARITIES)


def model_size_bytes(
    model: nn.Module,
    bitwidths: object = 8,
    *,
    calib: Iterable | None = None,
    granularity: str = "per_channel",
) -> float:
    """The size of the quantizable layers at `bitwidths` (any form `quantize` takes), in bytes.

    The size model: for each Conv2d/Linear layer of the fused model (batch norm folded),
    `numel(weight) * bits / 8`, plus 4 bytes (a float32 scale) per output channel (per layer
    when per_tensor), plus 4 bytes per bias element. Other parameters are not counted.

    Taught in notebook 09 (mixed_precision).
    """
    _check_granularity(granularity)
    layers, order = _ordered(_prepared_copy(model), _reusable(calib))
    bits = _resolve(bitwidths, list(layers), order)
    return float(sum(_layer_bytes(layers[n], bits[n], granularity) for n in layers))


# --- the one-call API ------------------------------------------------------------------------


@dataclass
class LayerRow(simulate.LayerReport):
    """One quantizable layer as `quantize` left it: its `simulate.LayerReport` and its mode."""

    mode: str = "float"  # "int8", "simulated" or "float"


@dataclass
class QuantizeReport:
    """What `quantize` did: per-layer rows, and whether the model is real int8 or simulated."""

    simulated: bool
    reason: str
    engine: str | None
    act_bits: int | None
    order: str
    output_sqnr_db: float | None
    size_bytes: float
    layers: list[LayerRow] = field(default_factory=list)
    ptq: ptq.PTQReport | None = None

    @property
    def bits(self) -> dict[str, int | None]:
        """{layer name: bits}."""
        return {row.name: row.bits for row in self.layers}

    def table(self):
        """The per-layer rows as a pandas DataFrame."""
        import pandas as pd

        columns = ["layer", "kind", "bits", "granularity", "weight_sqnr_db", "mode"]
        rows = [{"layer": r.name, **{c: getattr(r, c) for c in columns[1:]}} for r in self.layers]
        table = pd.DataFrame(rows, columns=columns)
        table["bits"] = table["bits"].astype("Int64")  # None (a float layer) shows as <NA>
        return table

    def __str__(self) -> str:
        kind = "simulated (fake-quantized float model)" if self.simulated else "real int8"
        out = "n/a" if self.output_sqnr_db is None else f"{self.output_sqnr_db:.1f} dB"
        acts = "float" if self.act_bits is None else f"{self.act_bits} bits"
        head = [
            f"{kind}: {self.reason}",
            f"activations {acts}, engine {self.engine}, layers in {self.order}, "
            f"weights {self.size_bytes / 1024:.1f} KiB, output SQNR {out} (first calib batch)",
        ]
        width = max(len(r.name) for r in self.layers)
        rows = [
            f"  {r.name:<{width}}  {r.kind:<6}  {str(r.bits):>4} bits  {r.granularity:<11}  "
            f"weight SQNR {r.weight_sqnr_db:6.1f} dB  {r.mode}"
            for r in self.layers
        ]
        return "\n".join(head + rows)


def _fake_quantize_layers_(
    layers: dict[str, nn.Module], bits: dict[str, int | None], granularity: str
) -> dict[str, float]:
    """Fake-quantize each layer's weight in place at its bits; return weight SQNRs (dB)."""
    sqnr = {}
    for name, layer in layers.items():
        w = layer.weight.detach()
        if bits[name] is None:
            sqnr[name] = float("inf")
            continue
        w_hat = simulate.fake_quantize_weight(w, bits[name], granularity)
        sqnr[name] = affine.sqnr_db(w.numpy(), w_hat.numpy())
        with torch.no_grad():
            layer.weight.copy_(w_hat)
    return sqnr


def _quantize_activations_(sim: nn.Module, act_bits: int, calib: Iterable) -> None:
    """Calibrate `act_bits` activation observers (min/max) on `calib`, then fix them."""
    sim.qconfig = simulate.activation_qconfig("minmax", act_bits)
    for module in sim.modules():
        if isinstance(module, QuantStub):
            module.qconfig = simulate.activation_qconfig("minmax", act_bits)
    if hasattr(sim, "dequant"):
        sim.dequant.qconfig = None
    prepare(sim, inplace=True)
    calibrate(sim, calib, desc=f"calibrating ({act_bits}-bit activations)")
    sim.activation_ranges = simulate.freeze_activations(sim)


def _output_sqnr(reference: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        ref, got = reference(x), model(x)
    if not isinstance(ref, torch.Tensor) or not isinstance(got, torch.Tensor):
        return float("nan")
    return affine.sqnr_db(ref.float().numpy(), got.dequantize().float().numpy())


def _int8_reason(bits: dict, act_bits: int | None) -> str | None:
    """Why the result is simulated, or None when a real int8 model can be built."""
    if any(b != 8 for b in bits.values()):
        return "int8 kernels need 8-bit weights everywhere; these bit widths are simulated"
    if act_bits != 8:
        return f"int8 kernels need 8-bit activations; act_bits={act_bits} is simulated"
    return None


def _other_weights(fused: nn.Module) -> list[str]:
    """Modules holding weights that quantize() leaves float (LSTM, Conv1d, Embedding, ...)."""
    skip = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    return [
        f"{name} ({type(m).__name__})"
        for name, m in fused.named_modules()
        if not isinstance(m, skip) and any(True for _ in m.parameters(recurse=False))
    ]


def _notes(fused: nn.Module, act_bits: int | None, simulated: bool) -> str:
    notes = []
    if simulated and act_bits is not None:
        if not any(isinstance(m, QuantStub) for m in fused.modules()):
            notes.append("no QuantStub: the model input stays float")
    others = _other_weights(fused)
    if others:
        notes.append(f"not Conv2d/Linear, kept float: {', '.join(others)}")
    return "".join(f"; {note}" for note in notes)


def quantize(
    model: nn.Module,
    bitwidths: int | Sequence[int] | Mapping[str, int] = 8,
    *,
    engine: str | None = None,
    calib: Iterable | None = None,
    granularity: str = "per_channel",
    act_bits: int | None = 8,
) -> tuple[nn.Module, QuantizeReport]:
    """A quantized copy of `model` and a per-layer `QuantizeReport`.

    `bitwidths`: an int (every Conv2d/Linear layer), a list with one entry per quantizable layer
    in forward order (`quantizable_layers(model, calib)` lists them), or a dict
    `{layer name: bits}` (unnamed layers get 8; None keeps a layer float). Bits are 2..8.
    `calib`: a DataLoader or iterable of batches (tensors or `(input, target)` pairs); needed for
    activations (`act_bits`) and for forward order. The copy is put in eval mode and fused
    (`fuse_groups()` or torchvision's `fuse_model()`).

    Every layer at 8 bits with `act_bits=8` gives a real int8 model (`qnb.ptq.quantize_static`
    under `engine`, None: this machine's; the model needs a QuantStub). Anything else gives a
    simulated float model: weights fake-quantized per layer at their bits, activations
    fake-quantized at `act_bits` (min/max calibrated on `calib`; None leaves them float);
    `report.simulated` says which.

    Taught in notebook 09 (mixed_precision)."""
    engine = checks.check_engine(engine)
    granularity = _check_granularity(granularity)
    act_bits = checks.check_optional_bits("act_bits", act_bits)
    calib = _reusable(calib)
    fused = _prepared_copy(model)
    layers, order = _ordered(fused, calib)
    bits = _resolve(bitwidths, list(layers), order)
    if act_bits is not None and calib is None:
        raise ValueError(
            f"act_bits={act_bits} needs calib (a DataLoader or iterable of calibration batches) "
            "to find the activation ranges; pass calib=..., or act_bits=None to quantize the "
            "weights only"
        )
    reason = _int8_reason(bits, act_bits)
    size = float(sum(_layer_bytes(layers[n], bits[n], granularity) for n in layers))
    reference = copy.deepcopy(fused)
    if reason is None:
        eager.check_quant_stub(  # with what `quantize` can do instead
            fused,
            also="; torchvision has quantizable variants (torchvision.models.quantization); "
            "or ask for a simulated model with act_bits=None or bit widths below 8",
        )
        int8, ptq_report = ptq.quantize_static(
            fused, calib, engine=engine, per_channel=granularity == "per_channel"
        )
        converted = dict(int8.named_modules())
        sqnr = {}
        for name, layer in layers.items():
            w_hat = converted[name].weight().dequantize()
            sqnr[name] = affine.sqnr_db(layer.weight.detach().numpy(), w_hat.numpy())
        result, mode, reason = int8, "int8", f"int8 kernels on engine {engine!r}"
    else:
        ptq_report = None
        sqnr = _fake_quantize_layers_(layers, bits, granularity)
        if act_bits is not None:
            _quantize_activations_(fused, act_bits, calib)
        result, mode = fused, "simulated"
        result.qnb_bitwidths = dict(bits)
    reason += _notes(reference, act_bits, mode == "simulated")
    out = None if calib is None else _output_sqnr(reference, result, _first_input(calib))
    rows = [
        LayerRow(
            name,
            type(layer).__name__,
            bits[name],
            "float" if bits[name] is None else granularity,
            sqnr[name],
            "float" if bits[name] is None else mode,
        )
        for name, layer in layers.items()
    ]
    report = QuantizeReport(
        simulated=mode == "simulated",
        reason=reason,
        engine=engine if mode == "int8" else None,
        act_bits=act_bits,
        order=order,
        output_sqnr_db=out,
        size_bytes=size,
        layers=rows,
        ptq=ptq_report,
    )
    return result, report


# --- sensitivity, allocation, Pareto front ---------------------------------------------------


def _as_bits_list(bits: int | Sequence[int]) -> list[int]:
    values = [bits] if isinstance(bits, int | np.integer) else list(bits)
    return [_check_layer_bits(b, "(all layers)") for b in values]


def sensitivity(
    model: nn.Module,
    bits: int | Sequence[int] = 4,
    *,
    calib: Iterable | None = None,
    loader: Iterable | None = None,
    metric: str = "accuracy",
    granularity: str = "per_channel",
):
    """Each quantizable layer alone with its weights at `bits` (each of them, if a list), every
    other layer and all activations float.

    `metric="accuracy"`: top-1 accuracy on `loader` ((images, labels) batches; the test split
    by default); `cost` is its drop from the float model's accuracy. `metric="sqnr"`: the SQNR
    (dB) of the model output against the float output on the first batch of `loader` (or
    `calib`); `cost` is the relative noise power 10 ** (-SQNR / 10), which adds up over layers
    (to first order) where dB do not. `calib` only orders the layers (forward order).
    Returns a DataFrame with columns layer, bits, params, <metric>, cost.

    Taught in notebook 09 (mixed_precision).
    """
    import pandas as pd

    if metric not in ("accuracy", "sqnr"):
        raise ValueError(f"metric must be 'accuracy' or 'sqnr', got {metric!r}")
    granularity = _check_granularity(granularity)
    choices = _as_bits_list(bits)
    calib = _reusable(calib)
    fused = _prepared_copy(model)
    layers, _ = _ordered(fused, calib)
    if metric == "accuracy":
        loader = _reusable(loader)

        def score(m: nn.Module) -> float:
            return models.evaluate(m, loader)
    else:
        source = _reusable(loader) if loader is not None else calib
        if source is None:
            raise ValueError("metric='sqnr' needs a batch: pass loader=... or calib=...")
        x = _first_input(source)
        with torch.inference_mode():
            ref = fused(x).numpy()

        def score(m: nn.Module) -> float:
            with torch.inference_mode():
                return affine.sqnr_db(ref, m(x).numpy())

    base = score(fused) if metric == "accuracy" else None
    rows = []
    for name, layer in layers.items():
        w = layer.weight.detach().clone()
        for b in choices:
            with torch.no_grad():
                layer.weight.copy_(simulate.fake_quantize_weight(w, b, granularity))
            value = score(fused)
            cost = base - value if metric == "accuracy" else 10 ** (-value / 10)
            rows.append(
                {"layer": name, "bits": b, "params": w.numel(), metric: value, "cost": cost}
            )
        with torch.no_grad():
            layer.weight.copy_(w)
    return pd.DataFrame(rows, columns=["layer", "bits", "params", metric, "cost"])


def allocate(
    model: nn.Module,
    sensitivities,
    budget_bytes: float,
    choices: Sequence[int] = (2, 3, 4, 6, 8),
    *,
    calib: Iterable | None = None,
    granularity: str = "per_channel",
) -> dict[str, int]:
    """Bits per layer (from `choices`) minimising the summed sensitivity `cost` of the layers
    with `model_size_bytes <= budget_bytes`: an exact knapsack over the per-layer costs (a
    dynamic programme over (size, cost) states, dominated states pruned). Among equal costs the
    largest size within the budget wins: more bits where the measurement cannot tell.

    `sensitivities` is `sensitivity(...)`'s DataFrame (columns layer, bits, cost) measured at
    every choice but the largest, which costs 0 when not measured. Assumes that the layers'
    costs add up (a first-order model; check the result by evaluating it).

    Taught in notebook 09 (mixed_precision).
    """
    choices = sorted(set(_as_bits_list(choices)))
    granularity = _check_granularity(granularity)
    layers, _ = _ordered(_prepared_copy(model), _reusable(calib))
    cost = {(r.layer, int(r.bits)): float(r.cost) for r in sensitivities.itertuples()}
    for name in layers:
        cost.setdefault((name, choices[-1]), 0.0)
        missing = [b for b in choices if (name, b) not in cost]
        if missing:
            raise ValueError(
                f"sensitivities has no row for layer {name!r} at bits {missing}: measure "
                f"sensitivity(model, bits={choices[:-1]}, ...) for every choice"
            )
    # Pareto-pruned dynamic programme: states (size, cost, bits so far), none dominated.
    states: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for name, layer in layers.items():
        grown = [
            (size + _layer_bytes(layer, b, granularity), c + cost[name, b], chosen + (b,))
            for size, c, chosen in states
            for b in choices
        ]
        grown.sort(key=lambda s: (s[0], s[1]))
        states, best = [], math.inf
        for state in grown:
            if state[1] < best:
                states.append(state)
                best = state[1]
    feasible = [s for s in states if s[0] <= budget_bytes]
    if not feasible:
        smallest = states[0][0]
        raise ValueError(
            f"budget_bytes={budget_bytes:.0f} is below the smallest size these choices reach "
            f"({smallest:.0f} bytes, every layer at {choices[0]} bits)"
        )
    _, _, chosen = min(feasible, key=lambda s: (s[1], -s[0]))
    return dict(zip(layers, chosen, strict=True))


def predicted_sqnr_db(sensitivities, bitwidths: Mapping[str, int | None]) -> float:
    """The output SQNR (dB) that the summed per-layer costs predict for `bitwidths`
    ({layer name: bits}; None keeps a layer float and costs nothing): -10 log10 of the sum of
    the layers' `cost` (relative noise powers, which add to first order).

    `sensitivities` is `sensitivity(..., metric="sqnr")`'s DataFrame. Every (layer, bits) of
    `bitwidths` must have a row with a finite cost: a width that was never measured is an error
    naming it, never a layer without noise, so a prediction cannot agree with a measurement by
    being infinite or NaN. The result is infinite only when the costs sum to 0 (every layer
    float, for instance).

    Taught in notebook 09 (mixed_precision)."""
    if not {"layer", "bits", "cost", "sqnr"} <= set(getattr(sensitivities, "columns", ())):
        raise ValueError(
            "sensitivities must be sensitivity(..., metric='sqnr')'s table (columns layer, bits, "
            "sqnr, cost): accuracy drops do not add up to an output noise"
        )
    if not isinstance(bitwidths, Mapping) or not bitwidths:
        raise TypeError(f"bitwidths must be a non-empty dict {{layer name: bits}}, got "
                        f"{bitwidths!r}")
    cost = {(r.layer, int(r.bits)): float(r.cost) for r in sensitivities.itertuples()}
    missing = [f"{name!r} at {bits} bits" for name, bits in bitwidths.items()
               if bits is not None and not math.isfinite(cost.get((name, int(bits)), math.nan))]
    if missing:
        raise ValueError(
            f"sensitivities has no finite cost for {', '.join(missing)}: measure "
            "sensitivity(model, bits=[...], metric='sqnr') at every width the allocation uses "
            "(the largest too)"
        )
    noise = sum(cost[name, int(bits)] for name, bits in bitwidths.items() if bits is not None)
    return -10 * math.log10(noise) if noise > 0 else math.inf


def pareto(
    points: Sequence[float] | Sequence[Sequence[float]], accuracies: Sequence[float] | None = None
) -> np.ndarray:
    """A boolean mask of the (size, accuracy) points on the Pareto front: those that no other
    point matches or beats in both (at most as large, at least as accurate) while strictly
    beating in one. `pareto([(size, acc), ...])` or `pareto(sizes, accuracies)`.

    Taught in notebook 09 (mixed_precision)."""
    if accuracies is None:
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must be (size, accuracy) pairs; got shape {pts.shape}")
        size, acc = pts[:, 0], pts[:, 1]
    else:
        size, acc = np.asarray(points, dtype=float), np.asarray(accuracies, dtype=float)
        if size.shape != acc.shape or size.ndim != 1:
            raise ValueError(
                f"sizes and accuracies must be 1-D of one length; got {size.shape}, {acc.shape}"
            )
    no_worse = (size[None, :] <= size[:, None]) & (acc[None, :] >= acc[:, None])
    better = (size[None, :] < size[:, None]) | (acc[None, :] > acc[:, None])
    return ~(no_worse & better).any(axis=1)
