"""The notebook 11 exercise checks: right answers pass, typical mistakes get their diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from qnb import data, models, runtimes, simulate
from qnb.exercises import ExerciseError, check_input_qparams, check_quantize_linear


def right_quantize_linear(x, scale, zero_point):
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, 0, 255).astype(np.uint8)


def test_right_quantize_linear_passes(capsys):
    check_quantize_linear(right_quantize_linear)
    assert "Exercise 11.1 passed" in capsys.readouterr().out


F32 = np.float32
QUANTIZE_MISTAKES = [
    (
        lambda x, s, z: np.clip(np.rint(x * (F32(1) / F32(s))) + z, 0, 255),
        "that is torch's rule",
    ),
    (lambda x, s, z: np.clip(np.floor(x / F32(s) + F32(0.5)) + z, 0, 255), "round half to even"),
    (lambda x, s, z: np.clip(np.rint(x / F32(s) + z), 0, 255), "add the zero point after rounding"),
    (lambda x, s, z: (np.rint(x / F32(s)) + z).astype(np.int64), "saturate to 0..255"),
    (lambda x, s, z: np.clip(np.rint(x / F32(s)) + z, 0, 255)[:-1], "return one code per value"),
    (lambda x, s, z: np.clip(np.rint(x * F32(s)) + z, 0, 255), "QuantizeLinear gives"),
]


@pytest.mark.parametrize(("answer", "hint"), QUANTIZE_MISTAKES)
def test_quantize_linear_mistakes_get_their_diagnosis(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_quantize_linear(answer)


def test_unanswered_quantize_linear_says_so():
    with pytest.raises(ExerciseError, match="not answered yet"):
        check_quantize_linear(None)

    def stub(x, scale, zero_point):
        raise NotImplementedError("Exercise 11.1: write it")

    with pytest.raises(ExerciseError, match="still the stub"):
        check_quantize_linear(stub)


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ex11")
    calib = [b[0] for b in data.calibration_loader(64, 32)]
    model = simulate.fused(models.build("plain_cnn", seed=0))
    fp32 = runtimes.export_onnx(model, calib[0], folder / "cnn.onnx")
    return runtimes.quantize_qdq(fp32, folder / "cnn_int8.onnx", calib)


def test_input_qparams_right_answer_passes(qdq, capsys):
    scale, zero_point = runtimes.quant_params(qdq)["x"]
    check_input_qparams((float(scale), int(zero_point)), qdq)
    assert "Exercise 11.2 passed" in capsys.readouterr().out


def test_input_qparams_mistakes_get_their_diagnosis(qdq):
    params = runtimes.quant_params(qdq)
    scale, zero_point = float(params["x"][0]), int(params["x"][1])
    other = next(name for name in params if name not in ("x",) and params[name][0].shape == ())
    cases = [
        ((1 / scale, zero_point), "that is 1 / scale"),
        ((float(params[other][0]), zero_point), f"that is the scale of {other!r}"),
        ((scale, zero_point + 1), "the zero point is off"),
        ((scale, float(zero_point)), "the zero point must be an int"),
        ((scale,), "a pair"),
        (("0.1", zero_point), "the scale must be a number"),
    ]
    for answer, hint in cases:
        with pytest.raises(ExerciseError, match=hint):
            check_input_qparams(answer, qdq)
    with pytest.raises(ExerciseError, match="not answered yet"):
        check_input_qparams(None, qdq)
