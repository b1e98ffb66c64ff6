"""The pt2e path: `torch.export` -> torchao `prepare_pt2e` / `convert_pt2e` with the
`X86InductorQuantizer` -> `torch.compile` with Inductor freezing on.

`quantize_pt2e(model, example, calib)` returns the converted int8 graph (quantize/dequantize
ops around float ops; Inductor fuses them into int8 kernels when it compiles the graph), and
`compile_for_cpu(model, example)` compiles it (or the float model, for the fp32 baseline).

Exports are strict (TorchDynamo tracing) by default: with torch 2.14.1 + torchao 0.18.0 the
non-strict export makes `prepare_pt2e` fail on models that call one module twice (ResNet's
`BasicBlock` calls `self.relu` after `bn1` and after the residual add: "Input partition has
more than one output node"). `shared_modules` lists such modules. Notebook 10
(cpu_deployment) shows the failure live and explains it. x86 only: `X86InductorQuantizer`
targets x86 CPUs (`qnb.env.has_x86()`)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from qnb import checks, hooks
from qnb.calibration import batch_inputs, calibrate

if TYPE_CHECKING:  # torchao is imported lazily: importing it takes seconds
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

__all__ = [
    "compile_for_cpu",
    "export_model",
    "hide_compile_noise",
    "quantize_pt2e",
    "shared_modules",
    "x86_quantizer",
]


def _check_model(model: object) -> nn.Module:
    return checks.check_eval_model(
        model, why="export would capture train-mode batch norm and dropout"
    )


def _check_example(example: object) -> torch.Tensor:
    return checks.check_float_tensor("example", example)


def export_model(
    model: nn.Module, example: torch.Tensor, *, strict: bool = True, dynamic_batch: bool = False
) -> nn.Module:
    """`torch.export` the eval-mode `model` on `example`; the exported graph as a module.

    `strict=True` is the workaround described in the module docstring; `strict=False` is
    torch's default and fails in `prepare_pt2e` on models that call one module twice. With
    `dynamic_batch`, dim 0 is left symbolic: the graph takes any batch size (and shape checks
    apply to the other dims only); otherwise it is specialized to `example`'s shape.
    """
    _check_model(model)
    example = _check_example(example)
    checks.check_bool("dynamic_batch", dynamic_batch)
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    return torch.export.export(model, (example,), strict=strict, dynamic_shapes=shapes).module()


def shared_modules(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Leaf modules that `model` calls more than once on `example`: `{name: calls}`.

    These are what break the non-strict export + X86InductorQuantizer path (see module doc).
    """
    _check_model(model)
    example = _check_example(example)
    calls: dict[str, int] = {}
    leaves = [(module, _counter(calls, name)) for name, module in model.named_modules()
              if name and not any(True for _ in module.children())]
    with hooks.attached(leaves):
        hooks.run(model, [example])
    return {name: n for name, n in calls.items() if n > 1}


def _counter(calls: dict[str, int], name: str) -> Callable[..., None]:
    def hook(*_: object) -> None:
        calls[name] = calls.get(name, 0) + 1

    return hook


def x86_quantizer(*, is_per_channel: bool = True) -> X86InductorQuantizer:
    """An `X86InductorQuantizer` with torchao's default static config (uint8 activations with
    histogram observers, int8 symmetric weights); per-tensor weights if `is_per_channel=False`.
    """
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    if not isinstance(is_per_channel, bool):
        raise TypeError(f"is_per_channel must be True or False, got {is_per_channel!r}")
    config = get_default_x86_inductor_quantization_config()
    if not is_per_channel:
        weight = dataclasses.replace(
            config.weight,
            qscheme=torch.per_tensor_symmetric,
            ch_axis=None,
            observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
        )
        config = dataclasses.replace(config, weight=weight)
    return X86InductorQuantizer().set_global(config)


def quantize_pt2e(
    model: nn.Module,
    example: torch.Tensor,
    calib: Iterable,
    *,
    is_per_channel: bool = True,
    num_batches: int | None = None,
    dynamic_batch: bool = False,
) -> torch.fx.GraphModule:
    """Static int8 via pt2e: strict export -> `prepare_pt2e` (X86InductorQuantizer) ->
    calibrate on `calib` -> `convert_pt2e`. `model` is left unchanged.

    `calib` is a DataLoader or any iterable of batches (tensors or `(input, target)` pairs);
    `num_batches` caps how many are used. Export specializes the graph to `example`'s shape:
    calibration batches, and later inputs, must have that same shape; with `dynamic_batch`
    only their batch size may differ (what evaluating a test set in batches needs; a graph
    compiled by `compile_for_cpu` is best kept static). The result runs as is
    (float math around quantize/dequantize ops), is marked eval (`.training` False), keeps
    only the int8 weights (the float ones folded away are deleted, so its size is honest), and
    `compile_for_cpu` turns it into int8 kernels.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    _check_model(model)
    _check_example(example)
    checks.check_calib(calib)
    quantizer = x86_quantizer(is_per_channel=is_per_channel)
    exported = export_model(model, example, dynamic_batch=dynamic_batch)
    prepared = prepare_pt2e(exported, quantizer)
    batches = _same_shape(calib, example.shape, dynamic_batch)
    calibrate(prepared, batches, num_batches=num_batches, desc="calibrating (pt2e)")
    return _drop_unused_weights(_as_eval(convert_pt2e(prepared)))


def _same_shape(
    calib: Iterable, shape: torch.Size, dynamic_batch: bool = False
) -> Iterable[torch.Tensor]:
    """The input tensors of `calib`, refusing any whose shape is not the exported `shape`
    (its dims after the first only, with `dynamic_batch`)."""
    for batch in calib:
        inputs = batch_inputs(batch)
        if dynamic_batch and inputs.shape[1:] != shape[1:]:
            raise ValueError(
                f"calib batch has shape {tuple(inputs.shape)}, but the model is exported for "
                f"inputs of shape (batch, {', '.join(map(str, shape[1:]))})"
            )
        if not dynamic_batch and inputs.shape != shape:
            raise ValueError(
                f"calib batch has shape {tuple(inputs.shape)}, but the model is exported for "
                f"the example's shape {tuple(shape)} and accepts no other: use batches of that "
                "shape (a DataLoader with the same batch_size and drop_last=True)"
            )
        yield inputs


def _drop_unused_weights(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete the float weights `convert_pt2e` leaves behind after folding them into int8
    constants (`_frozen_param*`); only attributes the graph still reads are kept."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner), attr)
    return gm


def _as_eval(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Mark an exported graph as in eval mode. Its ops already are (it was exported from an
    eval-mode model), but `ep.module()` reports `training=True` and refuses `.eval()`; torchao's
    helpers make `.eval()` / `.train()` work and the flag is set so `qnb.bench` accepts it.
    """
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
    )

    move_exported_model_to_eval(gm)
    allow_exported_model_train_eval(gm)
    for module in gm.modules():
        module.training = False
    return gm


class _FreezingCompiled(nn.Module):
    """A `torch.compile`d model that runs with Inductor freezing on (see `compile_for_cpu`)."""

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled
        self.training = compiled.training  # not .eval(): a loaded export refuses train()/eval()

    def forward(self, *args: object, **kwargs: object) -> object:
        import torch._inductor.config as config  # imported already: a dict lookup

        before = config.freezing
        config.freezing = True  # read by Dynamo if this call (re)compiles
        try:
            return self.compiled(*args, **kwargs)
        finally:
            config.freezing = before


def compile_for_cpu(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`torch.compile(model, dynamic=False)` with Inductor freezing on (and torchao's x86 int8
    fusion passes registered), compiled and warmed once on `example`.

    Freezing (weights folded as constants, int8 weight prepacking) is what lets Inductor turn
    a pt2e graph into int8 kernels. Run the result under `torch.inference_mode()` or
    `torch.no_grad()`, on inputs of `example`'s shape (another shape compiles again, for that
    shape only: `dynamic=False`).

    The returned module turns freezing on around each call (about 10 microseconds) and restores
    the global setting after, so that a *recompile* is frozen like the first compile. A
    compiled model compiles again when one of its guards fails (a new thread count) or when
    Dynamo's caches are dropped, and torch 2.14's strict `torch.export` (`quantize_pt2e`,
    `export_model`) drops every compiled graph of the process (it calls
    `torch._dynamo.reset()`). Dynamo
    reads the global freezing flag when it traces (to keep the weights as constants, not graph
    inputs); the `freezing` compile option alone reaches Inductor only after that, and a
    recompile of a pt2e graph without the global flag fails in Inductor with
    `UnsupportedOperatorException: onednn.qconv_prepack.default` (the int8 weight prepacking
    applied to weights that are now runtime inputs). Export first and compile after, or pay a
    recompile (seconds) at the next call.
    """
    import torch._inductor.config as inductor_config

    # Importing torchao's X86InductorQuantizer registers its int8 fusion passes with Inductor
    # (a pre-grad pass and weight prepacking). A process that only loads a saved pt2e graph
    # never imports it, and compiled the same graph to different kernels, whose outputs were
    # about one quantization step off the ones compiled where the model was quantized.
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training and not isinstance(model, torch.fx.GraphModule):
        raise ValueError("model is in train mode: call model.eval() before compiling")
    example = _check_example(example)
    compiled = _FreezingCompiled(torch.compile(model, dynamic=False, options={"freezing": True}))
    with inductor_config.patch(freezing=True), torch.inference_mode():
        compiled(example)
    return compiled


def hide_compile_noise() -> None:
    """Silence what torch 2.14 + torchao 0.18 print while compiling on a CPU-only machine, none
    of it about the model: "No CUDA runtime is found" (Inductor's C++ build looks for CUDA),
    torchao registering an Enum with pytree (deprecated), and a UserWarning about
    `torch.tensor(tensor)` inside Inductor's int8 weight lowering."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
