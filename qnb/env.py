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
    """The quantized engines this PyTorch build supports (x86, fbgemm, qnnpack, onednn, ...)."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def check_engine(engine: object) -> str:
    """`engine` if it is a quantized engine this PyTorch build supports, else a ValueError."""
    supported = quantized_engines()
    if not isinstance(engine, str) or engine not in supported:
        raise ValueError(
            f"engine must be one of the quantized engines this PyTorch supports: "
            f"{', '.join(repr(e) for e in supported)}; got {engine!r}"
        )
    return engine


def cpu_features() -> dict[str, bool]:
    """Which of the int8-relevant instruction sets this CPU reports."""
    flags = _cpuinfo()[1]
    return {name: flag in flags for name, flag in _FEATURES.items()}


def int8_peak_ratio() -> float:
    """Peak int8 vs fp32 multiply-accumulate ratio per instruction on this CPU.

    With VNNI one instruction does 4x the MACs of an fp32 FMA at the same width; without
    it, AVX2/AVX-512 int8 dot products (vpmaddubsw + vpmaddwd + vpaddd) reach about 4/3.
    """
    features = cpu_features()
    return 4.0 if features["avx512_vnni"] or features["avx_vnni"] else 4.0 / 3.0


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
        "quantized_engine": torch.backends.quantized.engine,
        "cpu": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_features": [name for name, has in cpu_features().items() if has],
        "int8_peak_ratio": round(int8_peak_ratio(), 2),
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
