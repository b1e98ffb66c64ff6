"""The notebook 10 exercise checks: right answers pass, common mistakes get their hint."""

from __future__ import annotations

import pytest

from qnb.bench import BenchResult, Row
from qnb.exercises import ExerciseError, check_amdahl, check_throughput

RESULT = BenchResult(
    [Row("fp32", [4.0, 5.0, 6.0], 1), Row("int8", [1.0, 1.25, 1.5], 1)],
    "fp32",
    {"batch": 8},
)
RIGHT = {"fp32": 8 * 1000 / 5.0, "int8": 8 * 1000 / 1.25}


def test_throughput_right_answer_passes(capsys):
    check_throughput(dict(RIGHT), RESULT)
    assert "Exercise 10.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ({"fp32": 1000 / 5.0, "int8": 1000 / 1.25}, "calls per second; each call runs 8 images"),
        ({"fp32": 8 / 5.0, "int8": 8 / 1.25}, "median_ms is in milliseconds"),
        ({"fp32": 5.0 / 8, "int8": 1.25 / 8}, "time per image"),
        ({"fp32": 1600.0}, r"missing \['int8'\]"),
        ({"fp32": 1600.0, "int8": "fast"}, r"answer\['int8'\] must be a number"),
        ({"fp32": 1600.0, "int8": 7000.0}, "images/s = batch \\* 1000 / median ms"),
        ([1600.0, 6400.0], "answer with a dict"),
        (None, "not answered yet"),
    ],
)
def test_throughput_mistakes_get_their_hint(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_throughput(answer, RESULT)


def test_throughput_needs_a_batch_size():
    with pytest.raises(ValueError, match="records no batch size"):
        check_throughput(dict(RIGHT), BenchResult(RESULT.rows, "fp32", {"batch": None}))


def test_amdahl_right_answer_passes(capsys):
    check_amdahl(lambda p, k: 1 / ((1 - p) + p / k))
    assert "Exercise 10.2 passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("function", "hint"),
    [
        (lambda p, k: (1 - p) + p * k, "speedups do not average: times add"),
        (lambda p, k: 1 / ((1 - p) + p * k), "takes p / k of the old time"),
        (lambda p, k: (1 - p) + p / k, "that is the new time"),
        (lambda p, k: k, r"amdahl\(0.0, 4\) gave 4.0"),
        ("amdahl", "answer with a function"),
    ],
)
def test_amdahl_mistakes_get_their_hint(function, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_amdahl(function)


def test_amdahl_stub_is_not_answered_yet():
    def amdahl(p: float, k: float) -> float:
        raise NotImplementedError("Exercise 10.2: write the body")

    with pytest.raises(ExerciseError, match="not answered yet: your function is still the stub"):
        check_amdahl(amdahl)
