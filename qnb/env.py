"""What this machine offers for quantized inference: versions, engines, CPU features, threads."""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib import metadata

import torch

# CPU flags (as /proc/cpuinfo names them) that matter for int8 and fp32 throughput.
_FEATURES = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_int8": "amx_int8",
}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and flag set, from /proc/cpuinfo (empty on other systems)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def quantized_engines() -> list[str]:
    """The quantized engines this PyTorch build supports (x86, fbgemm, qnnpack, onednn, ...).

    `QNB_ENGINES` (comma-separated, e.g. `QNB_ENGINES=qnnpack`) keeps only the ones it names,
    to run the workbook as it runs on a machine without them (an ARM build has only qnnpack).

    Taught in notebook 10 (cpu_deployment)."""
    supported = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    wanted = os.environ.get("QNB_ENGINES", "").strip()
    if not wanted:
        return supported
    names = [e.strip() for e in wanted.split(",") if e.strip()]
    unknown = [e for e in names if e not in supported]
    if unknown:
        raise ValueError(
            f"QNB_ENGINES={wanted!r} names {', '.join(map(repr, unknown))}, which this PyTorch "
            f"does not support; it supports {', '.join(map(repr, supported))}"
        )
    return [e for e in supported if e in names]


def default_engine() -> str:
    """This machine's engine: `x86` where this PyTorch supports it (x86-64 builds), else
    `qnnpack` (ARM builds: macOS on Apple Silicon, Linux aarch64), else the first there is."""
    engines = quantized_engines()
    for engine in ("x86", "qnnpack"):
        if engine in engines:
            return engine
    if not engines:
        raise RuntimeError("this PyTorch build has no quantized engine (none of x86, qnnpack)")
    return engines[0]


def _engine_note() -> str:
    restricted = " (restricted by QNB_ENGINES)" if os.environ.get("QNB_ENGINES") else ""
    engine = default_engine()
    if engine == "x86":
        return f"x86: this PyTorch has the x86 engine (fbgemm + onednn kernels){restricted}"
    return (
        f"{engine}: this PyTorch has no x86 engine{restricted}; {engine} is PyTorch's engine for "
        "ARM CPUs (XNNPACK/QNNPACK kernels); x86-only sections are skipped"
    )


def has_x86() -> bool:
    """True if the x86 engine (and with it torchao's X86InductorQuantizer path) is available."""
    return "x86" in quantized_engines()


def cpu_features() -> dict[str, bool]:
    """Which of the int8-relevant instruction sets this CPU reports.

    Taught in notebook 10 (cpu_deployment)."""
    flags = _cpuinfo()[1]
    return {name: flag in flags for name, flag in _FEATURES.items()}


# This CPU's fastest int8 unit, its peak int8:fp32 multiply-accumulate ratio per cycle per core,
# and which CPU runtimes' int8 kernels use it.
INT8_UNITS = {
    "AMX": (32.0, "AMX's TMUL does 1,024 int8 MACs per cycle per core (Intel: 2,048 int8 "
                  "operations) against 32 fp32 FMAs of two AVX-512 FMA units; used by oneDNN "
                  "(PyTorch's onednn engine, Inductor's int8 GEMMs), OpenVINO and ONNX Runtime "
                  "(onnxruntime#14042), not by FBGEMM (pytorch/FBGEMM#649)"),
    "VNNI": (4.0, "vpdpbusd does 4 int8 MACs per 32-bit lane where an fp32 FMA does 1 (AVX-512 "
                  "VNNI or AVX-VNNI); used by FBGEMM, oneDNN, OpenVINO and ONNX Runtime"),
    "AVX2": (4.0 / 3.0, "without VNNI an int8 dot product takes vpmaddubsw + vpmaddwd + vpaddd "
                        "(3 instructions for 4 MACs per lane), about 4/3 of fp32's FMA"),
}


def int8_unit() -> str | None:
    """This CPU's fastest int8 unit: "AMX", "VNNI", "AVX2", or None (not x86, no AVX2).

    Taught in notebook 10 (cpu_deployment)."""
    features = cpu_features()
    if features["amx_int8"]:
        return "AMX"
    if features["avx512_vnni"] or features["avx_vnni"]:
        return "VNNI"
    return "AVX2" if features["avx2"] else None


def int8_peak_ratio() -> float | None:
    """Peak int8 vs fp32 multiply-accumulates per cycle per core of `int8_unit()` (see
    `INT8_UNITS`): 32 with AMX, 4 with VNNI, 4/3 with AVX2 alone; None where none applies. A
    model reaches it only if its runtime's kernels use that unit (FBGEMM does not use AMX).

    Taught in notebook 10 (cpu_deployment).
    """
    unit = int8_unit()
    return None if unit is None else INT8_UNITS[unit][0]


def report() -> dict[str, object]:
    """The environment as a flat dict: versions, quantized engines, CPU, threads."""
    model, _ = _cpuinfo()
    return {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "torchao": _version("torchao"),
        "numpy": _version("numpy"),
        "quantized_engines": quantized_engines(),
        "default_engine": _engine_note(),
        "quantized_engine": torch.backends.quantized.engine,
        "cpu": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_features": [name for name, has in cpu_features().items() if has],
        "int8_unit": int8_unit() or "-",
        "int8_peak_ratio": None if int8_peak_ratio() is None else round(int8_peak_ratio(), 2),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def show() -> None:
    """Print the environment report as an aligned two-column table."""
    for key, value in report().items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key:<18} {value}")


# What PyTorch 2.14 says, once per call site, about the eager quantization stack it still ships.
_DEPRECATIONS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
    (FutureWarning, r"`torch\.jit\.\w+` is deprecated"),  # TorchScript: torch.export succeeds it
    (UserWarning, r"TypedStorage is deprecated"),  # raised inside torch when loading int8 weights
)


def hide_deprecation_warnings() -> None:
    """Silence PyTorch's deprecation notices for `torch.ao.quantization`, quantized dtypes and
    TorchScript.

    They are true (the eager API is moving to torchao) but repeat in every cell that touches
    a quantized tensor; the notebooks state the deprecation once in prose instead.
    """
    for category, message in _DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
