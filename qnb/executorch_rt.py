"""ExecuTorch with the XNNPACK backend: the on-device route for ARM phones and boards, run here
on this CPU through ExecuTorch's Python runtime (notebook 11, other_runtimes).

- `quantize_xnnpack(model, example, calib)`: pt2e with ExecuTorch's `XNNPACKQuantizer`
  (`executorch.backends.xnnpack.quantizer.xnnpack_quantizer`): `torch.export` with a dynamic
  batch dim -> torchao's `prepare_pt2e` -> calibration -> `convert_pt2e`. Its symmetric config:
  int8 activations (histogram observer, asymmetric, -128..127), int8 symmetric weights (-127..127)
  per output channel by default. The result is a PyTorch graph of float ops between
  quantize/dequantize ops: the reference the `.pte` is checked against.
- `export_pte(model, example, path)`: `torch.export` (batch dim dynamic up to `max_batch`) ->
  `executorch.exir.to_edge_transform_and_lower` with the `XnnpackPartitioner` ->
  `to_executorch()` -> the `.pte` file. A float model lowers to XNNPACK's fp32 kernels, a
  `quantize_xnnpack` graph to its int8 (QS8) kernels.
- `executorch_model(path, threads=...)`: the `.pte` loaded by `executorch.runtime`
  (`Runtime.get().load_program(path).load_method("forward")`) in a `qnb.runtimes.RuntimeModel`,
  callable like an `nn.Module` so `qnb.bench` times it beside PyTorch's models. It refuses an
  input of the wrong shape or a batch above the one the program was planned for, with the
  reason, instead of ExecuTorch's bare error code.

ExecuTorch plans every tensor's memory ahead at the upper bound of its dynamic dims. With
executorch 1.5.1 a program lowered to XNNPACK was planned for a batch of 15 when it was traced
on a batch of 8 (or 2) with the bound 1024 (the bound of 1024 was kept when traced on a batch
near it), so `export_pte` traces on a batch of `max_batch`. Traced on a batch of 16 with the
bound 16, the program then ran only on batches of exactly 16 (64 and 256 ran every batch from
1 up), so `export_pte` also runs each new program on a batch of 1 and of `max_batch`.

`available()` says whether executorch and its XNNPACK backend can run here, and why not.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qnb import checks
from qnb.calibration import batch_inputs, calibrate
from qnb.runtimes import RuntimeModel

__all__ = [
    "MAX_BATCH",
    "available",
    "executorch_model",
    "export_pte",
    "planned_input",
    "quantize_xnnpack",
    "version",
    "xnnpack_quantizer",
]

MAX_BATCH = 1024  # the default upper bound of the batch dim of an exported program
_INSTALL = (
    "install the workbook's pinned environment (`pip install -r requirements.lock`, which pins "
    "executorch==1.5.1), or `pip install executorch==1.5.1` (wheels for Linux x86-64 and "
    "aarch64, macOS arm64 and Windows x86-64)"
)


def available() -> tuple[bool, str]:
    """Whether ExecuTorch's Python runtime with its XNNPACK backend can run here, and why not."""
    try:
        runtime = _runtime()
    except ImportError as exc:
        return False, str(exc)
    if not runtime.backend_registry.is_available("XnnpackBackend"):
        names = ", ".join(runtime.backend_registry.registered_backend_names)
        return False, f"this executorch build has no XnnpackBackend (it has: {names})"
    return True, "executorch with XnnpackBackend"


def version() -> str:
    """The installed executorch's version (raises ImportError, saying how to install, if none)."""
    _need("executorch")
    return importlib.metadata.version("executorch")


def _need(module: str):
    try:
        # loading ExecuTorch's library logs what it reads of /sys, and its Python bindings warn
        # that they are experimental (the runtime API this module uses is not)
        with _quiet_stderr(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "This API is experimental")
            return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"executorch is not installed (ExecuTorch and its XNNPACK backend, needed here): "
            f"{_INSTALL}; import said: {exc}"
        ) from exc


def _runtime():
    module = _need("executorch.runtime")
    pool = _need("executorch.extension.pybindings.portable_lib")._threadpool_get_thread_count
    with _quiet_stderr():  # the thread pool's first use logs what it reads of /sys (cpuinfo)
        pool()
    return module.Runtime.get()


@contextlib.contextmanager
def _quiet_stderr():
    """Send what ExecuTorch's C++ code logs to file descriptor 2 (info lines such as
    "[threadpool.cpp:66] Resetting threadpool to 2 threads.") to /dev/null meanwhile; errors
    still come back as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_example(example: object) -> torch.Tensor:
    checks.check_float_tensor("example", example)
    if example.dim() < 2 or example.shape[0] < 1:
        raise ValueError(
            f"example must be a batch with a leading batch dim, got shape {tuple(example.shape)}"
        )
    return example


def _check_model(model: object) -> nn.Module:
    model = checks.check_model(model)
    if isinstance(model, torch.fx.GraphModule):
        return model  # an exported graph reports training=True; its ops are eval's already
    return checks.check_eval_model(
        model, why="export would capture train-mode batch norm and dropout"
    )


def _export(model: nn.Module, example: torch.Tensor, max_batch: int):
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def xnnpack_quantizer(*, is_per_channel: bool = True):
    """ExecuTorch's `XNNPACKQuantizer` with its symmetric static config (int8 activations,
    int8 symmetric weights; per output channel unless `is_per_channel=False`)."""
    checks.check_bool("is_per_channel", is_per_channel)
    module = _need("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    config = module.get_symmetric_quantization_config(is_per_channel=is_per_channel)
    return module.XNNPACKQuantizer().set_global(config)


def quantize_xnnpack(
    model: nn.Module,
    example: torch.Tensor,
    calib: Iterable,
    *,
    is_per_channel: bool = True,
    num_batches: int | None = None,
    max_batch: int = MAX_BATCH,
) -> torch.fx.GraphModule:
    """Static int8 for XNNPACK via pt2e: export `model` (batch dim dynamic up to `max_batch`)
    -> `prepare_pt2e` with `xnnpack_quantizer` -> calibrate on `calib` (a DataLoader or any
    iterable of batches, up to `num_batches`) -> `convert_pt2e`. `model` is left unchanged;
    the result runs in PyTorch (float ops between quantize/dequantize ops) on any batch up to
    `max_batch` and is what `export_pte` lowers to XNNPACK's int8 kernels."""
    _check_model(model)
    example = _check_example(example)
    checks.check_calib(calib)
    max_batch = checks.check_int("max_batch", max_batch, 2)
    quantizer = xnnpack_quantizer(is_per_channel=is_per_channel)
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(_export(model, example, max_batch).module(), quantizer)
    inputs = (_same_sample_shape(batch_inputs(b), example, "calib batch") for b in calib)
    calibrate(prepared, inputs, num_batches=num_batches, desc="calibrating (XNNPACK)")
    converted = move_exported_model_to_eval(convert_pt2e(prepared))
    allow_exported_model_train_eval(converted)  # .eval() works, so qnb.models.predict runs it
    for module in converted.modules():
        module.training = False
    return converted


def _same_sample_shape(x: torch.Tensor, example: torch.Tensor, what: str) -> torch.Tensor:
    if tuple(x.shape[1:]) != tuple(example.shape[1:]):
        raise ValueError(
            f"{what} has shape {tuple(x.shape)}, but the model is exported for samples of shape "
            f"{tuple(example.shape[1:])} (the example's, after its batch dim)"
        )
    return x


def _check_pte_path(path: object, name: str = "path", exists: bool = False) -> Path:
    path = checks.check_file(path, name) if exists else checks.check_path(path, name)
    if path.suffix != ".pte":
        raise ValueError(f"{name} must name a .pte file, got {str(path)!r}")
    return path


def export_pte(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    max_batch: int = MAX_BATCH,
) -> Path:
    """Lower `model` (an eval-mode float model, or a `quantize_xnnpack` graph) to XNNPACK and
    write the ExecuTorch program to the `.pte` file `path`; returns `path`. The batch dim is
    dynamic from 1 to `max_batch`; ExecuTorch plans the memory of every tensor for `max_batch`
    (see the module docstring), so keep it no larger than needed."""
    _check_model(model)
    example = _check_example(example)
    path = _check_pte_path(path)
    max_batch = checks.check_int("max_batch", max_batch, 2)
    _runtime()  # first, so that what it logs once is silenced (lowering can start it too)
    exir = _need("executorch.exir")
    partitioner = _need("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    traced = example[:1].expand(max_batch, *example.shape[1:]).contiguous()
    edge = exir.to_edge_transform_and_lower(
        _export(model, traced, max_batch), partitioner=[partitioner.XnnpackPartitioner()]
    )
    program = edge.to_executorch()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(program.buffer)
    _check_batches(path, max_batch, tuple(example.shape[1:]))
    return path


def _check_batches(path: Path, max_batch: int, sample: tuple[int, ...]) -> None:
    """Refuse a program that is not planned for `max_batch`, or that fails on a batch of 1 or
    of `max_batch` (executorch 1.5.1 made programs that ran only at the bound when traced on
    a batch of 16 or less, see the module docstring)."""
    planned = planned_input(path)[0]
    if planned != max_batch:
        raise RuntimeError(
            f"ExecuTorch planned {path.name} for a batch of {planned}, not max_batch={max_batch}"
        )
    _program, method = _forward(path)
    for batch in (1, max_batch):
        try:
            with _quiet_stderr():
                method.execute([torch.zeros(batch, *sample)])
        except RuntimeError as exc:
            raise RuntimeError(
                f"{path.name} fails on a batch of {batch} (max_batch={max_batch}): {exc}; "
                "with executorch 1.5.1 a max_batch of 64 or more gave programs that ran on "
                "every batch from 1 up"
            ) from exc


def _forward(path: Path):
    runtime = _runtime()
    with _quiet_stderr():
        program = runtime.load_program(path)
    if "forward" not in program.method_names:
        raise ValueError(f"{path.name} has no forward method, only {sorted(program.method_names)}")
    return program, program.load_method("forward")


def planned_input(path: str | os.PathLike) -> tuple[int, ...]:
    """The input shape the `.pte` program at `path` was memory-planned for: its batch is the
    largest batch the program accepts."""
    path = _check_pte_path(path, exists=True)
    runtime = _runtime()
    with _quiet_stderr():
        meta = runtime.load_program(path).metadata("forward")
    if meta.num_inputs() != 1:
        raise ValueError(f"{path.name} takes {meta.num_inputs()} inputs; expected one")
    return tuple(meta.input_tensor_meta(0).sizes())


def _check_threads(threads: object) -> int:
    cores = os.cpu_count() or 1
    return cores if threads is None else checks.check_int("threads", threads, 1, cores)


_LOADED: list[str] = []  # the programs this process has loaded with executorch_model


def _set_threads(threads: int) -> None:
    """Size XNNPACK's thread pool (one per process) to `threads` before the first program is
    loaded. Resizing it later would free the pool that loaded programs hold (executorch 1.5.1
    then crashes in the next call), so a different count after that is refused."""
    lib = _need("executorch.extension.pybindings.portable_lib")
    with _quiet_stderr():  # the pool's first use logs what it reads of /sys (cpuinfo)
        now = lib._threadpool_get_thread_count()
    if now == threads:
        return
    if _LOADED:
        raise ValueError(
            f"threads={threads}, but XNNPACK's thread pool (one per process) already has {now} "
            f"thread(s) and {len(_LOADED)} program(s) loaded with it ({', '.join(_LOADED[:3])}); "
            f"resizing it would break them: use threads={now}, or a new process"
        )
    with _quiet_stderr():
        lib._unsafe_reset_threadpool(threads)


def executorch_model(path: str | os.PathLike, *, threads: int | None = None) -> RuntimeModel:
    """The `.pte` program at `path` loaded by ExecuTorch's runtime, as a `RuntimeModel`;
    XNNPACK's thread pool gets `threads` threads (None: all cores). The pool is one per
    process, sized by the first call: later calls must ask for the same number.

    Taught in notebook 11 (other_runtimes)."""
    path = _check_pte_path(path, exists=True)
    threads = _check_threads(threads)
    _set_threads(threads)
    planned = planned_input(path)
    _program, method = _forward(path)
    _LOADED.append(path.name)

    def run(x: np.ndarray) -> np.ndarray:
        if x.ndim != len(planned) or tuple(x.shape[1:]) != planned[1:]:
            raise ValueError(
                f"input has shape {tuple(x.shape)}, but {path.name} takes a batch of samples of "
                f"shape {planned[1:]}"
            )
        if not 1 <= x.shape[0] <= planned[0]:
            raise ValueError(
                f"input has a batch of {x.shape[0]}, but {path.name} was exported for batches "
                f"of 1 to {planned[0]} (export_pte's max_batch)"
            )
        out = method.execute([torch.from_numpy(x)])
        return out[0].numpy().copy()  # the output lives in the program's planned memory

    with _quiet_stderr():  # the first call logs how it reads the CPU's features
        method.execute([torch.zeros(1, *planned[1:])])
    runner = RuntimeModel(run, path, "executorch", threads, f", XNNPACK, batch 1-{planned[0]}")
    runner.program = _program  # keeps the program alive as long as its method
    return runner
