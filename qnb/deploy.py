"""Saving and loading int8 models (every artifact in one place), and the check that one runs
the same in a fresh process.

An eager int8 model is saved as TorchScript (`save_torchscript`, a `.pt` file: code, weights
and engine in one archive) or as its state dict with the recipe that rebuilds it around the
float model (`save_state_dict` / `load_int8`); a pt2e int8 graph as an ExportedProgram
(`save_pt2e`, a `.pt2` file). `load` reads a `.pt` or `.pt2` file. `run_fresh(path, inputs)` loads
the file in a new Python process, which shares nothing with this one (no model objects, no
compiled code in memory; the quantized engine comes from the file), runs it on `inputs` and
returns the outputs, so a notebook can check that the artifact alone reproduces the model.

    python -m qnb.deploy ARTIFACT INPUTS.pt OUTPUTS.pt [--threads N] [--compile]

is what `run_fresh` runs; `--compile` compiles a `.pt2` graph with Inductor before running it.
Loading an eager int8 model sets the process-wide quantized engine to the one it was built for."""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import QConfig, convert, prepare
from torch.ao.quantization.observer import MinMaxObserver

from qnb import checks, eager, env, models, ptq, simulate
from qnb.calibration import batch_inputs

__all__ = [
    "load",
    "load_int8",
    "load_torchscript",
    "run_fresh",
    "save_pt2e",
    "save_state_dict",
    "save_torchscript",
]

SUFFIXES = {".pt": "TorchScript from save_torchscript", ".pt2": "from save_pt2e"}
_SAVE_FORMAT = "qnb-int8-state-dict"


def _check_artifact(path: object) -> Path:
    path = checks.check_path(path)
    if path.suffix not in SUFFIXES:
        allowed = ", ".join(f"{s} ({what})" for s, what in SUFFIXES.items())
        raise ValueError(f"path must end in {allowed}; got {str(path)!r}")
    return path


def _check_inputs(inputs: object, name: str = "inputs") -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be an input tensor, got {type(inputs).__name__}")
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        raise ValueError(f"{name} holds NaN or inf; use finite input")
    return inputs


def save_pt2e(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Export the pt2e int8 graph `model` (from `qnb.pt2e.quantize_pt2e`) on `example` and save
    the ExportedProgram at `path` (a `.pt2` file). It keeps the graph's fixed input shape.

    Taught in notebook 10 (cpu_deployment)."""
    path = _check_artifact(path)
    if path.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2 for an ExportedProgram, got {str(path)!r}")
    checks.check_model(model)
    example = _check_inputs(example, "example")
    program = torch.export.export(model, (example,))
    program.example_inputs = None  # else the file also carries the example batch
    torch.export.save(program, str(path))
    return path


def load(path: str | os.PathLike) -> nn.Module:
    """The model saved at `path`: a `.pt` TorchScript int8 model (its engine set, see
    `load_torchscript`) or a `.pt2` ExportedProgram as a runnable module."""
    path = checks.check_file(_check_artifact(path))
    if path.suffix == ".pt":
        return load_torchscript(path)
    import torchao.quantization.pt2e  # noqa: F401  (registers the quantize ops the graph calls)

    return torch.export.load(str(path)).module()


# --- eager int8 models: TorchScript, and the state dict with its recipe --------------------


def save_torchscript(int8_model: nn.Module, path: str | os.PathLike, example: object) -> Path:
    """Trace the int8 model on `example` (an input tensor or `(input, target)` batch) and save
    it as TorchScript at `path`, with its engine. Reload with `load_torchscript`.

    Taught in notebook 05 (static_ptq)."""
    int8_model = eager.check_int8_model(int8_model, "int8_model")
    path = checks.check_path(path)
    engine = eager.engine_of(int8_model)
    x = batch_inputs(example)
    eager.check_cpu_input(x, "example")
    with warnings.catch_warnings(), torch.no_grad():
        # torch's own quantized modules read their scale as a Python number while traced
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
        traced = torch.jit.trace(int8_model.eval(), x)
    torch.jit.save(traced, str(path), _extra_files={"qnb_engine": engine})
    return path


def _saved_engine(path: Path) -> str | None:
    """The engine stored in a TorchScript archive by `save_torchscript`, if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith("/extra/qnb_engine"):
                    return archive.read(member).decode() or None
    except zipfile.BadZipFile:
        raise ValueError(f"{str(path)!r} is not a TorchScript archive") from None
    return None


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript int8 model saved by `save_torchscript`. The quantized engine is set to the
    one it was built for before loading (its weights are packed for that engine on load).

    Taught in notebook 05 (static_ptq)."""
    path = checks.check_file(path)
    engine = _saved_engine(path)
    if engine is not None:
        torch.backends.quantized.engine = checks.check_engine(engine)
    module = torch.jit.load(str(path), map_location="cpu")
    module.qnb_engine = engine or torch.backends.quantized.engine
    return module


def save_state_dict(int8_model: nn.Module, path: str | os.PathLike) -> Path:
    """Save the int8 model's state dict with its recipe (engine, qconfig choices) at `path`.
    Reload with `load_int8`, which rebuilds the same recipe around the same float model.

    Taught in notebook 05 (static_ptq)."""
    int8_model = eager.check_int8_model(int8_model, "int8_model")
    path = checks.check_path(path)
    recipe = getattr(int8_model, "qnb_recipe", None)
    if recipe is None:
        raise ValueError(
            "int8_model records no recipe: it was not built by ptq.quantize_static or qat.qat"
        )
    payload = {"format": _SAVE_FORMAT, "recipe": recipe, "state_dict": int8_model.state_dict()}
    torch.save(payload, path)
    return path


def _float_model(name_or_builder: object) -> nn.Module:
    if isinstance(name_or_builder, str):
        return models.build(name_or_builder)
    if isinstance(name_or_builder, nn.Module):
        return copy.deepcopy(name_or_builder)
    if callable(name_or_builder):
        return checks.check_model(name_or_builder())
    raise TypeError(
        "name_or_builder must be a model name, a float nn.Module or a function returning one, "
        f"got {type(name_or_builder).__name__}"
    )


def load_int8(
    name_or_builder: str | nn.Module | Callable[[], nn.Module],
    path: str | os.PathLike,
    *,
    engine: str | None = None,
) -> nn.Module:
    """An int8 model rebuilt from `save_state_dict`'s file: the float model (a `qnb.models`
    name, a float model, or a function building one) goes through the saved recipe (fuse,
    qconfig, prepare, convert; no calibration: scales and zero points come from the file),
    then the state dict is loaded. `engine` must match the saved one if given.

    Taught in notebook 05 (static_ptq)."""
    path = checks.check_file(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != _SAVE_FORMAT:
        raise ValueError(f"{str(path)!r} was not written by qnb.deploy.save_state_dict")
    recipe = saved["recipe"]
    built = checks.check_engine(recipe["engine"])
    if engine is not None and checks.check_engine(engine) != built:
        raise ValueError(
            f"engine={engine!r}, but {str(path)!r} holds a model built for {built!r}: int8 "
            f"weights and scales are engine-specific; load with engine={built!r} or None, or "
            "quantize the float model again for the other engine"
        )
    model = eager.check_float_model(_float_model(name_or_builder).eval())
    qconfig = ptq.qconfig_for(
        built, per_channel=recipe["per_channel"], reduce_range=recipe["reduce_range"]
    )
    # scales come from the file: plain min/max observers that see nothing are enough
    qconfig = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8), weight=qconfig.weight
    )
    with eager.engine_for_building(built):
        int8 = simulate.fused_copy(model)
        int8.qconfig = qconfig
        for name in recipe.get("unused_float", []):
            int8.get_submodule(name).qconfig = None  # left float by quantize_static
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="must run observer before calling")
            prepare(int8, inplace=True)
            convert(int8, inplace=True)
        try:
            int8.load_state_dict(saved["state_dict"])
        except (RuntimeError, KeyError) as exc:
            raise ValueError(
                f"the state dict in {str(path)!r} does not fit the rebuilt recipe: build the same "
                f"float model (same layers, same per-module qconfig) ({exc})"
            ) from exc
    return eager.mark_int8(int8, built, recipe)


# --- a fresh process ------------------------------------------------------------------------


def run_fresh(
    path: str | os.PathLike,
    inputs: torch.Tensor,
    *,
    threads: int | None = None,
    compile: bool = False,
    timeout: float = 600,
) -> torch.Tensor:
    """The outputs of the artifact at `path` on `inputs`, computed in a new Python process.

    `threads` (1..cores; None: torch's default there) is set in that process before loading;
    `compile=True` compiles a `.pt2` graph with Inductor (freezing on) before running it, as
    `qnb.pt2e.compile_for_cpu` does. Fails with the child's error if it cannot load or run.

    Taught in notebook 10 (cpu_deployment).
    """
    path = checks.check_file(_check_artifact(path))
    inputs = _check_inputs(inputs)
    if threads is not None:
        threads = checks.check_int("threads", threads, 1, os.cpu_count() or 1)
    checks.check_bool("compile", compile)
    if compile and path.suffix != ".pt2":
        raise ValueError(f"compile=True needs a .pt2 graph; {str(path)!r} is TorchScript")
    with tempfile.TemporaryDirectory(prefix="qnb-fresh-") as tmp:
        given, produced = Path(tmp, "inputs.pt"), Path(tmp, "outputs.pt")
        torch.save(inputs, given)
        command = [sys.executable, "-m", "qnb.deploy", str(path), str(given), str(produced)]
        command += ["--threads", str(threads)] if threads is not None else []
        command += ["--compile"] if compile else []
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the fresh process ran longer than timeout={timeout} s") from None
        if done.returncode != 0:
            raise RuntimeError(f"the fresh process failed on {str(path)!r}:\n{_why(done.stderr)}")
        return torch.load(produced, weights_only=True)


def _why(stderr: str) -> str:
    """The error lines of a child's stderr (torch logs some causes as warnings), then its end."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines[:-5] if "Error:" in line]
    return "\n".join(dict.fromkeys(errors[-5:] + lines[-5:]))


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qnb.deploy", description=__doc__)
    parser.add_argument("artifact")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    env.hide_deprecation_warnings()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = load(args.artifact)
    x = torch.load(args.inputs, weights_only=True)
    if args.compile:
        from qnb.pt2e import compile_for_cpu

        model = compile_for_cpu(model, x)
    with torch.inference_mode():
        torch.save(model(x), args.outputs)


if __name__ == "__main__":
    _main()
