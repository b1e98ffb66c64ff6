"""Deployable int8 artifacts, and the check that one runs the same in a fresh process.

An eager int8 model is saved as TorchScript (`qnb.ptq.save_torchscript`, a `.pt` file); a pt2e
int8 graph as an ExportedProgram (`save_pt2e`, a `.pt2` file). `run_fresh(path, inputs)` loads
the file in a new Python process, which shares nothing with this one (no model objects, no
compiled code in memory; the quantized engine comes from the file), runs it on `inputs` and
returns the outputs, so a notebook can check that the artifact alone reproduces the model.

    python -m qnb.deploy ARTIFACT INPUTS.pt OUTPUTS.pt [--threads N] [--compile]

is what `run_fresh` runs; `--compile` compiles a `.pt2` graph with Inductor before running it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from qnb import env, ptq
from qnb.checks import check_int as _check_int

__all__ = ["load", "run_fresh", "save_pt2e"]

SUFFIXES = {".pt": "TorchScript from qnb.ptq.save_torchscript", ".pt2": "from save_pt2e"}


def _check_artifact(path: object) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
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
    the ExportedProgram at `path` (a `.pt2` file). It keeps the graph's fixed input shape."""
    path = _check_artifact(path)
    if path.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2 for an ExportedProgram, got {str(path)!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    example = _check_inputs(example, "example")
    program = torch.export.export(model, (example,))
    program.example_inputs = None  # else the file also carries the example batch
    torch.export.save(program, str(path))
    return path


def load(path: str | os.PathLike) -> nn.Module:
    """The model saved at `path`: a `.pt` TorchScript int8 model (its engine set, see
    `qnb.ptq.load_torchscript`) or a `.pt2` ExportedProgram as a runnable module."""
    path = _check_artifact(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.suffix == ".pt":
        return ptq.load_torchscript(path)
    import torchao.quantization.pt2e  # noqa: F401  (registers the quantize ops the graph calls)

    return torch.export.load(str(path)).module()


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
    """
    path = _check_artifact(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    inputs = _check_inputs(inputs)
    if threads is not None:
        threads = _check_int("threads", threads, 1, os.cpu_count() or 1)
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
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
