"""Compare the TensorRT-form QDQ model of notebook 11 with what NVIDIA's own ONNX quantizer makes.

NVIDIA's `nvidia-modelopt` (its `modelopt.onnx.quantization.quantize`) is not in the lock: its
`[onnx]` extra pins onnx 1.21 and onnxruntime-gpu, against the workbook's onnx and onnxruntime.
So it is installed beside the environment, into a folder of its own, and run in a subprocess
that sees that folder first:

    .venv/bin/pip install --no-deps --target /tmp/modelopt nvidia-modelopt==0.47.0 \
        onnx==1.21.0 onnx_graphsurgeon==0.6.1 onnxconverter-common==1.16.0 onnxslim==0.1.98 \
        polygraphy==0.53.6 pulp==3.3.2 nvidia-ml-py==13.615.71 lief==1.0.0 cppimport==26.4.17
    .venv/bin/python tools/modelopt_compare.py /tmp/modelopt

It exports the plain CNN (seed 0) to ONNX, quantizes it both ways on the same 64 calibration
images (qnb.runtimes.quantize_qdq with int8 symmetric activations and float biases; modelopt's
int8 mode with max calibration on the CPU), and prints qnb.runtimes.qdq_structure of each and
where each puts its Q/DQ nodes. Notebook 11 quotes what it printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELOPT_STEP = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
folder = sys.argv[1]
quantize(f"{folder}/fp32.onnx", quantize_mode="int8",
         calibration_data=np.load(f"{folder}/calib.npy"), calibration_method="max",
         calibration_eps=["cpu"], high_precision_dtype="fp32",
         output_path=f"{folder}/modelopt.onnx", log_level="ERROR")
"""


def placements(path: Path) -> list[str]:
    """The tensors each QuantizeLinear quantizes, with '(weight)' for constant inputs."""
    import onnx

    graph = onnx.load(str(path)).graph
    constants = {i.name for i in graph.initializer}
    return [n.input[0] + (" (weight)" if n.input[0] in constants else "")
            for n in graph.node if n.op_type == "QuantizeLinear"]


def main(modelopt_dir: str) -> None:
    import numpy as np
    import torch

    from qnb import data, env, models, runtimes

    env.hide_deprecation_warnings()
    folder = Path(tempfile.mkdtemp(prefix="qnb-modelopt-"))
    model = models.pretrained("plain_cnn", seed=0).eval()
    images = torch.cat([x for x, _ in data.calibration_loader(64)])[:64]
    runtimes.export_onnx(model, images[:1], folder / "fp32.onnx", dynamic_batch=False)
    np.save(folder / "calib.npy", images.numpy())
    runtimes.quantize_qdq(folder / "fp32.onnx", folder / "ours.onnx", [x[None] for x in images],
                          activations="int8_symmetric", quantize_bias=False)
    subprocess.run([sys.executable, "-c", MODELOPT_STEP, str(folder)], check=True,
                   env={**os.environ, "PYTHONPATH": modelopt_dir})
    for name in ("ours", "modelopt"):
        path = folder / f"{name}.onnx"
        print(name, json.dumps(runtimes.qdq_structure(path)))
        print("  quantizes:", ", ".join(placements(path)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
