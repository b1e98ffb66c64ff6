"""qnb: the helper package of the quantization workbook.

Modules, one idea each:
- `affine`: the numpy reference of scale/zero-point quantization, bit-exact with torch;
- `data`: the offline MNIST subset as loaders; `models`: the workbook's CNNs, cached;
- `estimators`: activation range estimators as torch.ao observers;
- `calibration`: feeding calibration batches; `simulate`: fake-quantized whole models;
- `ptq`: eager static post-training quantization; `dynamic`: dynamic and weight-only;
- `pt2e`: the successor path (torch.export, X86InductorQuantizer, Inductor);
- `qat`: quantization-aware training; `mixed`: per-layer bit widths, the one-call `qnb.quantize`;
- `bench`: latency and size, measured the workbook's way;
- `env`: what this machine offers; `progress`: progress bars that suit where code runs;
- `records`: metrics inside executed notebooks; `exercises`: checks for the exercises;
- `assignments`: student and instructor builds, grading;
- `runner`, `sweep`, `report`: papermill runs, parameter grids, their HTML report;
- `notebook`: notebook file hygiene; `checks`: the shared argument checks.
"""

from qnb.records import read_records, record

__all__ = ["quantize", "read_records", "record"]


def __getattr__(name: str):
    """`qnb.quantize` is imported on first use: it needs torch, `import qnb` alone does not."""
    if name == "quantize":
        from qnb.mixed import quantize

        return quantize
    raise AttributeError(f"module 'qnb' has no attribute {name!r}")
