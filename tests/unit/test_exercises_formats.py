"""The checks of notebook 13's exercises (qnb.exercises): a right answer passes, typical
mistakes get their diagnosis, a stub is "not answered"."""

from __future__ import annotations

import numpy as np
import pytest

from qnb.exercises import ExerciseError, check_e4m3_encoder, check_mx_block_scale


def e4m3(x, *, half_up=False, saturate=True, subnormals=True):
    """A learner's E4M3 encoder, right by default; the flags make the usual mistakes."""
    x = np.asarray(x, np.float64)
    sign = np.signbit(x).astype(np.int64) << 7
    a = np.abs(x)
    if saturate:
        a = np.minimum(a, 448.0)
    e = np.maximum(np.floor(np.log2(np.where(a > 0, a, 1.0))), -6)
    step = np.exp2(e - 3)
    q = np.floor(a / step + 0.5) if half_up else np.rint(a / step)
    v = q * step
    if not subnormals:
        v = np.where(v < 2.0**-6, 0.0, v)
    e2 = np.maximum(np.floor(np.log2(np.where(v > 0, v, 1.0))), -6)
    normal = v >= 2.0**-6
    with np.errstate(invalid="ignore"):  # the branch np.where discards may overflow
        code = np.where(normal, (e2 + 7).astype(np.int64) << 3 | (v / np.exp2(e2 - 3) - 8)
                        .astype(np.int64), (v / 2.0**-9).astype(np.int64))
    return (sign | np.minimum(code, 0x7F)).astype(np.uint8)  # past 448 without saturation: NaN


def test_e4m3_right_answer_passes(capsys):
    check_e4m3_encoder(e4m3)
    assert "Exercise 13.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "diagnosis"), [
    ({"half_up": True}, "round half up"),
    ({"saturate": False}, "no saturation"),
    ({"subnormals": False}, "subnormals"),
])
def test_e4m3_mistakes_are_diagnosed(mistake, diagnosis):
    with pytest.raises(ExerciseError, match=diagnosis):
        check_e4m3_encoder(lambda x: e4m3(x, **mistake))


def test_e4m3_wrong_shape_and_stub():
    with pytest.raises(ExerciseError, match="one integer code per input"):
        check_e4m3_encoder(lambda x: e4m3(x)[:3])

    def stub(x):
        raise NotImplementedError()

    for answer in (stub, None):
        with pytest.raises(ExerciseError, match="not answered"):
            check_e4m3_encoder(answer)


def mx_scale(blocks):
    return np.exp2(np.floor(np.log2(np.abs(blocks).max(axis=1))) - 2)


def test_mx_scale_right_answer_passes(capsys):
    check_mx_block_scale(mx_scale)
    assert "Exercise 13.2 passed" in capsys.readouterr().out


@pytest.mark.parametrize(("answer", "diagnosis"), [
    (lambda b: np.abs(b).max(axis=1) / 6, "not a power of two"),
    (lambda b: np.abs(b).max(axis=1).astype(np.float64) / 6 * 1.01, "not a power of two"),
    (lambda b: np.exp2(np.ceil(np.log2(np.abs(b).max(axis=1))) - 2), "rounds log2"),
    (lambda b: np.exp2(np.floor(np.log2(np.abs(b).max(axis=1)))), "subtract emax_elem"),
    (lambda b: np.floor(np.log2(np.abs(b).max(axis=1))) - 2, "not its exponent"),
])
def test_mx_scale_mistakes_are_diagnosed(answer, diagnosis):
    with pytest.raises(ExerciseError, match=diagnosis):
        check_mx_block_scale(answer)


def test_mx_scale_stub():
    def stub(blocks):
        raise NotImplementedError()

    for answer in (stub, None):
        with pytest.raises(ExerciseError, match="not answered"):
            check_mx_block_scale(answer)
