"""qnb: the helper package of the quantization workbook.

The base layer, which every module may use: `checks` (one argument check per concept),
`eager` (the eager torch.ao plumbing: engines, fusion, model checks, the first int8 run),
`files` (the checkout's root, the atomic writer), `env` (this machine: engines, CPU),
`progress` (bars), `calibration` (feeding batches), `hooks` (forward hooks for one block,
always removed). Dependencies point one way: no module uses
another's `_private` names, and the notebook tooling does not import torch.

Modules, one idea each:
- `affine`: the numpy reference of scale/zero-point quantization, bit-exact with torch;
- `integer`: the numpy reference of integer-only linear/conv, bit-exact with torch's kernels;
- `saturation`: where x86's u8 x s8 pair sums (`vpmaddubsw`) saturate int16 (`reduce_range`);
- `data`: the offline Fashion-MNIST as train / validation / test loaders; `text`: the offline
  text corpus as bytes; `models`: the workbook's models, trained on one thread and cached per
  seed;
- `estimators`: activation range estimators as torch.ao observers; `simulate`: fake-quantized
  whole models;
- `ptq`: eager static post-training quantization; `dynamic`: dynamic and weight-only;
- `cle`, `bias_correction`, `adaround`: better post-training quantization without labels;
- `pt2e`: the successor path (torch.export, X86InductorQuantizer, Inductor); `runtimes`: ONNX
  export, ONNX Runtime's QDQ int8, ONNX Runtime and OpenVINO sessions as modules;
- `qat`: quantization-aware training; `mixed`: per-layer bit widths, the one-call `qnb.quantize`;
- `lm`: a byte-level transformer (TinyLM) for notebook 12; `rtn`, `smoothquant`, `gptq`:
  language-model weights: round-to-nearest per group, activation
  outliers and SmoothQuant (simulated W8A8), GPTQ;
- `awq`, `rotate`, `llm_int8`, `hqq`, `kv_cache`, `gguf_quants` (notebook 14): AWQ's scale search
  and folding, Hadamard rotations, LLM.int8()'s outlier decomposition, HQQ, a KIVI-quantized KV
  cache, GGUF's Q8_0/Q4_0/Q4_K blocks and `.gguf` files;
- `bench`: latency and size, measured the workbook's way; `deploy`: saving, loading, fresh runs;
- `stats`: paired comparisons and seed spread; `claims`: the prose's claims checked on the run;
- `records`: metrics inside executed notebooks; `exercises`: the exercises' checks, one module
  per notebook, and their registry;
- `assignments`: the course in nbgrader's format (checked metadata, `generate_assignment`);
- `runner`, `sweep`, `report`: papermill runs, parameter grids, their HTML report;
- `notebook`: notebook file hygiene.
"""

from qnb.records import read_records, record

__all__ = ["quantize", "read_records", "record"]


def __getattr__(name: str):
    """`qnb.quantize` is imported on first use: it needs torch, `import qnb` alone does not."""
    if name == "quantize":
        from qnb.mixed import quantize

        return quantize
    raise AttributeError(f"module 'qnb' has no attribute {name!r}")
