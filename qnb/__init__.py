"""qnb: the helper package of the quantization workbook.

Modules, one idea each: `affine` (the numpy reference of scale/zero-point quantization),
`data` (offline MNIST), `env` (what this machine offers), `records` (metrics inside executed
notebooks), `runner` (papermill execution), `notebook` (notebook file hygiene).
"""

from qnb.records import read_records, record

__all__ = ["read_records", "record"]
